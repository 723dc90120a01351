//! A Kinode node in miniature, for tests.
//!
//! Processes run the way the Kinode runtime runs them (KINODE.md 6): wasmtime 27 with an async,
//! component-model engine, `bindgen!` host bindings over kinode.wit v1.0.0 world `process-v1`
//! ([`bindings`]), the kinode standard host ([`standard`]) and WASI preview 2 added with
//! `wasmtime_wasi::add_to_linker_async`, a WASI context with stderr in a 5000-byte memory pipe and
//! one preopened temporary directory named by `TEMP_DIR`, and `init(our)` called with
//! `node@process:package:publisher`.
//!
//! What runs today: a process's `init` ([`Host::run_init`]); the standard host keeps terminal
//! prints, state and on-exit in memory. Messaging, spawning and capability changes trap with "test
//! host: `<fn>` is not supported yet". The layout leaves room for routing: [`process`] holds a
//! process's state, [`standard`] serves its imports, [`runtime`] owns the engine and linker.
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

pub mod bindings;
pub mod process;
pub mod runtime;
pub mod standard;
pub mod vfs;
pub mod wasi_command;

pub use process::{parse_address, Print};
pub use runtime::{Host, ProcessRun, RunError};
pub use wasi_command::{run_wasi_command, CommandOutput, CommandStatus, Invocation, WasiCommand};
