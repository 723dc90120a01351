//! The engine, the linker and running a process, as the Kinode runtime does it (KINODE.md 6.1,
//! 6.2).
//!
//! The runtime's `make_component_v1` (the kinode repo's `kinode/src/kernel/process.rs`) does
//! `Component::new`, `Linker::new`, `ProcessV1::add_to_linker(&mut linker, |s| s)`,
//! `wasmtime_wasi::add_to_linker_async(&mut linker)`, `ProcessV1::instantiate_async` and
//! `call_init(our)`. [`Host`] does the same, keeping one engine and one linker for all processes it
//! runs, and drives them on a current-thread tokio runtime so that tests can stay synchronous.
//!
//! Unlike the runtime, every node and host in a test process shares one engine, and [`compile`]
//! keeps each compiled component by the SHA-256 of its bytes: a test binary boots many nodes that
//! all run the same `linker.wasm`, and compiled code depends only on the bytes and the engine.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ProfilingStrategy, Trap, WasmBacktrace, WasmBacktraceDetails};

use crate::bindings::kinode::process::standard::OnExit;
use crate::bindings::ProcessV1;
use crate::caps;
use crate::kernel::{Kernel, PersistedProcess, ProcessStatus};
use crate::process::{parse_address, Print, ProcessWasiV1};

/// How long [`Host::run_init`] waits for `init` to return.
const INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Capacity of a process's stderr pipe; the runtime's `STACK_TRACE_SIZE`. Writes beyond it fail (no
/// trap).
pub const STDERR_CAPACITY: usize = 5000;

/// A node in miniature: one async engine and one linker (kinode standard host + WASI preview 2)
/// shared by every process it runs, and a temporary home directory that holds the processes'
/// `vfs/{package}:{publisher}/tmp`.
pub struct Host {
    engine: Engine,
    linker: Arc<Linker<ProcessWasiV1>>,
    executor: tokio::runtime::Runtime,
    home: TempDir,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("home", &self.home.path())
            .finish_non_exhaustive()
    }
}

/// What a process did during `init`, when `init` returned.
#[derive(Debug)]
pub struct ProcessRun {
    /// Every `print-to-terminal` call, in order.
    pub prints: Vec<Print>,
    /// Everything the process wrote to stderr (at most [`STDERR_CAPACITY`] bytes, lossily decoded).
    pub stderr: String,
    /// The process state after `init` (`set-state` / `clear-state`).
    pub state: Option<Vec<u8>>,
    /// The on-exit setting after `init`.
    pub on_exit: OnExit,
}

impl ProcessRun {
    /// The printed messages without their verbosity.
    pub fn print_messages(&self) -> Vec<&str> {
        self.prints.iter().map(|p| p.message.as_str()).collect()
    }
}

/// Why a process did not run to the end of `init`. The variants follow the runtime's stages.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `our` is not `node@process:package:publisher`.
    #[error("`{our}` is not a process address of the form node@process:package:publisher")]
    BadAddress {
        /// The string given.
        our: String,
    },
    /// The bytes are not a valid component (`Component::new` fails; the runtime panics the process
    /// task here).
    #[error("component does not compile: {message}")]
    Compile {
        /// The error chain.
        message: String,
    },
    /// `instantiate_async` failed: usually an import the runtime does not provide, or one of the
    /// wrong type (the runtime prints "kernel: process X failed to instantiate" and gives up on the
    /// process, skipping on-exit).
    #[error("process failed to instantiate: {message}")]
    Instantiate {
        /// The first import wasmtime reported as missing or mismatched, e.g.
        /// `kinode:process/mathlib@1.0.0`.
        import: Option<String>,
        /// The error chain.
        message: String,
    },
    /// `init` trapped: a wasm trap (a Rust panic is `unreachable` after the panic message went to
    /// stderr) or an error returned by a host function.
    #[error("init trapped: {message}{}", stderr_suffix(stderr))]
    Trap {
        /// The error chain without the wasm backtrace, e.g. "wasm trap: wasm `unreachable`
        /// instruction executed" or an error a host function returned.
        message: String,
        /// The wasm trap code, if it was a wasm trap rather than a host error.
        trap: Option<Trap>,
        /// The whole error chain including the wasm backtrace.
        details: String,
        /// What the process wrote to stderr (panic messages land here).
        stderr: String,
        /// What the process printed before it trapped.
        prints: Vec<Print>,
    },
    /// The test host itself failed (temporary directories, WASI setup).
    #[error("test host: {0:#}")]
    Host(anyhow::Error),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\nstderr:\n{stderr}")
    }
}

