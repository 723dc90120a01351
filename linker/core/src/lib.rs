//! The Kinode linker's core: composes the library components that Kinode packages publish in
//! their `api.zip` into the processes and scripts that import them.
//!
//! It is pure: bytes in, bytes and a report out, no I/O, so it runs the same natively and inside
//! a Kinode process. The pipeline is DESIGN.md's: read the archives ([`archive`]), decode every
//! component ([`inspect`]), resolve each library import ([`resolve`]), compose with wac-graph
//! ([`compose`]), verify the result against the Kinode runtime ([`verify`]) and pack the linked
//! package with its `link.json` ([`package`], [`report`]).

pub mod abilities;
pub mod archive;
mod audit;
pub mod bounds;
pub mod compose;
mod hashing;
pub mod inspect;
pub mod package;
pub mod report;
pub mod resolve;
pub mod verify;

use std::sync::Arc;

use thiserror::Error;
use wac_graph::types::Types;
use wasmparser::Parser;

pub use abilities::Ability;
pub use archive::{ArchiveError, Compression, Limits};
pub use bounds::{Bound, BoundsError, Forbidden, Reason};
pub use compose::ComposeError;
pub use inspect::{InspectError, Origin, World};
pub use linker_guard::GuardError;
pub use package::{CopiedFile, PackageError};
pub use report::{ComponentReport, ComposeReport, Digest, LibraryReport, LinkReport, Role, Source};
pub use resolve::{ImportReport, Outcome, ResolveError};
pub use verify::VerifyError;

use crate::archive::Archive;
use crate::audit::Audit;
use crate::bounds::Bounds;
use crate::hashing::{Bytes, Hasher, Pending};
use crate::inspect::Unit;
pub use crate::inspect::{bytes_hashed, sha256_hex};
use crate::package::PackageFiles;
use crate::resolve::{Catalog, Resolution};

/// The package name a component being linked has in its composition; its libraries are `lib{n}`.
const ROOT: &str = "component";

/// The linker's version, recorded in every `link.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One input: the name the user knows it by (a file name or a package id) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The name used in reports and errors. For an API archive, `pkg:publisher` (or a file name).
    pub name: &'a str,
    /// The bytes.
    pub bytes: &'a [u8],
    /// For an API archive, why it is an input; reports carry it to every import it satisfies.
    /// Ignored for the package itself.
    pub source: Source,
    /// The bytes' SHA-256 (lowercase hex) if the caller has it already; otherwise the report's
    /// digest is computed here.
    pub sha256: Option<&'a str>,
}

impl<'a> Input<'a> {
    /// An input named by the user ([`Source::Given`]).
    pub fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        Input {
            name,
            bytes,
            source: Source::Given,
            sha256: None,
        }
    }

    /// The same input with its SHA-256 already known, so that it is not hashed twice: the linker
    /// process hashes every input once, for its cache key and version hash, and in Wasm hashing
    /// is most of what a large link costs. It must be the SHA-256 of `bytes`; debug builds check.
    pub fn with_sha256(self, sha256: &'a str) -> Self {
        Input {
            sha256: Some(sha256),
            ..self
        }
    }
}

/// How to link.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Bounds on the archives read.
    pub limits: Limits,
    /// Which imports are the host's, and whether to verify against the Kinode runtime.
    pub world: World,
    /// How the linked package zip stores its files.
    pub compression: Compression,
}

/// Why a link failed. Each variant is one layer's error; resolution reports every problem.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkError {
    /// An archive breaks the archive rules.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The package's own files are inconsistent.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// A `.wasm` file is not a usable component.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Imports that cannot be linked, all of them.
    #[error("{}", unresolved(problems))]
    Unresolved {
        /// Every problem found, in component and import order.
        problems: Vec<ResolveError>,
    },
    /// The package's `library-bounds.json` is unusable, or forbids what a library imports.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    /// A bound does not fit the guard that would enforce it.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The composition engine failed.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The linked result would not run on a Kinode node.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

