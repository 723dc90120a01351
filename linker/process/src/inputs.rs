//! Gathering a request's inputs from the node: the package zip (blob, VFS path or installed
//! package), its metadata, and the API zips. Reads only, but for libraries fetched from the
//! network, which are kept in the mirror.
//!
//! One rule chooses the APIs, for requests and auto-linking alike: the APIs the request names;
//! then, if the package's metadata declares dependencies, those (and only those, so an undeclared
//! import is an error); otherwise, for every library import nothing else provides, each API on
//! the node (installed first, then the mirror) that exports its interface, leaving versions,
//! types and ambiguity to the core. Libraries that need other libraries get them from the node
//! the same way. A declared library the node lacks, and, for an import nothing exports, a package
//! listed on chain under the interface's name, is fetched from the network ([`crate::fetch`]),
//! with what it declares in turn. Each API carries its [`Source`], so reports say what was chosen
//! and why.

use std::cell::RefCell;
use std::collections::HashMap;

use kinode_process_lib::kernel_types::Erc721Metadata;

use kinode_process_lib::{Address, Capability};
use linker_core::{ResolveError, Source};

use crate::api::{self, ApiSource, LinkRequest, LinkerError, PackageSource};
use crate::auth;
use crate::fetch::Unfetched;
use crate::node;
use crate::store;

/// Who a request is gathered for: its sender, the capabilities it attached, and its blob.
pub struct Caller<'a> {
    pub source: &'a Address,
    pub capabilities: &'a [Capability],
    /// The blob, until [`gather`] takes it as the package (a large zip is not copied).
    pub blob: Option<Vec<u8>>,
    /// An installed package's zip the caller has already read and hashed (auto-linking), which
    /// [`gather`] takes for [`PackageSource::Installed`] of that package instead of reading and
    /// hashing `/{pkg}/pkg/{pkg}.zip` again.
    pub installed: Option<Named>,
}

/// An input, named as the linker reports it, hashed once.
#[derive(Clone)]
pub struct Named {
    /// A package id (`name:publisher`) or a file name.
    pub name: String,
    /// The zip.
    pub bytes: Vec<u8>,
    /// Its SHA-256.
    pub sha256: String,
    /// For an API, why it is an input.
    pub source: Source,
}

impl Named {
    /// Names and hashes an input the request named.
    pub fn new(name: String, bytes: Vec<u8>) -> Self {
        let sha256 = store::sha256_hex(&bytes);
        Named {
            name,
            bytes,
            sha256,
            source: Source::Given,
        }
    }

    /// The same input, chosen for `source`.
    pub fn chosen(self, source: Source) -> Self {
        Named { source, ..self }
    }

    /// The input as the linking core takes it, with the digest already computed.
    pub fn input(&self) -> linker_core::Input<'_> {
        linker_core::Input {
            name: &self.name,
            bytes: &self.bytes,
            source: self.source,
            sha256: Some(&self.sha256),
        }
    }
}

/// Everything a link needs.
pub struct Inputs {
    /// The package zip.
    pub package: Named,
    /// The package id, when known from the metadata or the installed package named.
    pub package_id: Option<String>,
    /// The metadata.json text and its parsed form.
    pub metadata: Option<(String, Erc721Metadata)>,
    /// The API zips: the request's, then the declared or found ones, then nested ones.
    pub apis: Vec<Named>,
    /// Whether the metadata's dependencies bound which APIs the package may use.
    pub declared: bool,
    /// The node's APIs, once read.
    pool: Option<Vec<(Named, linker_core::ApiDescription)>>,
    /// For a package that declares no dependencies, gathered with [`Find::OnFailure`]: the key
    /// of what it looks for on the node, until [`Inputs::search`] has looked.
    unsearched: Option<String>,
    /// The libraries fetched from the network for this link.
    pub fetched: Vec<api::FetchedLibrary>,
    /// The APIs of libraries fetched because a fetched library declares them: the pool offers
    /// them first, as it offers the node's.
    nested: Vec<Named>,
    /// Whether missing libraries may be fetched: not for `explain`, which changes nothing.
    may_fetch: bool,
}

