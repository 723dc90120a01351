//! Installing a linked package as the app store does (KINODE.md 4.2), staged and undoable.
//!
//! Everything that can be checked is checked before anything changes: the package linked and
//! verified, its manifest parses, every process name is Kimap-safe and every process's wasm is in
//! the linked zip. Then the files of the installed version (if any) are read into a backup (kept in
//! the linker's drive until the install ends), and the new version is applied: its processes
//! killed, `/{pkg}/pkg` replaced by the linked files (`CreateDrive`, `RemoveDirAll`, `AddZip`), the
//! uploaded zip written to `/{pkg}/pkg/{pkg}.zip` (with the linker's marker beside it, see
//! [`store::MARKER`]), `api.zip` extracted to `/{pkg}/pkg/api`, then
//! every process initialised with its linked bytes at its `wasm_bytes_handle`, granted its
//! capabilities, and run. If any step fails, the new processes are killed, `/{pkg}/pkg` is
//! removed, and the backup is applied the same way, restarting the previous processes.
//!
//! The linker may die in the middle (a trap, running out of memory, the node shutting down). So
//! once the backup is written, and before anything changes, the install is journaled
//! ([`store::Journal`]: the package, the new version's hash, the previous version's hash and
//! `wit_version` if there is a backup, and every process id of either version); the journal is
//! removed when the install ends either way, before the backup. When the linker starts (it is
//! `on_exit: Restart`, and a node boots it), [`recover`] rolls back every install a journal shows:
//! the processes of both versions are killed (the kernel may have kept or lost either) and the
//! backup is applied as above, or `/{pkg}/pkg` is removed if there was no previous version; then
//! the journal and the backup are dropped. Once the new version runs, the journal is rewritten
//! with what to record of it ([`store::Done`]), which is then written ([`store::commit`]); a
//! journal marked so is completed at the next start, not rolled back, so the linker's records
//! never describe another version than the one running. A journal that cannot be parsed was
//! being written when the linker died, before anything changed, so it is dropped; so is a backup
//! without a journal. A rollback that fails keeps its journal, to be tried again at the next
//! start. A re-link of dependents installs each dependent this way, so each is covered; the
//! dependents still to be re-linked are recorded too ([`store::Relinks`]), and the next start
//! re-links them, the one interrupted included (`service::resume_relinks`).
//!
//! Differences from the app store, on purpose: processes of the old version that the new manifest
//! drops are killed too (the app store leaves them running with stale code), and the wasm bytes go
//! to the kernel directly as the blob rather than through a VFS read with `inherit`.

use std::collections::BTreeMap;

use kinode_process_lib::kernel_types::{
    Capability, KernelCommand, KernelResponse, OnExit, PackageManifestEntry,
};
use kinode_process_lib::vfs::{FileType, VfsAction};
use kinode_process_lib::{println, Address, ProcessId};
use linker_core::archive::{Archive, Compression};

use crate::api::{self, InstallFailure, LinkerError, PreviousVersion, StepFailure};
use crate::node;
use crate::store::{self, sha256_hex};

/// One version of a package, ready to be applied to `/{pkg}/pkg`.
struct Version {
    /// The zip unpacked into `/{pkg}/pkg`.
    zip: Vec<u8>,
    /// Files written after it: the uploaded zip at `{pkg}.zip` for a new version.
    writes: Vec<(String, Vec<u8>)>,
    /// The `api.zip` to extract into `/{pkg}/pkg/api`, if the zip does not hold `api/` already.
    api: Option<Vec<u8>>,
    /// The processes to start, with their wasm bytes.
    processes: Vec<(PackageManifestEntry, Vec<u8>)>,
    wit_version: Option<u32>,
    /// The version hash, as reports name it.
    hash: String,
}

/// A linked package to install. The zips are moved into the node, not copied: for a large
/// package each copy costs the linker guest memory and time.
pub struct Upload<'a> {
    /// `name:publisher`.
    pub package: &'a str,
    /// The zip as uploaded.
    pub original: Vec<u8>,
    /// Its SHA-256: the app store's version hash.
    pub version_hash: &'a str,
    /// The linked zip.
    pub linked: Vec<u8>,
    pub wit_version: Option<u32>,
    /// What to record once it is installed.
    pub record: store::Record,
}