fn unresolved(problems: &[ResolveError]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let lines: Vec<String> = many.iter().map(|p| format!("  - {p}")).collect();
            format!(
                "{} imports cannot be linked:\n{}",
                many.len(),
                lines.join("\n")
            )
        }
    }
}

/// A linked package: the zip to install, and what was done.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The linked package zip (the contents of `pkg/`, `link.json` included).
    pub bytes: Vec<u8>,
    /// The report, identical to the zip's `link.json`.
    pub report: LinkReport,
    /// SHA-256 of `link.json` as packed. It names the hash of every input archive, every
    /// component as it came in and as linked, and every copied file, so it identifies the
    /// linked package without hashing the whole zip again.
    pub record_sha256: String,
}

/// A composed component, from [`compose`].
#[derive(Debug, Clone)]
pub struct Composed {
    /// The composed component.
    pub bytes: Vec<u8>,
    /// What was linked into it.
    pub report: ComposeReport,
}

/// Links a package zip against API zips: every process, script and other component of the
/// package gets the libraries it imports, and the result is verified and packed.
pub fn link(
    package: Input<'_>,
    apis: &[Input<'_>],
    options: &Options,
) -> Result<Linked, LinkError> {
    hashing::with_hasher(|hasher| link_with(package, apis, options, hasher))
}

fn link_with<'env>(
    package: Input<'env>,
    apis: &[Input<'env>],
    options: &Options,
    hasher: &Hasher<'_, 'env>,
) -> Result<Linked, LinkError> {
    let mut session = Session::load(package, apis, options, Hashing::Components, hasher)?;
    let mut resolutions = session.resolve_all()?;
    for resolution in &mut resolutions {
        session.attribute(&mut resolution.reports);
    }
    // Each decoded component is consumed as it is linked.
    let units = std::mem::take(&mut session.components);
    let catalog = Catalog::new(&session.providers, &session.types);
    let audits = units
        .iter()
        .zip(&resolutions)
        .map(|((path, unit), resolution)| {
            audit::audit(
                path,
                unit,
                &resolution.plan,
                &catalog,
                &session.types,
                &session.bounds,
                true,
            )
        })
        .collect::<Result<Vec<Audit>, _>>()?;
    session.bounds.check_used(
        package.name,
        audits
            .iter()
            .flat_map(|audit| &audit.libraries)
            .map(|library| library.library.archive.as_str()),
    )?;
    let forbidden: Vec<Forbidden> = audits
        .iter()
        .flat_map(|audit| audit.forbidden.iter().cloned())
        .collect();
    if !forbidden.is_empty() {
        return Err(BoundsError::Forbidden { forbidden }.into());
    }
    let archive = &mut session.files.archive;
    let mut components = Vec::with_capacity(units.len());
    // Composed components whose digests are still coming: collected once every component is
    // done, so that the next one is linked or validated meanwhile.
    let mut composed = Vec::new();
    for (((path, unit), resolution), audit) in units.into_iter().zip(resolutions).zip(audits) {
        let role = session
            .files
            .roles
            .get(&path)
            .cloned()
            .unwrap_or(Role::Component);
        if options.world == World::Kinode && role != Role::Component {
            verify::check_init(&path, &unit, &session.types)?;
        }
        let sha256 = unit.sha256().to_owned();
        if resolution.is_empty() {
            validate_unit(&unit, options.world)?;
            verify::check_imports(&path, unit.package.bytes(), options.world)?;
        } else {
            // The decoded unit keeps the component's bytes: the archive's copy is not needed while
            // composing, and the linked bytes take its place.
            archive.files.remove(&path);
            let (bytes, pending) = compose::compose(
                &path,
                unit,
                &resolution.plan,
                &audit.guards,
                &catalog,
                &session.types,
                options.world,
                Some(hasher),
            )?;
            verify::check_imports(&path, &bytes, options.world)?;
            composed.push((components.len(), bytes, pending));
        }
        components.push(ComponentReport {
            path,
            role,
            sha256,
            linked_sha256: None,
            imports: resolution.reports,
            libraries: audit.libraries,
        });
    }
    for (index, bytes, pending) in composed {
        let component = &mut components[index];
        component.linked_sha256 = pending.map(Pending::digest);
        archive
            .files
            .insert(component.path.clone(), hashing::unshare(bytes));
    }
    let Session {
        files,
        providers,
        package_digest,
        api_digests,
        copied,
        ..
    } = session;
    // The libraries are done with: free them before the zip is written.
    drop(providers);
    let report = LinkReport {
        linker: format!("kinode-link {VERSION}"),
        package: package_digest,
        apis: api_digests,
        components,
        copied,
    };
    let mut archive = files.archive;
    let mut record =
        serde_json::to_vec_pretty(&report).expect("a report of strings always serialises");
    record.push(b'\n');
    let record_sha256 = sha256_hex(&record);
    archive.files.insert("link.json".to_owned(), record);
    Ok(Linked {
        bytes: archive.write(options.compression),
        report,
        record_sha256,
    })
}

/// What linking would do, import by import, without failing on unlinkable imports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The package explained.
    pub package: String,
    /// Every component, with each library import's outcome.
    pub components: Vec<ComponentReport>,
}