impl Inputs {
    /// The API zips by name and hash, in order.
    pub fn api_digests(&self) -> Vec<api::Digest> {
        self.apis
            .iter()
            .map(|api| api::Digest {
                name: api.name.clone(),
                sha256: api.sha256.clone(),
                provenance: crate::convert::provenance(api.source),
            })
            .collect()
    }

    /// The API zips as the linking core takes them.
    pub fn api_inputs(&self) -> Vec<linker_core::Input<'_>> {
        self.apis.iter().map(Named::input).collect()
    }

    /// The `wit_version` from the metadata.
    pub fn wit_version(&self) -> Option<u32> {
        self.metadata
            .as_ref()
            .and_then(|(_, metadata)| metadata.properties.wit_version)
    }
}

/// `name:publisher` of a wit package id.
pub fn id_string(id: &api::PackageId) -> String {
    format!("{}:{}", id.package_name, id.publisher_node)
}

/// The wit package id of `name:publisher`.
pub fn package_id(name: &str) -> Option<api::PackageId> {
    name.split_once(':')
        .map(|(package_name, publisher_node)| api::PackageId {
            package_name: package_name.to_owned(),
            publisher_node: publisher_node.to_owned(),
        })
}

impl LinkRequest {
    /// The VFS paths the request names.
    fn source_paths(&self) -> impl Iterator<Item = &str> {
        let package = match &self.source {
            PackageSource::VfsPath(path) => Some(path.as_str()),
            _ => None,
        };
        package
            .into_iter()
            .chain(self.apis.iter().filter_map(|api| match api {
                ApiSource::VfsPath(path) => Some(path.as_str()),
                ApiSource::Installed(_) => None,
            }))
    }
}

/// Reads every input a request names, for the sender of `message` (whose blob is the package
/// when the request says so), and chooses the APIs by the module's rule. Installed packages' zips
/// and APIs are readable by any local process, as the app store serves them; VFS paths only as
/// far as the sender may read them.
pub fn gather(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
    find: Find,
) -> Result<Inputs, LinkerError> {
    for path in request.source_paths() {
        auth::may_read(our, caller.source, caller.capabilities, path)?;
    }
    let metadata = match &request.metadata {
        None => None,
        Some(text) => {
            let parsed: Erc721Metadata = serde_json::from_str(text)
                .map_err(|e| LinkerError::BadMetadata(format!("metadata.json: {e}")))?;
            Some((text.clone(), parsed))
        }
    };
    let metadata_id = metadata
        .as_ref()
        .map(|(_, m)| format!("{}:{}", m.properties.package_name, m.properties.publisher));
    let (package, installed_id) = match &request.source {
        PackageSource::Blob => {
            let bytes = caller.blob.take().ok_or(LinkerError::NoBlob)?;
            let name = metadata_id
                .clone()
                .unwrap_or_else(|| "uploaded package".to_owned());
            (Named::new(name, bytes), None)
        }
        PackageSource::VfsPath(path) => {
            let bytes = node::read(path).map_err(LinkerError::Unreadable)?;
            let name = metadata_id
                .clone()
                .unwrap_or_else(|| file_name(path).to_owned());
            (Named::new(name, bytes), None)
        }
        PackageSource::Download(download) => {
            let id = id_string(&download.package);
            let path = format!(
                "/app-store:sys/downloads/{id}/{}.zip",
                download.version_hash
            );
            let bytes = node::read_if_exists(&path)
                .map_err(LinkerError::Unreadable)?
                .ok_or_else(|| LinkerError::NotInstalled(format!("{id} (no download {path})")))?;
            let package = Named::new(id.clone(), bytes);
            if package.sha256 != download.version_hash {
                return Err(LinkerError::Unreadable(api::StepFailure {
                    step: format!("Read {path}"),
                    reason: format!("its SHA-256 is {}, not the version hash", package.sha256),
                }));
            }
            (package, Some(id))
        }
        PackageSource::Installed(id) => {
            let id = id_string(id);
            let package = match caller.installed.take() {
                Some(read) if read.name == id => read,
                _ => {
                    let path = format!("/{id}/pkg/{id}.zip");
                    let bytes = node::read_if_exists(&path)
                        .map_err(LinkerError::Unreadable)?
                        .ok_or_else(|| LinkerError::NotInstalled(id.clone()))?;
                    Named::new(id.clone(), bytes)
                }
            };
            (package, Some(id))
        }
    };
    let package_id = installed_id
        .or(metadata_id)
        .or_else(|| path_id(&request.source));
    let metadata = match (metadata, &request.source) {
        (None, PackageSource::Download(download)) => chain_metadata(&download.package)?,
        (None, PackageSource::Installed(id)) => {
            match recorded_metadata(&id_string(id), &package.sha256)? {
                Some(metadata) => Some(metadata),
                None => chain_metadata(id)?,
            }
        }
        (metadata, _) => metadata,
    };

    let mut inputs = Inputs {
        package,
        package_id,
        metadata,
        apis: Vec::new(),
        declared: false,
        pool: None,
        unsearched: None,
        fetched: Vec::new(),
        nested: Vec::new(),
        may_fetch: find != Find::Now,
    };
    for source in &request.apis {
        inputs.apis.push(match source {
            ApiSource::VfsPath(path) => Named::new(
                api_name(path),
                node::read(path).map_err(LinkerError::Unreadable)?,
            ),
            ApiSource::Installed(id) => {
                let id = id_string(id);
                let bytes = node_api(&id)?.ok_or_else(|| LinkerError::NotInstalled(id.clone()))?;
                Named::new(id, bytes)
            }
        });
    }
    let dependencies = inputs
        .metadata
        .as_ref()
        .and_then(|(_, m)| m.properties.dependencies.clone())
        .unwrap_or_default();
    inputs.declared = !dependencies.is_empty();
    for dependency in dependencies {
        if Some(&dependency) == inputs.package_id.as_ref() || inputs.has_api(&dependency) {
            continue;
        }
        let api = match node_api(&dependency)? {
            Some(bytes) => Named::new(dependency, bytes).chosen(Source::Declared),
            None => inputs.fetch(our, &dependency)?,
        };
        inputs.apis.push(api);
    }
    if !inputs.declared {
        let key = inputs.search_key();
        match (find, recall(&WANTED, &key)) {
            (_, Some(wanted)) => {
                inputs.take_exporters(&wanted)?;
            }
            (Find::Now, None) => inputs.find_on_node(key)?,
            (Find::OnFailure, None) => {
                inputs.unsearched = Some(key);
                return Ok(inputs);
            }
        }
    }
    inputs.add_nested()?;
    Ok(inputs)
}

