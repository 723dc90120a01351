//! The `linker:linker:sys` process: links packages against the API libraries they import and
//! installs them on the node, with the linking core (`linker-core`) doing the linking.
//!
//! It answers the requests of `api/linker:sys-v0.wit`, one at a time, in the order they arrive:
//! a request is read ([`inputs`]), authorised ([`auth`]), linked (the core, pure), and, for an
//! install, applied to the node in stages with rollback ([`install`]). The linker keeps its cache,
//! its mirror of the API zips it consumed and its install records in its own drives ([`store`]).
//! Every VFS and kernel exchange goes through [`node`]. Between requests, on a timer, it looks for
//! packages installed without it and links them ([`watch`]).
#![cfg(target_arch = "wasm32")]

mod api;
mod apis;
mod auth;
mod convert;
mod inputs;
mod install;
mod node;
mod service;
mod store;
mod watch;

use kinode_process_lib::{await_message, println, Address, Message};

/// Called by the kernel with `node@linker:linker:sys` (again after a crash): prepares the
/// linker's drives, rolls back any install it died in the middle of, arms its timer, then serves
/// requests and ticks until the process is killed.
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
    loop {
        match await_message() {
            Ok(message) if is_tick(&message) => {
                watch::tick(&our, &mut watcher);
                watch::arm();
            }
            Ok(message) => service::handle(&our, &message),
            // The linker only sends requests it awaits, so a stray send error is a late answer.
            Err(error) => println!("linker: ignoring a send error: {error}"),
        }
    }
}

/// Whether `message` is the answer of the linker's own timer.
fn is_tick(message: &Message) -> bool {
    !message.is_request()
        && message.source().process == "timer:distro:sys"
        && message.context() == Some(watch::TIMER_CONTEXT)
}
