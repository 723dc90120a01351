//! `terminal:terminal:sys` as far as running scripts goes (KINODE.md 5.1; the kinode repo's
//! `kinode/packages/terminal/terminal/src/lib.rs`, `handle_run`): a [`Terminal`] is a mailbox at
//! `our@terminal:terminal:sys` that starts a script through the VFS and the kernel exactly as the
//! terminal does, every step a routed message checked like any other.
//!
//! The capabilities it holds are those the real terminal's manifest requests that running
//! scripts needs: messaging `kernel:distro:sys` and `vfs:distro:sys`, and VFS root. Capabilities
//! other packages grant the terminal in their manifests (linker:sys grants it the linker's
//! messaging) arrive when those packages are bootstrapped, so create the terminal first.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use crate::caps::{self, KERNEL, VFS};
use crate::{parse_address, Capability, Mailbox, Node};

/// How long the terminal waits for the VFS and the kernel, in seconds (as the terminal does).
const TIMEOUT_SECS: u64 = 5;

/// The terminal process, able to run scripts.
#[derive(Debug)]
pub struct Terminal {
    mailbox: Mailbox,
    our: String,
}

impl Terminal {
    /// Adds `our@terminal:terminal:sys` to `node`'s process map with the terminal's capabilities.
    ///
    /// # Panics
    /// If the node already has a terminal.
    pub fn new(node: &Node) -> Terminal {
        let our = node.our().to_owned();
        let mailbox = node.mailbox(&format!("{our}@terminal:terminal:sys"), false);
        node.grant(
            &mailbox.process_id(),
            vec![
                caps::messaging(&format!("{our}@{KERNEL}")),
                caps::messaging(&format!("{our}@{VFS}")),
                caps::vfs_root(&our),
            ],
        );
        Terminal { mailbox, our }
    }

    /// Runs `script` (`name:package:publisher`, e.g. `link:linker:sys`) with `args` as the
    /// terminal does: reads `/{package}/pkg/scripts.json` and the entry `{name}.wasm`, reads the
    /// wasm, grants the entry's `grant_capabilities` (issued by the script), initializes the
    /// process `<random u64>:{package}` with `on_exit` None and the initial capabilities
    /// (`request_capabilities`, messaging the terminal, networking if requested, every capability
    /// the terminal holds if `root`; the kernel keeps only those the terminal holds), runs it, and
    /// sends `args` as the body of a plain request. Returns the script's process id; what it
    /// prints is in [`Node::prints`].
    pub fn run(&self, script: &str, args: &str) -> Result<String> {
        let id = caps::parse_process_id(script)
            .ok_or_else(|| anyhow!("`{script}` is not name:package:publisher"))?;
        let package = format!("{}:{}", id.package_name, id.publisher_node);
        let manifest = self
            .read(&format!("/{package}/pkg/scripts.json"))
            .context("NoScriptsManifest")?;
        let manifest: Value =
            serde_json::from_slice(&manifest).context("InvalidScriptsManifest")?;
        let file = format!("{}.wasm", id.process_name);
        let entry = manifest
            .get(&file)
            .ok_or_else(|| anyhow!("NoScriptInManifest: {file}"))?;
        let wasm_path = format!("/{package}/pkg/{file}");
        let wasm = self.read(&wasm_path)?;

        let pid = format!("{}:{package}", RandomState::new().hash_one(script));
        let address = format!("{}@{pid}", self.our);
        for item in list(entry, "grant_capabilities") {
            let (target, mut cap) = self.capability(item)?;
            cap.issuer = parse_address(&address).ok_or_else(|| anyhow!("bad address {address}"))?;
            self.mailbox.kernel_command(&json!({"GrantCapabilities": {
                "target": target,
                "capabilities": [caps::cap_to_json(&cap)],
            }}));
        }
        let mut initial = Vec::new();
        for item in list(entry, "request_capabilities") {
            initial.push(self.capability(item)?.1);
        }
        initial.push(caps::messaging(&self.mailbox.address()));
        if entry["request_networking"].as_bool() == Some(true) {
            initial.push(caps::network(&self.our));
        }
        if entry["root"].as_bool() == Some(true) {
            initial.extend(self.mailbox.capabilities());
        }
        let initialize = json!({"InitializeProcess": {
            "id": pid,
            "wasm_bytes_handle": wasm_path,
            "wit_version": entry.get("wit_version"),
            "on_exit": "None",
            "initial_capabilities": initial.iter().map(caps::cap_to_json).collect::<Vec<_>>(),
            "public": entry["public"].as_bool().unwrap_or(false),
        }});
        self.mailbox.await_kernel_command(
            &initialize,
            Some(wasm),
            "InitializedProcess",
            TIMEOUT_SECS,
        )?;
        self.mailbox.await_kernel_command(
            &json!({ "RunProcess": pid }),
            None,
            "StartedProcess",
            TIMEOUT_SECS,
        )?;
        self.mailbox.send(&address, args, None, Vec::new());
        Ok(pid)
    }

    /// A `scripts.json` capability entry as `(process, capability)`: `"p:p:p"` is messaging it,
    /// `{"process", "params"}` is issued by the process with the params' JSON text.
    fn capability(&self, item: &Value) -> Result<(String, Capability)> {
        let (process, params) = match item {
            Value::String(process) => (process.as_str(), "\"messaging\"".to_owned()),
            Value::Object(map) => (
                map.get("process")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("a capability without process: {item}"))?,
                map.get("params").unwrap_or(&Value::Null).to_string(),
            ),
            _ => bail!("a bad capability entry: {item}"),
        };
        if caps::parse_process_id(process).is_none() {
            bail!("a bad process id in a capability entry: {item}");
        }
        Ok((
            process.to_owned(),
            caps::capability(&format!("{}@{process}", self.our), &params),
        ))
    }

    /// Reads a VFS file through `vfs:distro:sys`.
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let body = json!({"path": path, "action": "Read"}).to_string();
        let reply = self
            .mailbox
            .request(
                &format!("{}@{VFS}", self.our),
                body,
                None,
                Vec::new(),
                TIMEOUT_SECS,
            )
            .map_err(|e| anyhow!("VFS Read {path}: {e:?}"))?;
        match reply.blob {
            Some(bytes) if reply.json() == json!("Read") => Ok(bytes),
            _ => bail!("VFS Read {path}: {}", reply.text()),
        }
    }
}

/// The array `entry[key]`, or nothing.
fn list<'a>(entry: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    entry[key].as_array().into_iter().flatten()
}
