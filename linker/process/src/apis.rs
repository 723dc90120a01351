//! The APIs this node has: every installed package with a `/{pkg}/pkg/api.zip`, then every API
//! in the linker's mirror that is not installed (`removed` if it was uninstalled while packages
//! were linked against it).

use linker_core::{Input, Options};

use crate::api::{ApiInfo, Dependent, LinkerError};
use crate::node;
use crate::store;

/// Lists the node's APIs, each with the interfaces its libraries export.
pub fn list() -> Result<Vec<ApiInfo>, LinkerError> {
    let mut apis = Vec::new();
    let drives = node::read_dir("/").map_err(LinkerError::Unreadable)?;
    for (name, _) in drives {
        if !name.contains(':') {
            continue;
        }
        let path = format!("/{name}/pkg/api.zip");
        if let Some(bytes) = node::read_if_exists(&path).map_err(LinkerError::Unreadable)? {
            apis.push(describe(&name, "installed", &bytes)?);
        }
    }
    let removed = store::auto().map_err(LinkerError::Unreadable)?.removed;
    for name in store::mirrored_names().map_err(LinkerError::Unreadable)? {
        if apis.iter().any(|api| api.package == name) {
            continue;
        }
        if let Some(bytes) = store::mirrored(&name).map_err(LinkerError::Unreadable)? {
            let location = if store::was_fetched(&name) {
                "fetched"
            } else {
                "mirror"
            };
            let mut api = describe(&name, location, &bytes)?;
            if removed.contains(&name) && !api.dependents.is_empty() {
                "removed".clone_into(&mut api.location);
            }
            apis.push(api);
        }
    }
    Ok(apis)
}

fn describe(name: &str, location: &str, bytes: &[u8]) -> Result<ApiInfo, LinkerError> {
    let description = linker_core::describe_api(Input::new(name, bytes), &Options::default())
        .map_err(|e| LinkerError::from(&e))?;
    let mut interfaces: Vec<String> = description
        .libraries
        .into_iter()
        .flat_map(|library| library.exports)
        .collect();
    interfaces.sort();
    interfaces.dedup();
    Ok(ApiInfo {
        package: name.to_owned(),
        location: location.to_owned(),
        sha256: description.api.sha256,
        interfaces,
        wit_files: description.wit,
        dependents: store::dependents(name)
            .map_err(LinkerError::Unreadable)?
            .into_iter()
            .map(|package| {
                let trigger = store::record(&package)
                    .ok()
                    .flatten()
                    .map(|record| record.trigger)
                    .unwrap_or_default();
                Dependent {
                    package,
                    trigger: trigger.into(),
                }
            })
            .collect(),
    })
}
