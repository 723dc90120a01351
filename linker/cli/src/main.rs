//! `kinode-link`: the Kinode linker's core as a native command.
//!
//! Exit status: 0 on success, 1 when linking fails (one message on stderr naming what is
//! wrong), 2 for usage errors. A failed command writes no output file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use linker_core::{Compression, Input, Options, World};

#[cfg(target_os = "linux")]
mod alloc;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

#[derive(Parser)]
#[command(
    name = "kinode-link",
    version,
    about = "Link Kinode packages against the API libraries they import"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Link a package zip against API zips and write the linked package zip.
    Link {
        /// The package zip (the contents of pkg/, as kit builds it).
        package: PathBuf,
        /// An API zip (a package's api.zip); named after its file, `-api.zip` dropped.
        #[arg(long = "api", value_name = "API.zip")]
        apis: Vec<PathBuf>,
        /// Where to write the linked package zip.
        #[arg(short, long, value_name = "LINKED.zip")]
        output: PathBuf,
        /// Store files uncompressed instead of deflating them.
        #[arg(long)]
        stored: bool,
        /// Print the report as JSON (the linked package's link.json).
        #[arg(long)]
        json: bool,
    },
    /// Compose one component with library components, which may also satisfy each other.
    Compose {
        /// The component whose imports to satisfy.
        component: PathBuf,
        /// A library component.
        #[arg(long = "dep", short = 'd', value_name = "LIB.wasm")]
        deps: Vec<PathBuf>,
        /// Where to write the composed component.
        #[arg(short, long, value_name = "OUT.wasm")]
        output: PathBuf,
        /// `kinode` checks the result against the Kinode runtime; `any` leaves unmatched
        /// imports as imports and checks nothing more.
        #[arg(long, value_enum, default_value_t = WorldArg::Kinode)]
        world: WorldArg,
    },
    /// Explain, import by import, how a package would be linked and why any import would not,
    /// and what each library would be able to do and how the package bounds it.
    Explain {
        /// The package zip.
        package: PathBuf,
        /// An API zip.
        #[arg(long = "api", value_name = "API.zip")]
        apis: Vec<PathBuf>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum WorldArg {
    Kinode,
    Any,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A file read from disk, with the name reports use for it.
struct Loaded {
    name: String,
    bytes: Vec<u8>,
}

impl Loaded {
    fn read(path: &Path, name: String) -> Result<Loaded, String> {
        let bytes =
            fs::read(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        Ok(Loaded { name, bytes })
    }

    fn input(&self) -> Input<'_> {
        Input::new(&self.name, &self.bytes)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// An API zip is known by its package id: `chat:template.os-api.zip` is `chat:template.os`.
fn api_name(path: &Path) -> String {
    let name = file_name(path);
    let stem = name.strip_suffix(".zip").unwrap_or(&name);
    stem.strip_suffix("-api").unwrap_or(stem).to_owned()
}

fn load_apis(paths: &[PathBuf]) -> Result<Vec<Loaded>, String> {
    paths
        .iter()
        .map(|path| Loaded::read(path, api_name(path)))
        .collect()
}

/// Writes through a temporary file and a rename, so a failure leaves no partial output. An
/// output already there is removed just before the rename, as lld does with its output: on
/// ext4, renaming over a file makes the kernel write the new one's data out at once
/// (`auto_da_alloc`), which for a 4 MB package costs more than the link itself.
fn write_output(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |error: std::io::Error| format!("cannot write `{}`: {error}", path.display());
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, bytes).map_err(fail)?;
    let replaced = match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => fs::rename(&temporary, path),
    };
    replaced.map_err(|error| {
        let _ = fs::remove_file(&temporary);
        fail(error)
    })
}

fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Link {
            package,
            apis,
            output,
            stored,
            json,
        } => {
            let package = Loaded::read(&package, file_name(&package))?;
            let apis = load_apis(&apis)?;
            let inputs: Vec<Input<'_>> = apis.iter().map(Loaded::input).collect();
            let options = Options {
                compression: if stored {
                    Compression::Stored
                } else {
                    Compression::default()
                },
                ..Options::default()
            };
            let linked =
                linker_core::link(package.input(), &inputs, &options).map_err(|e| e.to_string())?;
            write_output(&output, &linked.bytes)?;
            if json {
                return serde_json::to_string_pretty(&linked.report).map_err(|e| e.to_string());
            }
            let count = linked
                .report
                .components
                .iter()
                .filter(|c| c.is_linked())
                .count();
            Ok(format!(
                "{}\nwrote {} ({count} of {} components linked)",
                linked.report,
                output.display(),
                linked.report.components.len()
            ))
        }
        Command::Compose {
            component,
            deps,
            output,
            world,
        } => {
            let root = Loaded::read(&component, file_name(&component))?;
            let deps = deps
                .iter()
                .map(|path| Loaded::read(path, file_name(path)))
                .collect::<Result<Vec<_>, _>>()?;
            let inputs: Vec<Input<'_>> = deps.iter().map(Loaded::input).collect();
            let options = Options {
                world: match world {
                    WorldArg::Kinode => World::Kinode,
                    WorldArg::Any => World::Any,
                },
                ..Options::default()
            };
            let composed = linker_core::compose_owned(&root.name, root.bytes, &inputs, &options)
                .map_err(|e| e.to_string())?;
            write_output(&output, &composed.bytes)?;
            Ok(format!("{}\nwrote {}", composed.report, output.display()))
        }
        Command::Explain {
            package,
            apis,
            json,
        } => {
            let package = Loaded::read(&package, file_name(&package))?;
            let apis = load_apis(&apis)?;
            let inputs: Vec<Input<'_>> = apis.iter().map(Loaded::input).collect();
            let explanation = linker_core::explain(package.input(), &inputs, &Options::default())
                .map_err(|e| e.to_string())?;
            if json {
                return serde_json::to_string_pretty(&explanation).map_err(|e| e.to_string());
            }
            let mut lines = Vec::new();
            for component in &explanation.components {
                let unresolved = component
                    .imports
                    .iter()
                    .filter(|import| !import.is_linked())
                    .count();
                let count = component.imports.len();
                let noun = if count == 1 {
                    "library import"
                } else {
                    "library imports"
                };
                let summary = match (count, unresolved) {
                    (0, _) => "nothing to link".to_owned(),
                    (n, 0) => format!("{n} {noun}, all resolved"),
                    (n, bad) => format!("{n} {noun}, {bad} unresolved"),
                };
                lines.push(format!("{}: {summary}", component.path));
                for import in &component.imports {
                    let by = if import.importer.path == component.path {
                        String::new()
                    } else {
                        format!(" [for {}]", import.importer.path)
                    };
                    lines.push(format!("  {import}{by}"));
                }
                component.library_lines(&mut lines);
            }
            Ok(lines.join("\n"))
        }
    }
}