/// Explains how each library import of a package would be resolved, and why any would not.
/// Fails only when an archive cannot be read or a component that linking would pack (the
/// package's own, or a library it would be linked with) is invalid, as [`link`] would.
pub fn explain(
    package: Input<'_>,
    apis: &[Input<'_>],
    options: &Options,
) -> Result<Explanation, LinkError> {
    let session = hashing::with_hasher(|hasher| {
        Session::load(package, apis, options, Hashing::Components, hasher)
    })?;
    let catalog = session.catalog();
    let mut components = Vec::with_capacity(session.components.len());
    for (path, unit) in &session.components {
        let mut resolution = resolve::resolve(unit, &catalog, &session.types, options.world);
        validate_unit(unit, options.world)?;
        for planned in &resolution.plan.instances {
            validate_unit(catalog.provider(planned.provider), options.world)?;
        }
        session.attribute(&mut resolution.reports);
        let audit = audit::audit(
            path,
            unit,
            &resolution.plan,
            &catalog,
            &session.types,
            &session.bounds,
            false,
        )?;
        components.push(ComponentReport {
            path: path.clone(),
            role: session.role(path),
            sha256: unit.sha256().to_owned(),
            linked_sha256: None,
            imports: resolution.reports,
            libraries: audit.libraries,
        });
    }
    Ok(Explanation {
        package: package.name.to_owned(),
        components,
    })
}

/// The library imports, full names, that no library among the package's own API and `apis`
/// exports at any version, in the order [`explain`] meets them (each once): what must be looked
/// for elsewhere. Unlike [`explain`] it neither validates function bodies nor hashes components,
/// so finding what a package needs costs a fraction of linking it; [`link`] checks the rest.
pub fn unprovided(
    package: Input<'_>,
    apis: &[Input<'_>],
    options: &Options,
) -> Result<Vec<String>, LinkError> {
    let session = hashing::with_hasher(|hasher| {
        Session::load(package, apis, options, Hashing::OnlyArchives, hasher)
    })?;
    let catalog = session.catalog();
    let mut names: Vec<String> = Vec::new();
    for (_, unit) in &session.components {
        let resolution = resolve::resolve(unit, &catalog, &session.types, options.world);
        for report in resolution.reports {
            if matches!(report.outcome, Outcome::Unmatched { .. })
                && !names.contains(&report.import)
            {
                names.push(report.import);
            }
        }
    }
    Ok(names)
}

/// Composes one component with library components, which may also satisfy each other: the
/// component-level counterpart of `wasm-tools compose -d` and `wac plug`.
pub fn compose(
    root: Input<'_>,
    libraries: &[Input<'_>],
    options: &Options,
) -> Result<Composed, LinkError> {
    compose_owned(root.name, root.bytes.to_vec(), libraries, options)
}

/// [`compose`] of a root component the caller owns: its bytes move into the composition
/// instead of being copied, which matters for a large component.
pub fn compose_owned(
    name: &str,
    root: Vec<u8>,
    libraries: &[Input<'_>],
    options: &Options,
) -> Result<Composed, LinkError> {
    let mut types = Types::default();
    let origin = |name: &str| Origin {
        archive: name.to_owned(),
        path: name.to_owned(),
    };
    let units = libraries
        .iter()
        .enumerate()
        .map(|(index, library)| {
            let package = format!("lib{index}");
            Unit::decode(origin(library.name), &package, library.bytes, &mut types)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let unit = Unit::decode(origin(name), ROOT, root, &mut types)?;
    let catalog = Catalog::new(&units, &types).without_hashes();
    let resolution = resolve::resolve(&unit, &catalog, &types, options.world);
    let problems = resolution.errors(name);
    if !problems.is_empty() {
        return Err(LinkError::Unresolved { problems });
    }
    if options.world == World::Kinode {
        verify::check_init(name, &unit, &types)?;
    }
    let audit = audit::audit(
        name,
        &unit,
        &resolution.plan,
        &catalog,
        &types,
        &Bounds::default(),
        false,
    )?;
    let bytes = if resolution.is_empty() {
        validate_unit(&unit, options.world)?;
        unit.package.bytes().to_vec()
    } else {
        compose::compose(
            name,
            unit,
            &resolution.plan,
            &audit.guards,
            &catalog,
            &types,
            options.world,
            None,
        )
        .map(|(bytes, _)| hashing::unshare(bytes))?
    };
    verify::check_imports(name, &bytes, options.world)?;
    Ok(Composed {
        report: ComposeReport {
            component: name.to_owned(),
            imports: resolution.reports,
            libraries: audit.libraries,
        },
        bytes,
    })
}

/// One library component of an API archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Library {
    /// Its path in the archive.
    pub path: String,
    /// What it exports, full names with versions, e.g. `kinode:process/mathlib@1.0.0`.
    pub exports: Vec<String>,
    /// What it imports besides what the runtime provides (its own library dependencies).
    pub imports: Vec<String>,
}

/// What an API archive offers, from [`describe_api`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiDescription {
    /// The archive, by name and hash.
    pub api: Digest,
    /// Its library components, in path order.
    pub libraries: Vec<Library>,
    /// Its WIT files, in path order.
    pub wit: Vec<String>,
}

/// Lists the libraries of an API archive with what each exports and imports, and its WIT files.
pub fn describe_api(api: Input<'_>, options: &Options) -> Result<ApiDescription, LinkError> {
    let archive = Archive::read(api.name, api.bytes, &options.limits)?;
    let mut types = Types::default();
    let mut providers = Vec::new();
    decode_api(
        &archive,
        &mut types,
        &mut providers,
        options.world,
        Workers::Validate,
    )?;
    let libraries = providers
        .iter()
        .map(|unit| Library {
            path: unit.origin.path.clone(),
            exports: unit
                .exports(&types)
                .map(|(name, _)| name.to_owned())
                .collect(),
            imports: unit
                .imports(&types)
                .map(|(name, _)| name)
                .filter(|name| !options.world.is_host_import(name))
                .map(str::to_owned)
                .collect(),
        })
        .collect();
    let wit = archive
        .files
        .keys()
        .filter(|path| path.ends_with(".wit"))
        .cloned()
        .collect();
    Ok(ApiDescription {
        api: digest(&api),
        libraries,
        wit,
    })
}

/// What a [`Session`] hashes besides the archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hashing {
    /// Every component, for a report that names each one's hash.
    Components,
    /// Nothing more: the components' hashes are not needed.
    OnlyArchives,
}

/// Everything read and decoded for one package link.
struct Session {
    files: PackageFiles,
    bounds: Bounds,
    types: Types,
    providers: Vec<Unit>,
    components: Vec<(String, Unit)>,
    copied: Vec<CopiedFile>,
    package_digest: Digest,
    api_digests: Vec<Digest>,
    world: World,
}

impl Session {
    /// Reads the package and API archives and decodes every component; with `hashing`
    /// [`Hashing::Components`], each component is hashed too. Everything is handed to `hasher` as
    /// soon as it exists (the archives first, then the package's own components as they come out
    /// of its zip), so that natively the hashes run beside the reading and decoding. A worker
    /// copied from an API keeps the hash its copy recorded.
    fn load<'env>(
        package: Input<'env>,
        apis: &[Input<'env>],
        options: &Options,
        hashing: Hashing,
        hasher: &Hasher<'_, 'env>,
    ) -> Result<Session, LinkError> {
        let archive_digest = |input: &Input<'env>| match given_sha256(input) {
            Some(sha256) => Pending::Ready(sha256),
            None => hasher.hash(Bytes::Borrowed(input.bytes)),
        };
        let package_pending = archive_digest(&package);
        let api_pending: Vec<Pending> = apis.iter().map(archive_digest).collect();
        let mut files = PackageFiles::read(package.name, package.bytes, &options.limits)?;
        let bounds = Bounds::read(package.name, &files.archive)?;
        // Out of the archive, shared with their hashing threads, until their digests are in.
        let own: Vec<(String, Arc<Vec<u8>>)> = files
            .take_wasm()
            .into_iter()
            .map(|(path, bytes)| (path, Arc::new(bytes)))
            .collect();
        let mut own_pending: Vec<Option<Pending>> = own
            .iter()
            .map(|(_, bytes)| {
                (hashing == Hashing::Components && Parser::is_component(bytes))
                    .then(|| hasher.hash(Bytes::Shared(Arc::clone(bytes))))
            })
            .collect();
        let mut types = Types::default();
        let mut providers = Vec::new();
        if let Some(own_api) = &files.own_api {
            decode_api(
                own_api,
                &mut types,
                &mut providers,
                options.world,
                Workers::Validate,
            )?;
        }
        let mut workers = Vec::with_capacity(apis.len());
        for api in apis {
            let archive = Archive::read(api.name, api.bytes, &options.limits)?;
            let found = decode_api(
                &archive,
                &mut types,
                &mut providers,
                options.world,
                Workers::Copied,
            )?;
            workers.push((archive, found));
        }
        let mut components = Vec::new();
        for ((path, bytes), pending) in own.iter().zip(&mut own_pending) {
            let origin = Origin {
                archive: package.name.to_owned(),
                path: path.clone(),
            };
            if let Some(unit) = decode_file(origin, bytes, &files, options.world, &mut types)? {
                let unit = match pending.take() {
                    Some(pending) => unit.with_sha256(pending.digest()),
                    None => unit,
                };
                components.push((path.clone(), unit));
            }
        }
        files.restore(
            own.into_iter()
                .map(|(path, bytes)| (path, hashing::unshare(bytes)))
                .collect(),
        );
        let mut copied = Vec::new();
        for (archive, found) in &workers {
            copied.extend(files.add_workers(archive, found.iter().map(String::as_str))?);
        }
        // A worker is named after the API it came from, which is what to mend.
        for file in &copied {
            let origin = Origin {
                archive: file.from.clone(),
                path: file.path.clone(),
            };
            let bytes = &files.archive.files[&file.path];
            if let Some(unit) = decode_file(origin, bytes, &files, options.world, &mut types)? {
                components.push((file.path.clone(), unit.with_sha256(file.sha256.clone())));
            }
        }
        components.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(Session {
            files,
            bounds,
            types,
            providers,
            components,
            copied,
            package_digest: named(&package, package_pending.digest()),
            api_digests: apis
                .iter()
                .zip(api_pending)
                .map(|(api, pending)| named(api, pending.digest()))
                .collect(),
            world: options.world,
        })
    }

    fn catalog(&self) -> Catalog<'_> {
        Catalog::new(&self.providers, &self.types)
    }

    /// Records, on every linked import, why its provider's archive was an input: the package's
    /// own `api.zip` is [`Source::Own`], an API archive carries the source it was given with.
    fn attribute(&self, reports: &mut [ImportReport]) {
        for report in reports {
            if let Outcome::Linked {
                provider, source, ..
            } = &mut report.outcome
            {
                *source = self
                    .api_digests
                    .iter()
                    .find(|api| api.name == provider.archive)
                    .map_or(Source::Own, |api| api.source);
            }
        }
    }

    fn role(&self, path: &str) -> Role {
        self.files
            .roles
            .get(path)
            .cloned()
            .unwrap_or(Role::Component)
    }

    /// Resolves every component, failing with every problem found in any of them.
    fn resolve_all(&mut self) -> Result<Vec<Resolution>, LinkError> {
        let catalog = self.catalog();
        let world = self.world;
        let resolutions: Vec<Resolution> = self
            .components
            .iter()
            .map(|(_, unit)| resolve::resolve(unit, &catalog, &self.types, world))
            .collect();
        let problems: Vec<ResolveError> = self
            .components
            .iter()
            .zip(&resolutions)
            .flat_map(|((path, _), resolution)| resolution.errors(path))
            .collect();
        if problems.is_empty() {
            Ok(resolutions)
        } else {
            Err(LinkError::Unresolved { problems })
        }
    }
}

/// What [`decode_api`] does with the workers it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workers {
    /// Validates each whole, since nothing else will.
    Validate,
    /// Leaves them to the link: a worker is copied into the package as it is, and every file
    /// the package holds is validated there, named after the API it came from.
    Copied,
}