/// What an install did.
pub struct Installed {
    /// The processes started.
    pub processes: Vec<String>,
    /// The version hash replaced, if a version was installed before.
    pub replaced: Option<String>,
}

/// Installs `upload`, or leaves the node as it was and says what became of the previous version.
pub fn install(our: &Address, upload: Upload<'_>) -> Result<Installed, LinkerError> {
    let package = upload.package;
    let limits = linker_core::Limits::default();
    let mut files = Archive::read(package, &upload.linked, &limits)
        .map_err(|e| LinkerError::from(&linker_core::LinkError::from(e)))?
        .files;
    let new = Version {
        processes: processes(package, &mut files)?,
        zip: upload.linked,
        writes: vec![
            (format!("{package}.zip"), upload.original),
            (
                store::MARKER.to_owned(),
                upload.version_hash.as_bytes().to_vec(),
            ),
        ],
        api: files.remove("api.zip"),
        wit_version: upload.wit_version,
        hash: upload.version_hash.to_owned(),
    };

    let previous = snapshot(package).map_err(LinkerError::Unreadable)?;
    if let Some(previous) = &previous {
        store::save_backup(package, &previous.zip).map_err(LinkerError::Unreadable)?;
    }
    let old_ids: Vec<String> = previous
        .iter()
        .flat_map(|p| p.processes.iter())
        .chain(new.processes.iter())
        .map(|(entry, _)| process_id(&entry.process_name, package))
        .collect();
    let mut journal = store::Journal {
        package: package.to_owned(),
        version_hash: new.hash.clone(),
        previous: previous.as_ref().map(|p| store::Previous {
            hash: p.hash.clone(),
            wit_version: p.wit_version,
        }),
        processes: old_ids.clone(),
        done: None,
    };
    if let Err(failure) = store::save_journal(&journal) {
        store::drop_backup(package);
        return Err(LinkerError::Unreadable(failure));
    }
    for id in &old_ids {
        kill(our, id);
    }
    let has_api = new.api.is_some();
    let result = apply(our, package, new);
    let outcome = match result {
        Ok(started) => {
            // The new version runs: from here on a linker that dies completes the install.
            let done = store::Done {
                record: upload.record,
                has_api,
            };
            journal.done = Some(done.clone());
            if let Err(failure) = store::save_journal(&journal) {
                println!(
                    "linker: cannot mark the install of {package} as done: {}: {}",
                    failure.step, failure.reason
                );
            }
            store::commit(&done);
            Ok(Installed {
                processes: started,
                replaced: previous.as_ref().map(|p| p.hash.clone()),
            })
        }
        Err((failed, initialised)) => {
            for id in &initialised {
                kill(our, id);
            }
            let previous = restore(our, package, previous);
            Err(LinkerError::InstallFailed(InstallFailure {
                failed,
                previous,
            }))
        }
    };
    end(package);
    outcome
}

/// Ends an install: drops its journal, then its backup (kept if the journal stays).
fn end(package: &str) {
    match store::drop_journal(package) {
        Ok(()) => store::drop_backup(package),
        Err(failure) => println!(
            "linker: cannot end the journal of {package}'s install: {}: {}",
            failure.step, failure.reason
        ),
    }
}

/// Rolls back every install a linker that died left under way (see the module docs), saying so
/// on the terminal for each package.
pub fn recover(our: &Address) {
    let journals = match store::journals() {
        Ok(journals) => journals,
        Err(failure) => {
            println!(
                "linker: cannot read its install journal: {}: {}",
                failure.step, failure.reason
            );
            return;
        }
    };
    if let Ok(backups) = store::backups() {
        for package in backups {
            if !journals.iter().any(|(journaled, _)| *journaled == package) {
                store::drop_backup(&package);
            }
        }
    }
    for (package, journal) in journals {
        let Some(journal) = journal else {
            end(&package);
            continue;
        };
        if let Some(done) = &journal.done {
            store::commit(done);
            println!(
                "linker: the install of {package} (version {}) was interrupted after its new version started; it is recorded now",
                journal.version_hash
            );
            end(&package);
            continue;
        }
        match roll_back(our, &journal) {
            Ok(outcome) => {
                println!(
                    "linker: the install of {package} (version {}) was interrupted; {outcome}",
                    journal.version_hash
                );
                end(&package);
            }
            Err(failure) => println!(
                "linker: the install of {package} was interrupted and cannot be rolled back yet: {}: {}",
                failure.step, failure.reason
            ),
        }
    }
}

