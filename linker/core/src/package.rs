//! Kinode packages: what a package zip holds (processes from `manifest.json`, scripts from
//! `scripts.json`, its own `api.zip`), what API archives add to it (workers), and the linked
//! package written back with its `link.json` provenance.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::archive::{Archive, Limits};
use crate::inspect::sha256_hex;
use crate::report::Role;

/// A package whose own files contradict each other or an API archive.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PackageError {
    /// The package has no `manifest.json`.
    #[error("`{package}` has no manifest.json: a Kinode package zip holds the contents of pkg/, manifest.json included")]
    MissingManifest {
        /// The package.
        package: String,
    },
    /// `manifest.json` or `scripts.json` is not what Kinode expects.
    #[error("`{package}`: {file} is invalid: {reason}")]
    InvalidManifest {
        /// The package.
        package: String,
        /// The file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A process or script names a `.wasm` file the package does not contain.
    #[error("`{package}`: {file} names `{path}`, which is not in the package")]
    MissingWasm {
        /// The package.
        package: String,
        /// The file that names it.
        file: &'static str,
        /// The missing path.
        path: String,
    },
    /// A worker from an API archive would overwrite a different file of the package.
    #[error("`{package}` already has a different `{path}` than the one API `{api}` ships")]
    FileConflict {
        /// The package.
        package: String,
        /// The path both have.
        path: String,
        /// The API archive.
        api: String,
    },
}

#[derive(Deserialize)]
struct ManifestEntry {
    process_name: String,
    process_wasm_path: String,
}

/// A package's files, the role of each `.wasm` in it, and its own API archive.
pub(crate) struct PackageFiles {
    pub archive: Archive,
    pub roles: BTreeMap<String, Role>,
    pub own_api: Option<Archive>,
}

impl PackageFiles {
    /// Reads a package zip: its manifest, its scripts and its own `api.zip`.
    pub fn read(
        name: &str,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<PackageFiles, crate::LinkError> {
        let archive = Archive::read(name, bytes, limits)?;
        let invalid = |file: &'static str, reason: String| PackageError::InvalidManifest {
            package: name.to_owned(),
            file,
            reason,
        };
        let manifest =
            archive
                .files
                .get("manifest.json")
                .ok_or_else(|| PackageError::MissingManifest {
                    package: name.to_owned(),
                })?;
        let manifest: Vec<ManifestEntry> = serde_json::from_slice(manifest)
            .map_err(|error| invalid("manifest.json", error.to_string()))?;
        let mut roles = BTreeMap::new();
        for entry in manifest {
            let path = entry.process_wasm_path.trim_start_matches('/').to_owned();
            require(&archive, "manifest.json", &path)?;
            roles.insert(
                path,
                Role::Process {
                    name: entry.process_name,
                },
            );
        }
        if let Some(scripts) = archive.files.get("scripts.json") {
            let scripts: BTreeMap<String, serde_json::Value> = serde_json::from_slice(scripts)
                .map_err(|error| invalid("scripts.json", error.to_string()))?;
            for path in scripts.into_keys() {
                require(&archive, "scripts.json", &path)?;
                roles.entry(path).or_insert(Role::Script);
            }
        }
        let own_api = match archive.files.get("api.zip") {
            Some(bytes) => Some(Archive::read(&format!("{name}/api.zip"), bytes, limits)?),
            None => None,
        };
        Ok(PackageFiles {
            archive,
            roles,
            own_api,
        })
    }

    /// Adds the files `api` ships for importers (kit's rule: `.wasm` files that are not
    /// library exporters, such as workers a library spawns), at the same paths.
    pub fn add_workers<'a>(
        &mut self,
        api: &Archive,
        workers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<CopiedFile>, PackageError> {
        let mut copied = Vec::new();
        for path in workers {
            let Some(bytes) = api.files.get(path) else {
                continue;
            };
            match self.archive.files.get(path) {
                Some(existing) if existing == bytes => continue,
                Some(_) => {
                    return Err(PackageError::FileConflict {
                        package: self.archive.name.clone(),
                        path: path.to_owned(),
                        api: api.name.clone(),
                    })
                }
                None => {}
            }
            self.archive.files.insert(path.to_owned(), bytes.clone());
            copied.push(CopiedFile {
                path: path.to_owned(),
                from: api.name.clone(),
                sha256: sha256_hex(bytes),
            });
        }
        Ok(copied)
    }

    /// Takes every `.wasm` file out of the archive, for [`PackageFiles::restore`] to put back.
    pub fn take_wasm(&mut self) -> BTreeMap<String, Vec<u8>> {
        let (wasm, rest) = std::mem::take(&mut self.archive.files)
            .into_iter()
            .partition(|(path, _)| path.ends_with(".wasm"));
        self.archive.files = rest;
        wasm
    }

    /// Puts back what [`PackageFiles::take_wasm`] took.
    pub fn restore(&mut self, wasm: BTreeMap<String, Vec<u8>>) {
        self.archive.files.extend(wasm);
    }
}

fn require(archive: &Archive, file: &'static str, path: &str) -> Result<(), PackageError> {
    if archive.files.contains_key(path) {
        Ok(())
    } else {
        Err(PackageError::MissingWasm {
            package: archive.name.clone(),
            file,
            path: path.to_owned(),
        })
    }
}

/// A file an API archive added to the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedFile {
    /// Its path in the package.
    pub path: String,
    /// The API archive it came from.
    pub from: String,
    /// Its SHA-256.
    pub sha256: String,
}
