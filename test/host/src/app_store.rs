//! `main:app-store:sys` as far as installing goes (KINODE.md 4.1, 4.2, 4.8; the kinode repo's
//! `kinode/packages/app-store/app-store/src/utils.rs`, `install`, `create_package_drive`,
//! `extract_api`, `uninstall`): an [`AppStore`] is a mailbox at `our@main:app-store:sys` that
//! installs a downloaded package with the app store's VFS and kernel steps, in its order, every
//! step a routed message checked like any other. It is not the linker, so what it installs is
//! what the zip holds: a process importing another package's API fails to instantiate, exactly as
//! on a real node.
//!
//! The capabilities it holds are those of the real app store's manifest that installing needs:
//! messaging `kernel:distro:sys` and `vfs:distro:sys`, and VFS root.
//!
//! Simplified: `downloads:app-store:sys` is not a process; [`AppStore::new_package`] writes the
//! download with the same VFS actions. The blob of `extract_api`'s `AddZip` is sent again rather
//! than inherited (mailboxes keep no last blob); the kernel sees the same bytes. `StartAutoUpdate`
//! and `StopAutoUpdate` to `chain:app-store:sys` are sent fire-and-forget as the app store does,
//! and the homepage's `RemoveOther` is left out (the test node has no homepage).

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::caps::{self, KERNEL, VFS};
use crate::{Mailbox, Node};

/// How long the app store waits for the VFS and the kernel, in seconds (`VFS_TIMEOUT`).
const TIMEOUT_SECS: u64 = 10;

/// The app store's installer.
#[derive(Debug)]
pub struct AppStore {
    mailbox: Mailbox,
    our: String,
}

impl AppStore {
    /// Adds `our@main:app-store:sys` to `node`'s process map with the app store's capabilities.
    ///
    /// # Panics
    /// If the node already has an app store.
    pub fn new(node: &Node) -> AppStore {
        let our = node.our().to_owned();
        let mailbox = node.mailbox(&format!("{our}@main:app-store:sys"), false);
        node.grant(
            &mailbox.process_id(),
            vec![
                caps::messaging(&format!("{our}@{KERNEL}")),
                caps::messaging(&format!("{our}@{VFS}")),
                caps::vfs_root(&our),
            ],
        );
        AppStore { mailbox, our }
    }

    /// What `NewPackage` leaves behind: the zip at
    /// `/app-store:sys/downloads/{package}/{version_hash}.zip`. Returns the version hash.
    pub fn new_package(&self, package: &str, zip: &[u8]) -> Result<String> {
        let hash: String = Sha256::digest(zip)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.vfs_ok("/app-store:sys/downloads", json!("CreateDrive"), None)?;
        self.vfs_ok(
            &format!("/app-store:sys/downloads/{package}"),
            json!("CreateDirAll"),
            None,
        )?;
        self.vfs_ok(
            &format!("/app-store:sys/downloads/{package}/{hash}.zip"),
            json!("Write"),
            Some(zip.to_vec()),
        )?;
        Ok(hash)
    }

    /// `utils::install`: reads the download, replaces `/{package}/pkg` with its files and writes
    /// the zip beside them, extracts `api.zip`, then initializes every process of the manifest
    /// with its wasm as found (kill, read, `InitializeProcess` with the read's blob, grant the
    /// requested capabilities and the drive), and after all of them grants the manifest's
    /// `grant_capabilities` and runs each. `wit_version` is the metadata's.
    pub fn install(
        &self,
        package: &str,
        version_hash: &str,
        wit_version: Option<u32>,
    ) -> Result<()> {
        let download = format!("/app-store:sys/downloads/{package}/{version_hash}.zip");
        self.vfs(&download, json!({"OpenFile": {"create": false}}), None)?;
        let zip = self.read(&download)?;

        let drive = format!("/{package}/pkg");
        self.vfs(&drive, json!("CreateDrive"), None)?;
        self.vfs(&drive, json!("RemoveDirAll"), None)?;
        self.vfs_ok(&drive, json!("AddZip"), Some(zip.clone()))?;
        self.vfs(&format!("{drive}/{package}.zip"), json!("Write"), Some(zip))?;
        self.read(&format!("{drive}/manifest.json"))?;

        if let Ok(api) = self.read(&format!("{drive}/api.zip")) {
            self.vfs(&format!("{drive}/api"), json!("AddZip"), Some(api))?;
        }

        let manifest: Vec<Value> =
            serde_json::from_slice(&self.read(&format!("{drive}/manifest.json"))?)?;
        for entry in &manifest {
            let name = entry["process_name"].as_str().unwrap_or_default();
            let wasm_path = entry["process_wasm_path"].as_str().unwrap_or_default();
            let wasm_path = format!("{drive}/{}", wasm_path.trim_start_matches('/'));
            let process = format!("{name}:{package}");
            if caps::parse_process_id(&process).is_none() {
                bail!("invalid process id \"{process}\"!");
            }
            self.mailbox
                .kernel_command(&json!({ "KillProcess": process }));
            let wasm = self.read(&wasm_path)?;
            self.await_kernel(
                json!({"InitializeProcess": {
                    "id": process,
                    "wasm_bytes_handle": wasm_path,
                    "wit_version": wit_version,
                    "on_exit": entry["on_exit"],
                    "initial_capabilities": [],
                    "public": entry["public"].as_bool().unwrap_or(false),
                }}),
                Some(wasm),
                "InitializedProcess",
            )?;
            let mut requested: Vec<Value> = list(entry, "request_capabilities")
                .filter_map(|item| self.capability(item))
                .collect();
            if entry["request_networking"].as_bool() == Some(true) {
                requested.push(
                    json!({"issuer": format!("{}@{KERNEL}", self.our), "params": "\"network\""}),
                );
            }
            for kind in ["read", "write"] {
                requested.push(json!({
                    "issuer": format!("{}@{VFS}", self.our),
                    "params": json!({"kind": kind, "drive": drive}).to_string(),
                }));
            }
            self.mailbox.kernel_command(
                &json!({"GrantCapabilities": {"target": process, "capabilities": requested}}),
            );
            self.mailbox.send(
                &format!("{}@chain:app-store:sys", self.our),
                json!({ "StartAutoUpdate": package_id(package) }).to_string(),
                None,
                Vec::new(),
            );
        }
        for entry in &manifest {
            let name = entry["process_name"].as_str().unwrap_or_default();
            let process = format!("{name}:{package}");
            for item in list(entry, "grant_capabilities") {
                let (target, params) = match item {
                    Value::String(target) => (target.as_str(), "\"messaging\"".to_owned()),
                    Value::Object(map) => match (
                        map.get("process").and_then(Value::as_str),
                        map.get("params"),
                    ) {
                        (Some(target), Some(params)) => (target, params.to_string()),
                        _ => continue,
                    },
                    _ => continue,
                };
                if caps::parse_process_id(target).is_none() {
                    continue;
                }
                self.mailbox.kernel_command(&json!({"GrantCapabilities": {
                    "target": target,
                    "capabilities": [{"issuer": format!("{}@{process}", self.our), "params": params}],
                }}));
            }
            self.await_kernel(json!({ "RunProcess": process }), None, "StartedProcess")?;
        }
        Ok(())
    }