/// Puts back the version a journaled install replaced, or removes the install if there was none.
fn roll_back(our: &Address, journal: &store::Journal) -> Result<String, StepFailure> {
    let package = journal.package.as_str();
    let previous = match &journal.previous {
        None => None,
        Some(previous) => {
            let zip = store::backup(package)?.ok_or_else(|| StepFailure {
                step: format!("Read the backup of {package}"),
                reason: "the backup is missing".to_owned(),
            })?;
            Some(backed_up(package, zip, previous)?)
        }
    };
    for id in &journal.processes {
        kill(our, id);
    }
    match restore(our, package, previous) {
        PreviousVersion::None => Ok("no version was installed before, so it is removed".to_owned()),
        PreviousVersion::Restored(hash) => Ok(format!("its previous version {hash} runs again")),
        PreviousVersion::RestoreFailed(failure) => Err(failure),
    }
}

/// The backed-up version of a package, as [`snapshot`] made it.
fn backed_up(
    package: &str,
    zip: Vec<u8>,
    previous: &store::Previous,
) -> Result<Version, StepFailure> {
    let unreadable = |reason: String| StepFailure {
        step: format!("Read the backup of {package}"),
        reason,
    };
    let mut files = Archive::read(package, &zip, &linker_core::Limits::default())
        .map_err(|e| unreadable(e.to_string()))?
        .files;
    let processes =
        processes(package, &mut files).map_err(|error| unreadable(format!("{error:?}")))?;
    Ok(installed_version(
        zip,
        processes,
        previous.wit_version,
        previous.hash.clone(),
    ))
}

/// A version as it was installed, to be applied again: its files as one zip, nothing written
/// beside them, its API already extracted among them.
fn installed_version(
    zip: Vec<u8>,
    processes: Vec<(PackageManifestEntry, Vec<u8>)>,
    wit_version: Option<u32>,
    hash: String,
) -> Version {
    Version {
        zip,
        writes: Vec::new(),
        api: None,
        processes,
        wit_version,
        hash,
    }
}

/// Puts the previous version back, or removes what the failed install wrote.
fn restore(our: &Address, package: &str, previous: Option<Version>) -> PreviousVersion {
    match previous {
        None => match node::expect_ok(&format!("/{package}/pkg"), VfsAction::RemoveDirAll, None) {
            Ok(()) => PreviousVersion::None,
            Err(failure) => PreviousVersion::RestoreFailed(failure),
        },
        Some(version) => {
            let hash = version.hash.clone();
            match apply(our, package, version) {
                Ok(_) => PreviousVersion::Restored(hash),
                Err((failure, _)) => PreviousVersion::RestoreFailed(failure),
            }
        }
    }
}

