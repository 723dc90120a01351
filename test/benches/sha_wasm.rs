//! SHA-256 in Wasm, as the node runs it: each implementation and build setting of
//! `bench/sha-wasm` built for wasm32-wasip1 and run on wasmtime 27 with the runtime's Cranelift
//! settings, hashing 12 MiB (about what a bigapp install hashes in the node) per run, the runs of
//! all variants interleaved; beside them the native `sha2` this process uses (SHA-NI where the CPU
//! has it). Prints a table of medians (BENCHMARKS.md "SHA-256 in Wasm"). Every variant must give
//! the same digest as native `sha2`, or the bench fails.
//!
//! Last, the only hashing the runtime offers a process, the VFS's `Hash` of a file, on a 12 MiB
//! file: as kinode v1.0.0 computes it (`kinode/src/vfs.rs`, `VfsAction::Hash`: a tokio `File`,
//! read 1 KiB at a time into `sha2`, each read a trip to tokio's blocking pool), and as the test
//! host does (plain reads), both checked against native `sha2`.
//!
//! `cargo bench -p linker-tests --bench sha_wasm` (RUNS=n, default 15).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use wasmtime::{Config, Engine, Instance, Module, Store, TypedFunc};

/// Rounds of 1 MiB per run.
const ROUNDS: u32 = 12;
/// The buffer the module hashes, as `bench/sha-wasm` fills it.
const SIZE: usize = 1 << 20;

/// The variant `pkg/linker.wasm` is built as (`test/build/src/node_package.rs`).
const LINKER_WASM: usize = 7;

/// One build of the module: its implementation feature and build settings.
struct Variant {
    name: &'static str,
    feature: &'static str,
    opt_level: &'static str,
    rustflags: &'static str,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "sha2 0.10, unrolled soft rounds (default), opt-level 3",
        feature: "sha2-soft",
        opt_level: "3",
        rustflags: "",
    },
    Variant {
        name: "sha2 0.10, force-soft-compact (linker.wasm before the SIMD build), opt-level 3",
        feature: "sha2-compact",
        opt_level: "3",
        rustflags: "",
    },
    Variant {
        name: "sha2 0.10, force-soft-compact, opt-level s",
        feature: "sha2-compact",
        opt_level: "s",
        rustflags: "",
    },
    Variant {
        name: "sha2 0.10, force-soft-compact, +simd128",
        feature: "sha2-compact",
        opt_level: "3",
        rustflags: "-C target-feature=+simd128",
    },
    Variant {
        name: "sha2 0.10, unrolled soft rounds, +simd128",
        feature: "sha2-soft",
        opt_level: "3",
        rustflags: "-C target-feature=+simd128",
    },
    Variant {
        name: "sha2 0.11, default (unrolled soft rounds)",
        feature: "sha2-next",
        opt_level: "3",
        rustflags: "",
    },
    Variant {
        name: "sha2 0.11, compact soft rounds",
        feature: "sha2-next",
        opt_level: "3",
        rustflags: "--cfg sha2_backend_soft=\"compact\"",
    },
    Variant {
        name: "sha2 0.11, +simd128 (its wasm32 SIMD backend): linker.wasm",
        feature: "sha2-next",
        opt_level: "3",
        rustflags: "-C target-feature=+simd128",
    },
    Variant {
        name: "hmac-sha256 1, opt-level 3",
        feature: "hmac-sha256",
        opt_level: "3",
        rustflags: "",
    },
    Variant {
        name: "hmac-sha256 1, +simd128",
        feature: "hmac-sha256",
        opt_level: "3",
        rustflags: "-C target-feature=+simd128",
    },
];

/// Builds `variant` into a target directory of its own; the module's path.
fn build(root: &Path, index: usize, variant: &Variant) -> Result<PathBuf> {
    let crate_dir = root.join("bench/sha-wasm");
    let target = root.join(format!("target/sha-wasm/{index}"));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args([
            "build",
            "--quiet",
            "--locked",
            "--release",
            "--target",
            "wasm32-wasip1",
        ])
        .args(["--features", variant.feature])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", variant.opt_level)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            variant.rustflags.replace(' ', "\u{1f}"),
        )
        .env_remove("RUSTFLAGS")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building {} failed", variant.name);
    }
    Ok(target.join("wasm32-wasip1/release/sha_wasm.wasm"))
}

