//! Inspecting components: deciding what a `.wasm` file is, decoding a component's type into a
//! shared type arena, and classifying its imports as the runtime's or a library's to provide.

use std::cell::{Cell, OnceCell};
use std::fmt;

use serde::{Deserialize, Serialize};
#[cfg(not(all(target_family = "wasm", target_feature = "simd128")))]
use sha2::{Digest, Sha256};
#[cfg(all(target_family = "wasm", target_feature = "simd128"))]
use sha2_simd::{Digest, Sha256};
use thiserror::Error;
use wac_graph::types::{ItemKind, Package, Types};
use wasmparser::{
    FuncToValidate, FuncValidatorAllocations, FunctionBody, Parser, ValidPayload, Validator,
    ValidatorResources, WasmFeatures,
};

/// Where a component came from: an archive and a path inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    /// The archive's name (the package, or an API archive).
    pub archive: String,
    /// The path of the `.wasm` file inside the archive.
    pub path: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.archive == self.path {
            write!(f, "`{}`", self.path)
        } else {
            write!(f, "`{}` in `{}`", self.path, self.archive)
        }
    }
}

/// A `.wasm` file that cannot be used as a component.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InspectError {
    /// The file is a core module or not Wasm at all.
    #[error("{origin} is {found}, not a WebAssembly component; build it as a component (kit and `wasm-tools component new` do)")]
    NotAComponent {
        /// The file.
        origin: Origin,
        /// What it is instead.
        found: &'static str,
    },
    /// The file claims to be a component but does not decode or validate.
    #[error("{origin} is not a valid component: {reason}")]
    InvalidComponent {
        /// The file.
        origin: Origin,
        /// The decoder's or validator's complaint.
        reason: String,
    },
    /// A core module the package ships as it is (not a process) does not validate.
    #[error("{origin} is not a valid WebAssembly module: {reason}")]
    InvalidModule {
        /// The file.
        origin: Origin,
        /// The validator's complaint.
        reason: String,
    },
}

/// A decoded component: its origin and type (in the arena it was decoded into), and its hash
/// once a report asks for it.
pub(crate) struct Unit {
    pub origin: Origin,
    pub package: Package,
    sha256: OnceCell<String>,
}

impl Unit {
    /// Decodes `bytes` into `types` as package `name` (unique among the components one
    /// composition registers). The decoder validates the component's structure with every
    /// proposal allowed; whether it keeps to the runtime's features is checked once, function
    /// bodies included, where the component is packed: [`validate`] of it as it is, or of the
    /// composition it goes into, which names the input that breaks them.
    pub fn decode(
        origin: Origin,
        name: &str,
        bytes: impl AsRef<[u8]> + Into<Vec<u8>>,
        types: &mut Types,
    ) -> Result<Unit, InspectError> {
        if !Parser::is_component(bytes.as_ref()) {
            let found = if Parser::is_core_wasm(bytes.as_ref()) {
                "a core Wasm module"
            } else {
                "not WebAssembly"
            };
            return Err(InspectError::NotAComponent { origin, found });
        }
        match Package::from_bytes(name, None, bytes, types) {
            Ok(package) => Ok(Unit {
                origin,
                package,
                sha256: OnceCell::new(),
            }),
            Err(error) => Err(InspectError::InvalidComponent {
                origin,
                reason: format!("{error:#}"),
            }),
        }
    }

    /// The same unit with the SHA-256 of its bytes already known.
    pub fn with_sha256(self, sha256: String) -> Unit {
        let _ = self.sha256.set(sha256);
        self
    }

    /// SHA-256 of the component's bytes, computed on first use: only reports need it.
    pub fn sha256(&self) -> &str {
        self.sha256.get_or_init(|| sha256_hex(self.package.bytes()))
    }

    /// The component's imports, in declaration order.
    pub fn imports<'t>(&self, types: &'t Types) -> impl Iterator<Item = (&'t str, ItemKind)> + 't {
        types[self.package.ty()]
            .imports
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
    }

    /// The component's exports, in declaration order.
    pub fn exports<'t>(&self, types: &'t Types) -> impl Iterator<Item = (&'t str, ItemKind)> + 't {
        types[self.package.ty()]
            .exports
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
    }
}