/// Decodes the components of an API archive into `providers` (those that export something
/// besides `init`) and returns the paths of its other `.wasm` files, the workers.
fn decode_api(
    api: &Archive,
    types: &mut Types,
    providers: &mut Vec<Unit>,
    world: World,
    handling: Workers,
) -> Result<Vec<String>, LinkError> {
    let mut workers = Vec::new();
    for (path, bytes) in &api.files {
        if !path.ends_with(".wasm") {
            continue;
        }
        let origin = Origin {
            archive: api.name.clone(),
            path: path.clone(),
        };
        if !Parser::is_component(bytes) {
            if handling == Workers::Validate {
                inspect::validate_module(&origin, bytes, world)?;
            }
            workers.push(path.clone());
            continue;
        }
        let package = format!("lib{}", providers.len());
        let unit = Unit::decode(origin, &package, bytes.as_slice(), types)?;
        if unit.exports(types).any(|(name, _)| name != "init") {
            providers.push(unit);
        } else {
            if handling == Workers::Validate {
                validate_unit(&unit, world)?;
            }
            workers.push(path.clone());
        }
    }
    Ok(workers)
}

/// Decodes a `.wasm` file of the package: a component becomes a unit; a core module that no
/// manifest entry runs is validated as it is and packed so (`None`).
fn decode_file(
    origin: Origin,
    bytes: &[u8],
    files: &PackageFiles,
    world: World,
    types: &mut Types,
) -> Result<Option<Unit>, LinkError> {
    if !Parser::is_component(bytes) && !files.roles.contains_key(&origin.path) {
        inspect::validate_module(&origin, bytes, world)?;
        return Ok(None);
    }
    Ok(Some(Unit::decode(origin, ROOT, bytes, types)?))
}

/// Validates a decoded component whole, for a component packed as it is.
fn validate_unit(unit: &Unit, world: World) -> Result<(), InspectError> {
    inspect::validate(unit.package.bytes(), world).map_err(|reason| {
        InspectError::InvalidComponent {
            origin: unit.origin.clone(),
            reason,
        }
    })
}

/// The digest of `input`: the SHA-256 its caller gave, else computed here.
fn digest(input: &Input<'_>) -> Digest {
    let sha256 = given_sha256(input).unwrap_or_else(|| sha256_hex(input.bytes));
    named(input, sha256)
}

/// The SHA-256 the caller gave with `input`, if any; debug builds check it.
fn given_sha256(input: &Input<'_>) -> Option<String> {
    let known = input.sha256?;
    debug_assert_eq!(
        known,
        inspect::uncounted_sha256_hex(input.bytes),
        "{}'s SHA-256",
        input.name
    );
    Some(known.to_owned())
}

/// `input`'s digest, with its SHA-256 known.
fn named(input: &Input<'_>, sha256: String) -> Digest {
    Digest {
        name: input.name.to_owned(),
        sha256,
        source: input.source,
    }
}
