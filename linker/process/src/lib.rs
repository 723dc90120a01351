//! The `linker:linker:sys` process: links packages against the API libraries they import and
//! installs them on the node, with the linking core (`linker-core`) doing the linking.
//!
//! It answers the requests of `api/linker:sys-v0.wit` one at a time, cheap reads first, and each
//! before its sender stops waiting ([`mailbox`]): a request is read ([`inputs`]), authorised
//! ([`auth`]), linked (the core, pure), and, for an install, applied to the node in stages with
//! rollback ([`install`]). The linker keeps its cache, its mirror of the API zips it consumed and
//! its install records in its own drives ([`store`]). Every VFS and kernel exchange goes through
//! [`node`]. On a timer, in turn with requests, it looks for packages installed without it and
//! links them ([`watch`]).
#![cfg(target_arch = "wasm32")]

mod api;
mod apis;
mod auth;
mod convert;
mod fetch;
mod inputs;
mod install;
mod mailbox;
mod node;
mod service;
mod store;
mod watch;
mod web;

use kinode_process_lib::{println, Address};

use crate::mailbox::Work;

/// Called by the kernel with `node@linker:linker:sys` (again after a crash): prepares the
/// linker's drives, rolls back any install it died in the middle of and re-links what that left
/// pending, arms its timer, then handles requests and ticks, one at a time in the mailbox's
/// order, until the process is killed.
fn init(our: Address) {
    if let Err(failure) = store::prepare() {
        println!(
            "linker: cannot prepare its drives: {}: {}",
            failure.step, failure.reason
        );
    }
    install::recover(&our);
    service::resume_relinks(&our);
    let mut watcher = watch::Watcher::default();
    watch::arm();
    web::serve(&our);
    loop {
        let mut job = mailbox::next();
        let answer = match &mut job.work {
            Work::Request(incoming) => Some(service::answer(&our, incoming)),
            Work::Tick => {
                watch::tick(&our, &mut watcher);
                watch::arm();
                // The widget is refreshed on the tick, not after every job, so that a request
                // arriving just after another finished does not wait for the widget's reads.
                web::refresh_widget(&our);
                None
            }
        };
        mailbox::finish(job, answer);
    }
}