/// When a package that declares no dependencies has the node searched for the APIs it needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Find {
    /// Before anything else: decode the package to find what it imports (for `explain`).
    Now,
    /// Only if linking it with what it has fails for want of a library ([`Inputs::search`]): a
    /// package that needs nothing is decoded once, by the link itself.
    OnFailure,
}

/// The interface of a full import or export name: `kinode:process/mathlib@1.0.0` ->
/// `kinode:process/mathlib`. Versions are left to the resolver.
fn interface(name: &str) -> &str {
    name.split_once('@')
        .map_or(name, |(interface, _)| interface)
}

impl Inputs {
    /// Fetches a declared dependency no API on the node provides (when fetching is on), and
    /// the libraries it declares in turn that the node lacks, each once.
    fn fetch(&mut self, our: &Address, library: &str) -> Result<Named, LinkerError> {
        let missing = |inputs: &Inputs, why: &str| {
            LinkerError::MissingDependency(api::MissingDependency {
                package: inputs.name().to_owned(),
                hint: format!(
                    "{why}: install {library} first (from the app store, or `link:linker:sys <its \
                     zip> --install`), or pass its API zip"
                ),
                dependency: library.to_owned(),
            })
        };
        if !self.may_fetch {
            return Err(missing(
                self,
                "explain fetches nothing (a link or an install fetches it from the network)",
            ));
        }
        if !store::network().fetch {
            return Err(missing(
                self,
                "fetching libraries is off (`link:linker:sys --fetch on` turns it on)",
            ));
        }
        let fetched = match crate::fetch::library(our, self.name(), library) {
            Ok(fetched) => fetched,
            Err(Unfetched::NotListed(why)) => return Err(missing(self, &why)),
            Err(Unfetched::Failed(error)) => return Err(error),
        };
        self.fetched.push(fetched.report);
        self.fetch_nested(our, library, fetched.dependencies)?;
        Ok(fetched.api)
    }