/// The Wasm features the Kinode runtime's engine accepts, in this wasmparser's terms.
///
/// The runtime (kinode 1.0.0) builds `wasmtime = "27.0.0"` with its default crate features and
/// configures it with `wasm_component_model(true)` and the default (Cranelift) compiler, so its
/// set is wasmtime 27's `Config::features` (wasmtime-27.0.0/src/config.rs): `WASM2`, plus
/// `MULTI_MEMORY`, `RELAXED_SIMD`, `TAIL_CALL` and `EXTENDED_CONST`, plus `GC_TYPES` (crate
/// feature `gc`), `THREADS` (`threads`) and `COMPONENT_MODEL` (`component-model`); Cranelift
/// removes none. Every other proposal this wasmparser knows (component-model async, compact
/// imports, wide arithmetic, memory64, ...) is off: wasmtime 27 (wasmparser 0.219) leaves it off
/// or does not know it.
pub const RUNTIME_FEATURES: WasmFeatures = WasmFeatures::WASM2
    .union(WasmFeatures::MULTI_MEMORY)
    .union(WasmFeatures::RELAXED_SIMD)
    .union(WasmFeatures::TAIL_CALL)
    .union(WasmFeatures::EXTENDED_CONST)
    .union(WasmFeatures::GC_TYPES)
    .union(WasmFeatures::THREADS)
    .union(WasmFeatures::COMPONENT_MODEL);

/// Validates a whole component or core module, function bodies included, with the features of
/// `world` (the Kinode runtime's for [`World::Kinode`]). A component must validate this way to
/// go into a linked package; [`Unit::decode`] does not check it, so that a component that is
/// composed is validated once, as the composition's output.
///
/// One pass validates the structure and hands each function body, as the pass reaches it, to
/// threads that validate bodies meanwhile (natively, for input large enough to repay them; in
/// a Kinode process, which has one thread, the pass validates them itself). The error is the one
/// a single in-order pass reports: the first failing body's, else the structure's.
pub fn validate(bytes: &[u8], world: World) -> Result<(), String> {
    validate_beside(bytes, world, 0)
}

/// [`validate`] while `busy` other threads run beside it (a hash of the same bytes): it starts
/// that many fewer threads of its own, so that none of them waits for a core.
pub(crate) fn validate_beside(bytes: &[u8], world: World, busy: usize) -> Result<(), String> {
    let threads = if cfg!(target_arch = "wasm32") || bytes.len() < PARALLEL_FROM {
        0
    } else {
        cores().saturating_sub(1 + busy).min(MAX_THREADS)
    };
    if threads == 0 {
        return Validator::new_with_features(world.features())
            .validate_all(bytes)
            .map(drop)
            .map_err(|error| error.to_string());
    }
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (sender, receiver) = std::sync::mpsc::channel::<Body<'_>>();
            queues.push((sender, 0usize));
            workers.push(scope.spawn(move || validate_bodies(receiver)));
        }
        let mut validator = Validator::new_with_features(world.features());
        let mut structure = Ok(());
        let mut sequence = 0;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.and_then(|payload| validator.payload(&payload)) {
                Ok(ValidPayload::Func(function, body)) => {
                    // To the thread with the fewest bytes queued so far.
                    let (queue, queued) = queues
                        .iter_mut()
                        .min_by_key(|(_, queued)| *queued)
                        .expect("at least one thread");
                    *queued += body.as_bytes().len();
                    // A thread that stopped at a failure no longer listens; its failure stands.
                    let _ = queue.send((sequence, function, body));
                    sequence += 1;
                }
                Ok(_) => {}
                Err(error) => {
                    structure = Err(error.to_string());
                    break;
                }
            }
        }
        drop(queues);
        let first_body_failure = workers
            .into_iter()
            .filter_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .min_by_key(|(sequence, _)| *sequence);
        match first_body_failure {
            Some((_, error)) => Err(error),
            None => structure,
        }
    })
}