/// Writes a version's files and starts its processes, handing its bytes to the node. On failure,
/// returns the failed step and the processes initialised so far.
fn apply(
    our: &Address,
    package: &str,
    version: Version,
) -> Result<Vec<String>, (StepFailure, Vec<String>)> {
    let drive = format!("/{package}/pkg");
    let Version {
        zip,
        writes,
        api,
        processes,
        wit_version,
        ..
    } = version;
    let files = || -> Result<(), StepFailure> {
        node::expect_ok(&drive, VfsAction::CreateDrive, None)?;
        node::expect_ok(&drive, VfsAction::RemoveDirAll, None)?;
        node::expect_ok(&drive, VfsAction::AddZip, Some(zip))?;
        for (path, bytes) in writes {
            node::write(&format!("{drive}/{path}"), bytes)?;
        }
        if let Some(api) = api {
            node::expect_ok(&format!("{drive}/api"), VfsAction::AddZip, Some(api))?;
        }
        Ok(())
    };
    files().map_err(|failure| (failure, Vec::new()))?;

    let mut initialised = Vec::new();
    let mut entries = Vec::with_capacity(processes.len());
    for (entry, wasm) in processes {
        let id = process_id(&entry.process_name, package);
        let result = initialise(our, package, &id, &entry, wasm, wit_version);
        entries.push(entry);
        if let Err(failure) = result {
            return Err((failure, initialised));
        }
        initialised.push(id);
    }
    for entry in &entries {
        let id = process_id(&entry.process_name, package);
        let issuer = Address::new(our.node(), parse_id(&id));
        for (target, params) in grants(&entry.grant_capabilities) {
            let command = KernelCommand::GrantCapabilities {
                target,
                capabilities: vec![Capability {
                    issuer: issuer.clone(),
                    params,
                }],
            };
            node::kernel(our, &command, None, false).map_err(|f| (f, initialised.clone()))?;
        }
        let run = KernelCommand::RunProcess(parse_id(&id));
        match node::kernel(our, &run, None, true) {
            Ok(Some(KernelResponse::StartedProcess)) => {}
            Ok(other) => {
                let failure = StepFailure {
                    step: format!("RunProcess {id}"),
                    reason: format!("the kernel answered {other:?}"),
                };
                return Err((failure, initialised));
            }
            Err(failure) => return Err((failure, initialised)),
        }
    }
    Ok(initialised)
}

/// `InitializeProcess` with the linked bytes, then the process's capabilities.
fn initialise(
    our: &Address,
    package: &str,
    id: &str,
    entry: &PackageManifestEntry,
    wasm: Vec<u8>,
    wit_version: Option<u32>,
) -> Result<(), StepFailure> {
    let path = entry.process_wasm_path.trim_start_matches('/');
    let command = KernelCommand::InitializeProcess {
        id: parse_id(id),
        wasm_bytes_handle: format!("/{package}/pkg/{path}"),
        wit_version,
        on_exit: clone_on_exit(&entry.on_exit),
        initial_capabilities: Default::default(),
        public: entry.public,
    };
    match node::kernel(our, &command, Some(wasm), true)? {
        Some(KernelResponse::InitializedProcess) => {}
        other => {
            return Err(StepFailure {
                step: format!("InitializeProcess {id}"),
                reason: format!("the kernel answered {other:?}"),
            })
        }
    }
    let mut capabilities = requested(our.node(), &entry.request_capabilities);
    if entry.request_networking {
        capabilities.push(Capability {
            issuer: Address::new(our.node(), parse_id("kernel:distro:sys")),
            params: "\"network\"".to_owned(),
        });
    }
    for kind in ["read", "write"] {
        capabilities.push(Capability {
            issuer: Address::new(our.node(), parse_id("vfs:distro:sys")),
            params: serde_json::json!({ "kind": kind, "drive": format!("/{package}/pkg") })
                .to_string(),
        });
    }
    let grant = KernelCommand::GrantCapabilities {
        target: parse_id(id),
        capabilities,
    };
    node::kernel(our, &grant, None, false).map(|_| ())
}

fn kill(our: &Address, id: &str) {
    let _ = node::kernel(our, &KernelCommand::KillProcess(parse_id(id)), None, false);
}

/// `OnExit` is not `Clone` in process_lib 1.0.1; its serde form round-trips.
fn clone_on_exit(on_exit: &OnExit) -> OnExit {
    serde_json::to_value(on_exit)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or(OnExit::None)
}

fn process_id(process: &str, package: &str) -> String {
    format!("{process}:{package}")
}

/// Parses a process id this module formatted from checked parts.
fn parse_id(id: &str) -> ProcessId {
    id.parse()
        .unwrap_or_else(|_| ProcessId::new(Some(id), "invalid", "invalid"))
}

/// Capabilities in manifest form (KINODE.md 1.4): `"proc:pkg:pub"` is messaging, an object is
/// `{process, params}`; entries that name no valid process are skipped, as the app store does.
fn requested(node: &str, values: &[serde_json::Value]) -> Vec<Capability> {
    values
        .iter()
        .filter_map(|value| {
            let (process, params) = cap_parts(value)?;
            Some(Capability {
                issuer: Address::new(node, process),
                params,
            })
        })
        .collect()
}