    /// For interfaces that no API so far exports, fetches each package listed on chain that is
    /// named like one (`mathlib:<publisher>` for `kinode:process/mathlib`, as APIs usually are)
    /// and adds those that export one; whether any did.
    fn fetch_exporters(&mut self, interfaces: &[String]) -> Result<bool, LinkerError> {
        if !self.may_fetch || !store::network().fetch {
            return Ok(false);
        }
        let mut provided: Vec<String> = Vec::new();
        for api in &self.apis {
            provided.extend(exported(&describe(api)?).map(str::to_owned));
        }
        let missing: Vec<&str> = interfaces
            .iter()
            .map(String::as_str)
            .filter(|interface| !provided.iter().any(|p| p == interface))
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        let named = |id: &str| {
            let name = id.split(':').next().unwrap_or_default();
            missing
                .iter()
                .any(|interface| interface.rsplit('/').next() == Some(name))
        };
        let our = kinode_process_lib::our();
        let mut added = false;
        for id in crate::fetch::listed() {
            if !named(&id) || self.has_api(&id) || Some(&id) == self.package_id.as_ref() {
                continue;
            }
            let fetched = match crate::fetch::library(&our, self.name(), &id) {
                Ok(fetched) => fetched,
                Err(Unfetched::NotListed(_)) => continue,
                Err(Unfetched::Failed(error)) => return Err(error),
            };
            self.fetched.push(fetched.report);
            let exports = exported(&describe(&fetched.api)?).any(|e| missing.contains(&e));
            if exports {
                self.apis.push(fetched.api.chosen(Source::Found));
                added = true;
                self.fetch_nested(&our, &id, fetched.dependencies)?;
            }
        }
        Ok(added)
    }

    /// Fetches the libraries `wanted` (declared by fetched library `library`) that the node
    /// lacks, and what they declare in turn, each once; the pool offers them.
    fn fetch_nested(
        &mut self,
        our: &Address,
        library: &str,
        mut wanted: Vec<String>,
    ) -> Result<(), LinkerError> {
        while let Some(nested) = wanted.pop() {
            let known = nested == library
                || Some(&nested) == self.package_id.as_ref()
                || self.has_api(&nested)
                || self.fetched.iter().any(|f| f.package == nested)
                || node_api(&nested)?.is_some();
            if known {
                continue;
            }
            match crate::fetch::library(our, self.name(), &nested) {
                Ok(more) => {
                    self.fetched.push(more.report);
                    self.nested.push(more.api.chosen(Source::Found));
                    wanted.extend(more.dependencies);
                }
                // The library may not need it after all: linking says so if it does.
                Err(Unfetched::NotListed(_)) => {}
                Err(Unfetched::Failed(error)) => return Err(error),
            }
        }
        Ok(())
    }

    /// The package's id, or the name it was given under.
    pub fn name(&self) -> &str {
        self.package_id.as_deref().unwrap_or(&self.package.name)
    }

    fn has_api(&self, name: &str) -> bool {
        self.apis.iter().any(|api| api.name == name)
    }