impl Host {
    /// Creates the engine, the linker and an empty temporary home directory.
    ///
    /// The engine is configured like the runtime's: component model, async support, wasm backtrace
    /// details and wasmtime's default compilation cache (on disk in the user's cache directory;
    /// left off if it cannot be loaded). It is shared by every node and host in this process.
    pub fn new() -> anyhow::Result<Self> {
        let engine = shared_engine()?;
        let linker = Arc::new(make_linker(&engine)?);
        let executor = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let home = tempfile::Builder::new()
            .prefix("linker-test-node-")
            .tempdir()?;
        Ok(Self {
            engine,
            linker,
            executor,
            home,
        })
    }

    /// The engine every process of this host runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The node's home directory; processes' temporary directories live under `vfs/` in it.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Compiles `wasm`, instantiates it as a `process-v1` component and calls `init(our)`, with
    /// `our` formatted `node@process:package:publisher`. Returns what the process printed and left
    /// behind once `init` returns.
    ///
    /// Each call is a fresh process (fresh store, state and WASI context) on a fresh kernel; its
    /// `TEMP_DIR` is `{home}/vfs/{package}:{publisher}/tmp`, created if needed, preopened under
    /// the same absolute path.
    pub fn run_init(&self, wasm: &[u8], our: &str) -> Result<ProcessRun, RunError> {
        let address = parse_address(our).ok_or_else(|| RunError::BadAddress {
            our: our.to_owned(),
        })?;
        let kernel = Kernel::new(
            &address.node,
            self.home.path().to_path_buf(),
            self.engine.clone(),
            Arc::clone(&self.linker),
            self.executor.handle().clone(),
            crate::Network::new(),
        );
        let pid = caps::format_process_id(&address.process);
        let persisted = PersistedProcess {
            wasm_bytes_handle: String::new(),
            wit_version: Some(1),
            on_exit: OnExit::None,
            capabilities: Vec::new(),
            public: false,
        };
        {
            let mut st = kernel.lock();
            st.process_map.insert(pid.clone(), persisted.clone());
            kernel
                .start_process(&mut st, &pid, &persisted, wasm.to_vec())
                .map_err(|e| RunError::Host(anyhow::anyhow!(e)))?;
        }
        kernel.run(&pid);
        let status = kernel
            .wait_until(INIT_TIMEOUT, |st| {
                st.statuses.get(&pid).filter(|s| s.is_final()).cloned()
            })
            .ok_or_else(|| {
                RunError::Host(anyhow::anyhow!(
                    "init did not return within {} s",
                    INIT_TIMEOUT.as_secs()
                ))
            })?;
        let (prints, exit) = {
            let st = kernel.lock();
            let prints: Vec<Print> = st
                .prints
                .iter()
                .filter(|(p, _)| *p == pid)
                .map(|(_, print)| print.clone())
                .collect();
            (prints, st.exits.get(&pid).cloned())
        };
        let (on_exit, stderr) = exit.unwrap_or((OnExit::None, String::new()));
        // Stop whatever the process left behind (timeout tasks run on the shared executor).
        kernel.kill(&pid, true);
        match status {
            ProcessStatus::Exited => Ok(ProcessRun {
                prints,
                stderr,
                state: kernel.get_state(&pid),
                on_exit,
            }),
            ProcessStatus::FailedToCompile { message } => Err(RunError::Compile { message }),
            ProcessStatus::FailedToInstantiate { import, message } => {
                Err(RunError::Instantiate { import, message })
            }
            ProcessStatus::Trapped {
                message,
                stderr,
                trap,
                details,
            } => Err(RunError::Trap {
                message,
                trap,
                details,
                stderr,
                prints,
            }),
            other => Err(RunError::Host(anyhow::anyhow!(
                "process ended as {other:?}"
            ))),
        }
    }
}