/// What the module computes, natively: the first four bytes of the last digest.
fn expected(rounds: u32) -> u32 {
    let mut buffer: Vec<u8> = (0..SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let mut digest = [0u8; 32];
    for _ in 0..rounds {
        buffer[..32].copy_from_slice(&digest);
        digest = Sha256::digest(&buffer).into();
    }
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(15);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The runtime's engine settings that bear on compiled code (Cranelift, default optimisation).
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let mut store = Store::new(&engine, ());
    let mut hashes: Vec<TypedFunc<u32, u32>> = Vec::new();
    let mut sizes = Vec::new();
    for (index, variant) in VARIANTS.iter().enumerate() {
        eprintln!("building {}", variant.name);
        let path = build(&root, index, variant)?;
        sizes.push(std::fs::metadata(&path)?.len());
        let module = Module::from_file(&engine, &path)?;
        let instance = Instance::new(&mut store, &module, &[])?;
        hashes.push(instance.get_typed_func::<u32, u32>(&mut store, "hash")?);
    }
    let want = expected(ROUNDS);
    for (variant, hash) in VARIANTS.iter().zip(&hashes) {
        let got = hash.call(&mut store, ROUNDS)?;
        if got != want {
            bail!(
                "{} computes another digest ({got:08x}, not {want:08x})",
                variant.name
            );
        }
    }
    let file = root.join("target/sha-wasm/file.bin");
    let file_digest = write_file(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for (way, digest) in [
        ("the runtime's VFS Hash", runtime.block_on(vfs_hash(&file))?),
        ("the test host's VFS Hash", read_and_hash(&file)?),
    ] {
        if digest != file_digest {
            bail!("{way} computes another digest");
        }
    }
    // The module variants, native sha2, the runtime's Hash, the test host's Hash.
    let mut times = vec![Vec::new(); VARIANTS.len() + 3];
    for _ in 0..runs {
        for (index, hash) in hashes.iter().enumerate() {
            let started = Instant::now();
            hash.call(&mut store, ROUNDS)?;
            times[index].push(started.elapsed());
        }
        let started = Instant::now();
        std::hint::black_box(expected(ROUNDS));
        times[VARIANTS.len()].push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(runtime.block_on(vfs_hash(&file))?);
        times[VARIANTS.len() + 1].push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(read_and_hash(&file)?);
        times[VARIANTS.len() + 2].push(started.elapsed());
    }
    let baseline = median(&mut times[LINKER_WASM].clone());
    let row = |name: &str, size: Option<u64>, time: Duration| {
        println!(
            "| {name} | {} | {:.1} | {:.0} | {:.2}× |",
            size.map_or("-".to_owned(), |size| format!(
                "{:.1} KiB",
                size as f64 / 1024.0
            )),
            time.as_secs_f64() * 1e3,
            f64::from(ROUNDS) / time.as_secs_f64(),
            time.as_secs_f64() / baseline.as_secs_f64()
        );
    };
    println!("SHA-256 of {ROUNDS} MiB, median of {runs} runs, interleaved");
    println!("| implementation and build | module | ms | MiB/s | vs linker.wasm |");
    println!("|---|---:|---:|---:|---:|");
    for ((variant, runs), size) in VARIANTS.iter().zip(&mut times).zip(&sizes) {
        row(variant.name, Some(*size), median(runs));
    }
    let mut rest = times.split_off(VARIANTS.len());
    for (name, runs) in [
        "native sha2 0.10 (this CPU's fastest; includes filling the buffer)",
        "the runtime's VFS `Hash` of a file (kinode v1.0.0: tokio `File`, 1 KiB reads)",
        "the test host's VFS `Hash` of a file (plain reads)",
    ]
    .into_iter()
    .zip(&mut rest)
    {
        row(name, None, median(runs));
    }
    Ok(())
}

/// Writes the 12 MiB file the VFS rows hash; its digest.
fn write_file(path: &Path) -> Result<[u8; 32]> {
    let bytes: Vec<u8> = (0..SIZE * ROUNDS as usize)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    std::fs::create_dir_all(path.parent().context("the file's folder")?)?;
    std::fs::write(path, &bytes).context("writing the file to hash")?;
    Ok(Sha256::digest(&bytes).into())
}

/// The file's SHA-256 the way the runtime's VFS serves `Hash`: a tokio `File` seeked to the
/// start and read into a 1 KiB buffer until it ends, every read run on tokio's blocking pool.
async fn vfs_hash(path: &Path) -> Result<[u8; 32]> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut hasher = Sha256::new();
    let mut buffer = [0; 1024];
    loop {
        match file.read(&mut buffer).await? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hasher.finalize().into())
}

/// The file's SHA-256 from plain blocking reads, as the test host serves `Hash`.
fn read_and_hash(path: &Path) -> Result<[u8; 32]> {
    Ok(Sha256::digest(std::fs::read(path)?).into())
}