    /// The APIs on the node that are not inputs yet, read and described on first use: installed
    /// packages' first, then the mirror's. An API that cannot be read is left out; it fails only
    /// where it is named.
    fn pool(&mut self) -> Result<&mut Vec<(Named, linker_core::ApiDescription)>, LinkerError> {
        if self.pool.is_none() {
            let mut names: Vec<String> = node::read_dir("/")
                .map_err(LinkerError::Unreadable)?
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| store::is_package_id(name))
                .collect();
            names.extend(store::mirrored_names().map_err(LinkerError::Unreadable)?);
            let mut pool: Vec<(Named, linker_core::ApiDescription)> = Vec::new();
            for name in names {
                // An API already among the inputs is not read and hashed again.
                if self.has_api(&name) || pool.iter().any(|(api, _)| api.name == name) {
                    continue;
                }
                if let Some(bytes) = node_api(&name)? {
                    let api = Named::new(name, bytes).chosen(Source::Found);
                    if let Ok(description) = describe(&api) {
                        pool.push((api, description));
                    }
                }
            }
            self.pool = Some(pool);
        }
        let pool = self.pool.get_or_insert_with(Vec::new);
        for api in std::mem::take(&mut self.nested) {
            if let Ok(description) = describe(&api) {
                pool.insert(0, (api, description));
            }
        }
        Ok(pool)
    }

    /// What the package looks for on the node is kept under the hashes of the package and of the
    /// APIs it has.
    fn search_key(&self) -> String {
        let mut key = self.package.sha256.clone();
        for api in &self.apis {
            key.push_str(&format!(" {}={}", api.name, api.sha256));
        }
        key
    }

    /// After a link of these inputs failed with `error`: if the node was not searched yet and
    /// the link lacked libraries, adds each API on the node that exports one of the missing
    /// interfaces, and what those need in turn; whether any was added (then link again).
    pub fn search(&mut self, error: &linker_core::LinkError) -> Result<bool, LinkerError> {
        let Some(key) = self.unsearched.take() else {
            return Ok(false);
        };
        let linker_core::LinkError::Unresolved { problems } = error else {
            return Ok(false);
        };
        let mut wanted: Vec<String> = Vec::new();
        for problem in problems {
            if let ResolveError::NoProvider { import, .. } = problem {
                let interface = interface(import).to_owned();
                if !wanted.contains(&interface) {
                    wanted.push(interface);
                }
            }
        }
        remember(&WANTED, key, || Ok(wanted.clone()))?;
        let found = self.take_exporters(&wanted)?;
        let fetched = self.fetch_exporters(&wanted)?;
        if !found && !fetched {
            return Ok(false);
        }
        self.add_nested()?;
        Ok(true)
    }

    /// Adds, for every library import of the package that the APIs so far do not provide, each
    /// API on the node that exports its interface.
    fn find_on_node(&mut self, key: String) -> Result<(), LinkerError> {
        let wanted = remember(&WANTED, key, || {
            let names = linker_core::unprovided(
                self.package.input(),
                &self.api_inputs(),
                &linker_core::Options::default(),
            )
            .map_err(|e| LinkerError::from(&e))?;
            Ok(names
                .iter()
                .map(|name| interface(name).to_owned())
                .collect())
        })?;
        self.take_exporters(&wanted)?;
        Ok(())
    }

    /// Moves every API of the pool that exports one of `interfaces` into the inputs; whether
    /// any did.
    fn take_exporters(&mut self, interfaces: &[String]) -> Result<bool, LinkerError> {
        if interfaces.is_empty() {
            return Ok(false);
        }
        let own = self.package_id.clone();
        let pool = self.pool()?;
        let mut taken = Vec::new();
        let mut index = 0;
        while index < pool.len() {
            let (api, description) = &pool[index];
            let exports = exported(description).any(|name| interfaces.iter().any(|i| i == name));
            if exports && Some(&api.name) != own.as_ref() {
                taken.push(pool.remove(index).0);
            } else {
                index += 1;
            }
        }
        taken.retain(|api| !self.apis.iter().any(|known| known.name == api.name));
        let added = !taken.is_empty();
        self.apis.extend(taken);
        Ok(added)
    }

    /// Adds the APIs on the node that the chosen APIs' libraries need and none of them
    /// provides: nested dependencies, to any depth.
    fn add_nested(&mut self) -> Result<(), LinkerError> {
        let mut descriptions = self
            .apis
            .iter()
            .map(describe)
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            let exports: Vec<&str> = descriptions.iter().flat_map(exported).collect();
            let needed: Vec<String> = descriptions
                .iter()
                .flat_map(|d| d.libraries.iter().flat_map(|l| l.imports.iter()))
                .map(|name| interface(name).to_owned())
                .filter(|name| !exports.contains(&name.as_str()))
                .collect();
            let known = self.apis.len();
            if !self.take_exporters(&needed)? {
                return Ok(());
            }
            for api in &self.apis[known..] {
                descriptions.push(describe(api)?);
            }
        }
    }

    /// Says, for each import that cannot be linked, what the node has and what to do; other
    /// errors are returned as they are.
    pub fn advise(&mut self, error: LinkerError) -> LinkerError {
        let LinkerError::Unresolved(mut imports) = error else {
            return error;
        };
        let package = self.name().to_owned();
        let declared = self.declared;
        let exporters =
            |pool: &[(Named, linker_core::ApiDescription)], name: &str| -> Vec<String> {
                pool.iter()
                    .filter(|(_, d)| exported(d).any(|e| e == interface(name)))
                    .map(|(api, _)| api.name.clone())
                    .collect()
            };
        let pool = match self.pool() {
            Ok(pool) => pool.as_slice(),
            Err(_) => &[],
        };
        for import in &mut imports {
            import.hint = match &import.reason {
                api::UnresolvedReason::NoProvider(near) => {
                    let unused = exporters(pool, &import.name);
                    if declared && !unused.is_empty() {
                        format!(
                            "{} on this node {} `{}`, but {package}'s metadata.json does not \
                             list it in `dependencies`: add it there, or pass it with `--api`",
                            unused.join(" and "),
                            if unused.len() == 1 {
                                "exports"
                            } else {
                                "export"
                            },
                            interface(&import.name)
                        )
                    } else if !near.is_empty() {
                        format!(
                            "this node has only other versions of `{}`: install a version of \
                             the package that exports `{}`",
                            interface(&import.name),
                            import.name
                        )
                    } else {
                        format!(
                            "no package on this node exports `{}`: install the package that \
                             publishes it (its API is usually named after the interface, \
                             `{}:<publisher>`), then link again",
                            interface(&import.name),
                            interface(&import.name)
                                .rsplit('/')
                                .next()
                                .unwrap_or_default()
                        )
                    }
                }
                api::UnresolvedReason::TypeMismatch(rejected) => format!(
                    "{} exports `{}` with another type: install a version of it built from \
                     the WIT {package} was built against, or pass the right API with `--api`",
                    rejected.provider.archive, rejected.export
                ),
                api::UnresolvedReason::Ambiguous(candidates) => {
                    let mut archives: Vec<&str> =
                        candidates.iter().map(|c| c.archive.as_str()).collect();
                    archives.dedup();
                    format!(
                        "{} all export it: name the one to use in {package}'s metadata.json \
                         `dependencies`, or pass only it with `--api`",
                        archives.join(" and ")
                    )
                }
                api::UnresolvedReason::Cycle(_) => {
                    "the libraries' packages must be rebuilt without the cycle".to_owned()
                }
            };
        }
        LinkerError::Unresolved(imports)
    }
}