/// `grant_capabilities` entries: the process to grant to, and the params.
fn grants(values: &[serde_json::Value]) -> Vec<(ProcessId, String)> {
    values.iter().filter_map(cap_parts).collect()
}

fn cap_parts(value: &serde_json::Value) -> Option<(ProcessId, String)> {
    match value {
        serde_json::Value::String(process) => {
            Some((process.parse().ok()?, "\"messaging\"".to_owned()))
        }
        serde_json::Value::Object(map) => {
            let process = map.get("process")?.as_str()?.parse().ok()?;
            Some((process, map.get("params")?.to_string()))
        }
        _ => None,
    }
}

/// The manifest's processes with their wasm, checked before anything changes. Each wasm is taken
/// out of `files`, or copied if two processes share it.
fn processes(
    package: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<Vec<(PackageManifestEntry, Vec<u8>)>, LinkerError> {
    let invalid = |message: String| {
        LinkerError::Package(api::Problem {
            kind: "invalid-manifest".to_owned(),
            subject: package.to_owned(),
            message,
        })
    };
    let manifest = files
        .get("manifest.json")
        .ok_or_else(|| invalid(format!("`{package}` has no manifest.json")))?;
    let entries: Vec<PackageManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|e| invalid(format!("`{package}`: manifest.json is invalid: {e}")))?;
    let paths: Vec<String> = entries
        .iter()
        .map(|entry| entry.process_wasm_path.trim_start_matches('/').to_owned())
        .collect();
    entries
        .into_iter()
        .zip(&paths)
        .enumerate()
        .map(|(index, (entry, path))| {
            if !kimap_safe(&entry.process_name) {
                return Err(invalid(format!(
                    "`{package}`: process name `{}` may hold only a-z, 0-9 and -",
                    entry.process_name
                )));
            }
            let wasm = if paths[index + 1..].contains(path) {
                files.get(path).cloned()
            } else {
                files.remove(path)
            };
            let wasm = wasm.ok_or_else(|| {
                invalid(format!(
                    "`{package}`: manifest.json names `{path}`, which is not in the package"
                ))
            })?;
            Ok((entry, wasm))
        })
        .collect()
}

fn kimap_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The installed version of a package, read from `/{pkg}/pkg`, if there is one.
fn snapshot(package: &str) -> Result<Option<Version>, StepFailure> {
    let drive = format!("/{package}/pkg");
    if node::metadata(&drive)? != Some(FileType::Directory) {
        return Ok(None);
    }
    let mut files = BTreeMap::new();
    read_tree(&drive, "", &mut files)?;
    if !files.contains_key("manifest.json") {
        return Ok(None);
    }
    // The linker's marker holds the hash of the zip it installed beside it; only a version
    // installed without the linker has its zip hashed here.
    let marked = files
        .get(store::MARKER)
        .and_then(|marker| std::str::from_utf8(marker).ok())
        .map(str::trim)
        .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    let hash = match (marked, files.get(&format!("{package}.zip"))) {
        (Some(hash), _) => hash.to_owned(),
        (None, Some(zip)) => sha256_hex(zip),
        (None, None) => "unknown".to_owned(),
    };
    let wit_version = store::record(package)?.and_then(|record| record.wit_version);
    let mut archive = Archive {
        name: package.to_owned(),
        files,
    };
    let zip = archive.write(Compression::Stored);
    let processes = processes(package, &mut archive.files).map_err(|error| StepFailure {
        step: format!("Read {drive}/manifest.json"),
        reason: format!("{error:?}"),
    })?;
    Ok(Some(installed_version(zip, processes, wit_version, hash)))
}

fn read_tree(
    dir: &str,
    prefix: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), StepFailure> {
    for (name, file_type) in node::read_dir(dir)? {
        let path = format!("{dir}/{name}");
        let relative = format!("{prefix}{name}");
        match file_type {
            FileType::Directory => read_tree(&path, &format!("{relative}/"), files)?,
            FileType::File => {
                files.insert(relative, node::read(&path)?);
            }
            FileType::Symlink | FileType::Other => {}
        }
    }
    Ok(())
}