    /// `utils::uninstall`: kills every process of the manifest and removes `/{package}/pkg`.
    pub fn uninstall(&self, package: &str) -> Result<()> {
        let drive = format!("/{package}/pkg");
        let manifest: Vec<Value> =
            serde_json::from_slice(&self.read(&format!("{drive}/manifest.json"))?)?;
        for entry in &manifest {
            let name = entry["process_name"].as_str().unwrap_or_default();
            self.mailbox
                .kernel_command(&json!({ "KillProcess": format!("{name}:{package}") }));
        }
        self.vfs(&drive, json!("RemoveDirAll"), None)?;
        self.mailbox.send(
            &format!("{}@chain:app-store:sys", self.our),
            json!({ "StopAutoUpdate": package_id(package) }).to_string(),
            None,
            Vec::new(),
        );
        Ok(())
    }

    /// `parse_capabilities`: `"p:p:p"` is messaging it; `{process, params}` is issued by it.
    fn capability(&self, item: &Value) -> Option<Value> {
        let (process, params) = match item {
            Value::String(process) => (process.as_str(), "\"messaging\"".to_owned()),
            Value::Object(map) => (
                map.get("process")?.as_str()?,
                map.get("params")?.to_string(),
            ),
            _ => return None,
        };
        caps::parse_process_id(process)?;
        Some(json!({"issuer": format!("{}@{process}", self.our), "params": params}))
    }

    /// One VFS request, awaited; an `Err` answer is an error.
    fn vfs(
        &self,
        path: &str,
        action: Value,
        blob: Option<Vec<u8>>,
    ) -> Result<(Value, Option<Vec<u8>>)> {
        let body = json!({"path": path, "action": action}).to_string();
        let reply = self
            .mailbox
            .request(
                &format!("{}@{VFS}", self.our),
                body,
                blob,
                Vec::new(),
                TIMEOUT_SECS,
            )
            .map_err(|e| anyhow!("VFS {action} {path}: {e:?}"))?;
        let answer = reply.json();
        if answer.get("Err").is_some() {
            bail!("VFS {action} {path}: {answer}");
        }
        Ok((answer, reply.blob))
    }

    /// A VFS request whose answer must be `Ok`.
    fn vfs_ok(&self, path: &str, action: Value, blob: Option<Vec<u8>>) -> Result<()> {
        match self.vfs(path, action.clone(), blob)? {
            (Value::String(ok), _) if ok == "Ok" => Ok(()),
            (other, _) => bail!("VFS {action} {path}: {other}"),
        }
    }

    /// A kernel command whose answer must be `expected`.
    fn await_kernel(&self, command: Value, blob: Option<Vec<u8>>, expected: &str) -> Result<()> {
        self.mailbox
            .await_kernel_command(&command, blob, expected, TIMEOUT_SECS)
    }

    /// A whole file.
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        match self.vfs(path, json!("Read"), None)? {
            (Value::String(read), Some(bytes)) if read == "Read" => Ok(bytes),
            (other, _) => bail!("VFS Read {path}: {other}"),
        }
    }
}

/// `{"package_name", "publisher_node"}` of `name:publisher`.
fn package_id(package: &str) -> Value {
    let (name, publisher) = package.split_once(':').unwrap_or((package, ""));
    json!({"package_name": name, "publisher_node": publisher})
}

/// The array `entry[key]`, or nothing.
fn list<'a>(entry: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    entry[key].as_array().into_iter().flatten()
}
