//! Gathering a request's inputs from the node: the package zip (blob, VFS path or installed
//! package), its metadata, and the API zips (VFS paths, installed packages, the metadata's
//! dependencies, or the linker's mirror). Reads only; nothing is written.

use kinode_process_lib::kernel_types::Erc721Metadata;

use kinode_process_lib::{Address, Message};

use crate::api::{self, ApiSource, LinkRequest, LinkerError, PackageSource};
use crate::auth;
use crate::node;
use crate::store;

/// An input, named as the linker reports it.
pub struct Named {
    /// A package id (`name:publisher`) or a file name.
    pub name: String,
    /// The zip.
    pub bytes: Vec<u8>,
}

/// Everything a link needs.
pub struct Inputs {
    /// The package zip.
    pub package: Named,
    /// The package id, when known from the metadata or the installed package named.
    pub package_id: Option<String>,
    /// The metadata.json text and its parsed form.
    pub metadata: Option<(String, Erc721Metadata)>,
    /// The API zips, explicit ones first, then the metadata's dependencies.
    pub apis: Vec<Named>,
}

impl Inputs {
    /// The API zips by name and hash, in order.
    pub fn api_digests(&self) -> Vec<api::Digest> {
        self.apis
            .iter()
            .map(|api| api::Digest {
                name: api.name.clone(),
                sha256: store::sha256_hex(&api.bytes),
            })
            .collect()
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
/// when the request says so). Installed packages' zips and APIs are readable by any local process,
/// as the app store serves them; VFS paths only as far as the sender may read them.
pub fn gather(
    our: &Address,
    message: &Message,
    request: &LinkRequest,
) -> Result<Inputs, LinkerError> {
    for path in request.source_paths() {
        auth::may_read(our, message, path)?;
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
            let bytes = message
                .blob()
                .map(|blob| blob.bytes)
                .ok_or(LinkerError::NoBlob)?;
            let name = metadata_id
                .clone()
                .unwrap_or_else(|| "uploaded package".to_owned());
            (Named { name, bytes }, None)
        }
        PackageSource::VfsPath(path) => {
            let bytes = node::read(path).map_err(LinkerError::Unreadable)?;
            let name = metadata_id
                .clone()
                .unwrap_or_else(|| file_name(path).to_owned());
            (Named { name, bytes }, None)
        }
        PackageSource::Installed(id) => {
            let id = id_string(id);
            let path = format!("/{id}/pkg/{id}.zip");
            let bytes = node::read_if_exists(&path)
                .map_err(LinkerError::Unreadable)?
                .ok_or_else(|| LinkerError::NotInstalled(id.clone()))?;
            (
                Named {
                    name: id.clone(),
                    bytes,
                },
                Some(id),
            )
        }
    };
    let package_id = installed_id.or(metadata_id);

    let mut apis = Vec::new();
    for source in &request.apis {
        apis.push(match source {
            ApiSource::VfsPath(path) => Named {
                name: api_name(path),
                bytes: node::read(path).map_err(LinkerError::Unreadable)?,
            },
            ApiSource::Installed(id) => {
                let id = id_string(id);
                let bytes = node_api(&id)?.ok_or_else(|| LinkerError::NotInstalled(id.clone()))?;
                Named { name: id, bytes }
            }
        });
    }
    let dependencies = metadata
        .as_ref()
        .and_then(|(_, m)| m.properties.dependencies.clone())
        .unwrap_or_default();
    for dependency in dependencies {
        if Some(&dependency) == package_id.as_ref() || apis.iter().any(|a| a.name == dependency) {
            continue;
        }
        let bytes = node_api(&dependency)?.ok_or_else(|| {
            LinkerError::MissingDependency(api::MissingDependency {
                package: package_id.clone().unwrap_or_else(|| package.name.clone()),
                dependency: dependency.clone(),
            })
        })?;
        apis.push(Named {
            name: dependency,
            bytes,
        });
    }
    Ok(Inputs {
        package,
        package_id,
        metadata,
        apis,
    })
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