/// A function body the structure pass handed on, with its place among the bodies.
type Body<'a> = (usize, FuncToValidate<ValidatorResources>, FunctionBody<'a>);

/// Validates the bodies `queue` brings, in order, until one fails: that one, with its place.
fn validate_bodies(queue: std::sync::mpsc::Receiver<Body<'_>>) -> Option<(usize, String)> {
    let mut allocations = FuncValidatorAllocations::default();
    for (sequence, function, body) in queue {
        let mut validator = function.into_validator(allocations);
        if let Err(error) = validator.validate(&body) {
            return Some((sequence, error.to_string()));
        }
        allocations = validator.into_allocations();
    }
    None
}

/// The processors this process may use, asked once: each asking reads the cgroup's quota files.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Input smaller than this is validated on one thread: starting others costs more than it saves.
const PARALLEL_FROM: usize = 64 * 1024;
/// At most this many threads validate bodies beside the structure pass.
const MAX_THREADS: usize = 7;

/// Validates a `.wasm` file that is not a component and is packed as it is: it must be a core
/// module that validates.
pub(crate) fn validate_module(
    origin: &Origin,
    bytes: &[u8],
    world: World,
) -> Result<(), InspectError> {
    if !Parser::is_core_wasm(bytes) {
        return Err(InspectError::NotAComponent {
            origin: origin.clone(),
            found: "not WebAssembly",
        });
    }
    validate(bytes, world).map_err(|reason| InspectError::InvalidModule {
        origin: origin.clone(),
        reason,
    })
}

thread_local! {
    /// Bytes [`sha256_hex`] has hashed on this thread.
    static HASHED: Cell<u64> = const { Cell::new(0) };
}

/// How many bytes [`sha256_hex`] has hashed on this thread so far: benchmarks and tests read it
/// before and after a link to see that no byte is hashed twice.
pub fn bytes_hashed() -> u64 {
    HASHED.with(Cell::get)
}

/// Lowercase hex SHA-256 of `bytes`, the form Kinode uses for version hashes; counted in
/// [`bytes_hashed`].
pub fn sha256_hex(bytes: &[u8]) -> String {
    count_hashed(bytes.len());
    uncounted_sha256_hex(bytes)
}

/// Counts `len` bytes as hashed on this thread ([`bytes_hashed`]).
pub(crate) fn count_hashed(len: usize) {
    HASHED.with(|hashed| hashed.set(hashed.get() + len as u64));
}

/// [`sha256_hex`] without counting, for debug builds' checks of hashes callers supply.
pub(crate) fn uncounted_sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Which imports the host provides and which a library must.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// A Kinode process: the runtime provides `kinode:process/standard@1.0.0` and WASI 0.2;
    /// every other import must be linked, and the result must export `init`.
    #[default]
    Kinode,
    /// Any component: imports no library provides are left as imports, nothing is verified.
    Any,
}

/// The WASI 0.2 packages the Kinode runtime's `wasmtime-wasi` adds to its linker.
const RUNTIME_WASI: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

impl World {
    /// Whether an import is the host's to provide, so the linker leaves it alone. Any version
    /// of `standard` counts, so that an old one is reported by verification, not as unlinked.
    pub fn is_host_import(self, name: &str) -> bool {
        match self {
            World::Kinode => crate::abilities::is_standard(name) || name.starts_with("wasi:"),
            World::Any => false,
        }
    }

    /// The Wasm features a component must keep to: the Kinode runtime's, or for any other
    /// world this wasmparser's defaults.
    pub fn features(self) -> WasmFeatures {
        match self {
            World::Kinode => RUNTIME_FEATURES,
            World::Any => WasmFeatures::default(),
        }
    }

    /// Whether the Kinode runtime can satisfy this import of a linked component.
    pub fn runtime_provides(name: &str) -> bool {
        name == "kinode:process/standard@1.0.0"
            || RUNTIME_WASI.iter().any(|package| {
                name.strip_prefix(package)
                    .and_then(|rest| rest.split_once('@'))
                    .is_some_and(|(_, version)| version.starts_with("0.2."))
            })
    }
}