/// The interfaces an API's libraries export, without versions.
fn exported(description: &linker_core::ApiDescription) -> impl Iterator<Item = &str> {
    description
        .libraries
        .iter()
        .flat_map(|library| library.exports.iter())
        .map(|name| interface(name))
}

/// Results computed from inputs' bytes, by a key made of their hashes, kept while the linker runs.
type Table<T> = RefCell<HashMap<String, T>>;

/// How many results of each kind the linker keeps between requests.
const REMEMBERED: usize = 64;

thread_local! {
    /// API descriptions by name and hash: describing decodes every component of the API, and
    /// every request that gathers its inputs from the node describes the same APIs again.
    static DESCRIPTIONS: Table<linker_core::ApiDescription> = Default::default();
    /// What [`Inputs::find_on_node`] looks for, by the hashes of the package and the APIs it has:
    /// finding it decodes the whole package.
    static WANTED: Table<Vec<String>> = Default::default();
}

/// The value `memo` keeps for `key`, if any.
fn recall<T: Clone>(memo: &'static std::thread::LocalKey<Table<T>>, key: &str) -> Option<T> {
    memo.with(|memo| memo.borrow().get(key).cloned())
}

/// The value `memo` keeps for `key`, computed and kept if it has none (a failure is not kept).
fn remember<T: Clone>(
    memo: &'static std::thread::LocalKey<Table<T>>,
    key: String,
    compute: impl FnOnce() -> Result<T, LinkerError>,
) -> Result<T, LinkerError> {
    if let Some(known) = recall(memo, &key) {
        return Ok(known);
    }
    let value = compute()?;
    memo.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.len() >= REMEMBERED {
            memo.clear();
        }
        memo.insert(key, value.clone());
    });
    Ok(value)
}

