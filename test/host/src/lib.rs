//! A Kinode node in miniature, for tests.
//!
//! Processes run the way the Kinode runtime runs them (KINODE.md 6): wasmtime 27 with an async,
//! component-model engine, `bindgen!` host bindings over kinode.wit v1.0.0 world `process-v1`
//! ([`bindings`]), the kinode standard host ([`standard`]) and WASI preview 2 added with
//! `wasmtime_wasi::add_to_linker_async`, a WASI context with stderr in a 5000-byte memory pipe and
//! one preopened temporary directory named by `TEMP_DIR`, and `init(our)` called with
//! `node@process:package:publisher`.
//!
//! [`Node`] is a node in miniature that tests drive synchronously: processes run as tasks,
//! messages are routed with the runtime's capability checks ([`kernel`]), the kernel commands and
//! the VFS ([`vfs`]) answer with the runtime's wire formats, and test-controlled [`Mailbox`]es
//! send and receive. [`Host::run_init`] runs one process's `init` on a node of its own.
//!
//! Modules: [`node`] (the synchronous API, bootstrap, reboot), [`kernel`] (process map, routing,
//! kernel commands, capabilities oracle), [`process`] (a process's messaging and task),
//! [`standard`] (the standard host), [`mailbox`], [`caps`], [`vfs`], [`runtime`] (engine, linker,
//! [`Host`]), [`terminal`] (runs terminal scripts as `terminal:terminal:sys` does), [`app_store`]
//! (installs packages as `main:app-store:sys` does, without the linker), [`http_server`] (the
//! node's HTTP server on loopback and the homepage, as far as a process's page goes), [`network`]
//! (nodes that message each other, [`Node::on`]), [`chain`] (`chain:app-store:sys` over listings
//! a test publishes on the network) and [`downloads`] (`downloads:app-store:sys` and its
//! node-to-node transfers), the last two started on demand.
//!
//! Separately, [`wasi_command`] runs core wasm32-wasip1 command modules (e.g. the `kinode-link` CLI
//! built for WASI).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let host = linker_test_host::Host::new()?;
//! let wasm = std::fs::read("pkg/app.wasm")?;
//! let run = host.run_init(&wasm, "fake.os@app:app:sys")?;
//! assert_eq!(run.print_messages(), ["hello"]);
//! # Ok(()) }
//! ```

pub mod app_store;
pub mod bindings;
pub mod caps;
pub mod chain;
pub mod downloads;
pub mod http_server;
pub mod kernel;
pub mod mailbox;
pub mod network;
pub mod node;
pub mod process;
pub mod runtime;
pub mod standard;
pub mod terminal;
pub mod vfs;
pub mod wasi_command;

pub use app_store::AppStore;
pub use bindings::kinode::process::standard::{
    Address, Capability, LazyLoadBlob, OnExit, ProcessId, Request, SendErrorKind,
};
pub use chain::Chain;
pub use downloads::Downloads;
pub use http_server::HttpServer;
pub use kernel::{Fault, HostCall, ProcessStatus, VfsCall};
pub use mailbox::{Incoming, IncomingKind, Mailbox, Reply};
pub use network::Network;
pub use node::{Node, ProcessInfo};
pub use process::{format_address, parse_address, Print};
pub use runtime::{Host, ProcessRun, RunError};
pub use terminal::Terminal;
pub use wasi_command::{run_wasi_command, CommandOutput, CommandStatus, Invocation, WasiCommand};