/// The engine, configured like the runtime's: component model, async support, wasm backtrace
/// details and wasmtime's default compilation cache (on disk in the user's cache directory; left
/// off if it cannot be loaded).
pub(crate) fn make_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .async_support(true)
        .wasm_backtrace_details(WasmBacktraceDetails::Enable);
    // The runtime loads the default cache config; only a speed-up here, so a failure is not fatal.
    let _ = config.cache_config_load_default();
    // For profiling: `LINKER_HOST_PERFMAP=1` writes /tmp/perf-{pid}.map, so that `perf report`
    // names the guests' functions (BENCHMARKS.md).
    if std::env::var_os("LINKER_HOST_PERFMAP").is_some_and(|v| v != "0") {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
}

/// The engine every node and host in this process runs on, made by [`make_engine`] on first use.
pub(crate) fn shared_engine() -> anyhow::Result<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let engine = make_engine()?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

/// A compiled component, filled in by the first caller to compile its bytes.
type Slot = Arc<Mutex<Option<Component>>>;

/// `Component::new(engine, wasm)`, compiled once per process: a component compiled before from the
/// same bytes on the same engine is returned as it is. Concurrent callers with the same bytes wait
/// for one compilation. A failure is not remembered, so every caller sees it.
pub(crate) fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    static COMPILED: OnceLock<Mutex<HashMap<[u8; 32], Slot>>> = OnceLock::new();
    let key: [u8; 32] = Sha256::digest(wasm).into();
    let slot = Arc::clone(
        COMPILED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default(),
    );
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(component) = slot.as_ref().filter(|c| Engine::same(c.engine(), engine)) {
        return Ok(component.clone());
    }
    let component = Component::new(engine, wasm)?;
    *slot = Some(component.clone());
    Ok(component)
}

/// The linker: `ProcessV1::add_to_linker` (the kinode standard host) and
/// `wasmtime_wasi::add_to_linker_async`.
pub(crate) fn make_linker(engine: &Engine) -> anyhow::Result<Linker<ProcessWasiV1>> {
    let mut linker = Linker::new(engine);
    ProcessV1::add_to_linker(&mut linker, |state: &mut ProcessWasiV1| state)?;
    wasmtime_wasi::add_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// The import named by wasmtime's "component imports {kind} `{name}`, but a matching implementation
/// was not found in the linker" (wasmtime 27 `Linker::typecheck`), if that is the error.
pub(crate) fn missing_import(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        let text = cause.to_string();
        let rest = text.strip_prefix("component imports ")?;
        let (_, rest) = rest.split_once('`')?;
        let (name, _) = rest.split_once('`')?;
        Some(name.to_owned())
    })
}

/// An error chain joined with ": ", leaving out the wasm backtrace wasmtime attaches as context.
pub(crate) fn error_message(error: &anyhow::Error) -> String {
    // The backtrace is an anyhow context, so it shows in the chain only as its text.
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(ToString::to_string);
    let causes: Vec<String> = error
        .chain()
        .map(ToString::to_string)
        .filter(|cause| Some(cause) != backtrace.as_ref())
        .collect();
    causes.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_can_be_shared_between_test_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Host>();
    }

    #[test]
    fn missing_import_is_read_from_wasmtime_error() {
        let error = anyhow::anyhow!("function implementation is missing")
            .context("instance export `add` has the wrong type")
            .context(
                "component imports instance `kinode:process/mathlib@1.0.0`, but a matching \
                 implementation was not found in the linker",
            );
        assert_eq!(
            missing_import(&error).as_deref(),
            Some("kinode:process/mathlib@1.0.0")
        );
        assert_eq!(missing_import(&anyhow::anyhow!("other")), None);
    }
}