/// What an API offers, described once per name and hash while the linker runs.
fn describe(api: &Named) -> Result<linker_core::ApiDescription, LinkerError> {
    remember(
        &DESCRIPTIONS,
        format!("{}={}", api.name, api.sha256),
        || {
            linker_core::describe_api(api.input(), &linker_core::Options::default())
                .map_err(|e| LinkerError::from(&e))
        },
    )
}

/// The package id a request names without metadata: an installed package's, a download's, or
/// that of a zip named `name:publisher.zip` as kit names them.
pub fn known_id(request: &LinkRequest) -> bool {
    match &request.source {
        PackageSource::Installed(_) | PackageSource::Download(_) => true,
        source => path_id(source).is_some(),
    }
}

/// `name:publisher` from a VFS path's file name `name:publisher.zip`.
fn path_id(source: &PackageSource) -> Option<String> {
    let PackageSource::VfsPath(path) = source else {
        return None;
    };
    let stem = file_name(path).strip_suffix(".zip")?;
    store::is_package_id(stem).then(|| stem.to_owned())
}

/// The metadata an earlier install through the linker recorded for this version of a package
/// (another version's may declare other dependencies).
fn recorded_metadata(
    id: &str,
    version_hash: &str,
) -> Result<Option<(String, Erc721Metadata)>, LinkerError> {
    let record = store::record(id).map_err(LinkerError::Unreadable)?;
    Ok(record
        .filter(|record| record.version_hash == version_hash)
        .and_then(|record| record.metadata)
        .and_then(|text| Some((text.clone(), serde_json::from_str(&text).ok()?))))
}

/// The metadata the app store's `chain:app-store:sys` has for a package, in `metadata.json` form;
/// `None` if it does not answer or has none (the package is then linked without dependencies).
fn chain_metadata(id: &api::PackageId) -> Result<Option<(String, Erc721Metadata)>, LinkerError> {
    let request = serde_json::json!({ "GetApp": id });
    let answer = crate::mailbox::await_response(
        kinode_process_lib::Request::to(("our", "chain", "app-store", "sys"))
            .body(request.to_string()),
        5,
    );
    let Ok(message) = answer else {
        return Ok(None);
    };
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(message.body()) else {
        return Ok(None);
    };
    let mut metadata = answer["GetApp"]["metadata"].clone();
    if metadata.is_null() {
        return Ok(None);
    }
    // On chain, code_hashes is a list of [version, hash]; metadata.json has a map.
    let hashes = &mut metadata["properties"]["code_hashes"];
    if let Some(pairs) = hashes.as_array() {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .filter_map(|pair| Some((pair.get(0)?.as_str()?.to_owned(), pair.get(1)?.clone())))
            .collect();
        *hashes = serde_json::Value::Object(map);
    }
    let text = metadata.to_string();
    let parsed = serde_json::from_value(metadata)
        .map_err(|e| LinkerError::BadMetadata(format!("chain:app-store:sys metadata: {e}")))?;
    Ok(Some((text, parsed)))
}

/// The API zip of a package on this node: installed (`/{pkg}/pkg/api.zip`), else mirrored.
pub fn node_api(id: &str) -> Result<Option<Vec<u8>>, LinkerError> {
    if !id.contains(':') || id.contains('/') {
        return Ok(None);
    }
    if let Some(bytes) =
        node::read_if_exists(&format!("/{id}/pkg/api.zip")).map_err(LinkerError::Unreadable)?
    {
        return Ok(Some(bytes));
    }
    store::mirrored(id).map_err(LinkerError::Unreadable)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// An API zip is named after its file: `mathlib:pub-api.zip` and `mathlib:pub.zip` are
/// `mathlib:pub`.
fn api_name(path: &str) -> String {
    let name = file_name(path);
    let name = name.strip_suffix(".zip").unwrap_or(name);
    name.strip_suffix("-api").unwrap_or(name).to_owned()
}
