//! Runs core wasm32-wasip1 command modules (a Rust binary built for `wasm32-wasip1`) with wasmtime
//! 27 and `wasmtime_wasi::preview1`, capturing exit status, stdout and stderr.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use wasmtime::{Config, Engine, Linker, Module, Store};

use crate::runtime::error_message;
use wasmtime_wasi::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::preview1::{self, WasiP1Ctx};
use wasmtime_wasi::{DirPerms, FilePerms, I32Exit, WasiCtxBuilder};

/// Capacity of the captured stdout and stderr each; writes beyond it fail.
pub const OUTPUT_CAPACITY: usize = 256 << 20;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStatus {
    /// `_start` returned (code 0) or the command called `proc_exit(code)`.
    Exited(i32),
    /// The command trapped (a Rust panic in wasm32-wasip1 aborts with `unreachable`) or a WASI call
    /// failed in the host; the error chain without the wasm backtrace.
    Trapped(String),
}

/// The result of one command run.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// How it ended.
    pub status: CommandStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// The exit code, or `None` if the command trapped.
    pub fn exit_code(&self) -> Option<i32> {
        match self.status {
            CommandStatus::Exited(code) => Some(code),
            CommandStatus::Trapped(_) => None,
        }
    }

    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.status == CommandStatus::Exited(0)
    }

    /// stdout, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A WASI preview 1 command runner: a synchronous engine, reusable for many runs (compile once with
/// [`WasiCommand::compile`], run many times).
#[derive(Clone)]
pub struct WasiCommand {
    engine: Engine,
}

impl std::fmt::Debug for WasiCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiCommand").finish_non_exhaustive()
    }
}

/// One invocation's settings: arguments (after `argv[0]`), environment and preopened directories.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `argv[0]`; `"main.wasm"` when empty.
    pub program: String,
    /// The arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables; none by default.
    pub env: Vec<(String, String)>,
    /// `(host directory, guest path)` pairs, preopened with full permissions.
    pub preopens: Vec<(PathBuf, String)>,
    /// stdin contents; empty by default.
    pub stdin: Vec<u8>,
}

impl WasiCommand {
    /// A runner with a synchronous engine using wasmtime's default compilation cache if it loads.
    pub fn new() -> Result<Self> {
        let mut config = Config::new();
        let _ = config.cache_config_load_default();
        Ok(Self {
            engine: Engine::new(&config)?,
        })
    }

    /// Compiles a core module.
    pub fn compile(&self, module: &[u8]) -> Result<Module> {
        Module::new(&self.engine, module).context("compiling the command module")
    }

    /// Runs `module`'s `_start` with `invocation`. Errors are host-side failures (bad module,
    /// missing import, unreadable preopen); traps and exits are [`CommandStatus`]es.
    pub fn run(&self, module: &Module, invocation: &Invocation) -> Result<CommandOutput> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let mut builder = WasiCtxBuilder::new();
        let program = if invocation.program.is_empty() {
            "main.wasm"
        } else {
            &invocation.program
        };
        builder
            .arg(program)
            .args(&invocation.args)
            .envs(&invocation.env)
            .stdin(MemoryInputPipe::new(invocation.stdin.clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        for (host, guest) in &invocation.preopens {
            builder
                .preopened_dir(host, guest, DirPerms::all(), FilePerms::all())
                .with_context(|| format!("preopening {} as {guest}", host.display()))?;
        }
        let mut store = Store::new(&self.engine, builder.build_p1());
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&self.engine);
        preview1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
        linker
            .module(&mut store, "", module)
            .context("linking the command module")?;
        let start = linker
            .get_default(&mut store, "")?
            .typed::<(), ()>(&store)?;
        let status = match start.call(&mut store, ()) {
            Ok(()) => CommandStatus::Exited(0),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => CommandStatus::Exited(exit.0),
                None => CommandStatus::Trapped(error_message(&e)),
            },
        };
        drop(store);
        Ok(CommandOutput {
            status,
            stdout: stdout.contents().to_vec(),
            stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        })
    }
}

/// Runs a core wasm32-wasip1 command once: `args` after `argv[0]`, one host directory preopened at
/// a guest path.
pub fn run_wasi_command(
    module: &[u8],
    args: &[&str],
    preopen: (&Path, &str),
) -> Result<CommandOutput> {
    let runner = WasiCommand::new()?;
    let module = runner.compile(module)?;
    let invocation = Invocation {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        preopens: vec![(preopen.0.to_path_buf(), preopen.1.to_owned())],
        ..Invocation::default()
    };
    runner.run(&module, &invocation)
}
