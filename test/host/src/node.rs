//! A Kinode node in miniature that tests drive synchronously: it owns a multi-thread tokio
//! runtime on which every process is a task, one engine and linker shared by all processes, a
//! temporary home directory with `{home}/vfs`, and the [`crate::kernel`].
//!
//! Mirrors, besides the kernel: the bootstrap of bundled packages (the kinode repo's
//! `kinode/src/state.rs`, `bootstrap`; KINODE.md 5.3) in [`Node::boot_package`], and the kernel's
//! boot sequence (`kinode/src/kernel/mod.rs`, `kernel`: drop `OnExit::None` processes at shutdown,
//! re-read each persisted process's wasm from `{home}/vfs/{wasm_bytes_handle}`, fire
//! `OnExit::Requests`, start everything, then `run`) in [`Node::reboot`], which also re-bootstraps
//! the bundled packages as every real boot does; [`Node::crash_reboot`] boots as after a crash,
//! keeping `OnExit::None` processes.
//!
//! Every node has its HTTP server and homepage ([`crate::http_server`], runtime modules on a
//! real node) from the start, on loopback. A node is on a [`crate::Network`] ([`Node::on`]; a
//! network of its own with [`Node::new`]); `chain:app-store:sys` and `downloads:app-store:sys`
//! are started on demand ([`Node::start_chain`], [`Node::start_downloads`]).
//!
//! Simplified: the HTTP server keeps its bindings across a reboot (the runtime's starts empty,
//! and each process binds again as it starts, as the linker does). Bootstrap caps are indexed for `RevokeAll` like caps granted through the kernel.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::bindings::kinode::process::standard::{Capability, OnExit};
use crate::caps::{self, KERNEL};
use crate::downloads::Downloads;
use crate::http_server::HttpServer;
use crate::kernel::{Fault, HostCall, Kernel, PersistedProcess, ProcessStatus, VfsCall};
use crate::mailbox::Mailbox;
use crate::network::Network;
use crate::process::parse_address;
use crate::runtime::{make_linker, shared_engine};
use crate::Print;

/// A process-map entry as tests see it.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// The VFS path the kernel reloads the wasm from at boot (empty for mailboxes and runtime
    /// modules).
    pub wasm_bytes_handle: String,
    /// The wit version.
    pub wit_version: Option<u32>,
    /// What happens when `init` returns.
    pub on_exit: OnExit,
    /// Whether any local process may message it.
    pub public: bool,
    /// The capabilities it holds.
    pub capabilities: Vec<Capability>,
    /// Its task's status (`None` for mailboxes and runtime modules).
    pub status: Option<ProcessStatus>,
}

/// A node. Dropping it stops every process and takes it off its network.
pub struct Node {
    kernel: Arc<Kernel>,
    /// Stop flags of the services started on this node (chain, downloads), set on drop.
    services: Mutex<Vec<Arc<AtomicBool>>>,
    runtime: Option<tokio::runtime::Runtime>,
    _home: TempDir,
    /// Bundled packages: id, zip, wit version; bootstrapped again at every reboot.
    bundled: Mutex<Vec<Bundled>>,
    /// The HTTP server and homepage, runtime modules every node has.
    http: std::sync::OnceLock<HttpServer>,
}

/// A bundled package: id, zip, wit version.
type Bundled = (String, Vec<u8>, Option<u32>);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("our", &self.kernel.our)
            .field("home", &self.kernel.home)
            .finish_non_exhaustive()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kernel.network.leave(&self.kernel.our, &self.kernel);
        for stop in self
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            stop.store(true, Ordering::SeqCst);
        }
        for (_, handle) in self.kernel.lock().handles.drain() {
            handle.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Node {
    /// A node named `name` (e.g. `fake.os`) with a fresh temporary home and an empty VFS, on a
    /// network of its own.
    pub fn new(name: &str) -> Result<Node> {
        Node::on(name, &Network::new())
    }

    /// A node named `name` with a fresh temporary home and an empty VFS, joining `network`
    /// (online). A name already on the network is an error.
    pub fn on(name: &str, network: &Network) -> Result<Node> {
        let engine = shared_engine()?;
        let linker = Arc::new(make_linker(&engine)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let home = tempfile::Builder::new()
            .prefix("linker-test-node-")
            .tempdir()?;
        let kernel = Kernel::new(
            name,
            home.path().to_path_buf(),
            engine,
            linker,
            runtime.handle().clone(),
            network.clone(),
        );
        network.join(name, &kernel)?;
        let node = Node {
            kernel,
            services: Mutex::new(Vec::new()),
            runtime: Some(runtime),
            _home: home,
            bundled: Mutex::new(Vec::new()),
            http: std::sync::OnceLock::new(),
        };
        let http = HttpServer::start(&node)?;
        let _ = node.http.set(http);
        Ok(node)
    }

    /// The network this node is on.
    pub fn network(&self) -> &Network {
        &self.kernel.network
    }

    /// Takes this node off its network: messages to it are undeliverable (`Offline`), and its
    /// own messages to other nodes too.
    pub fn go_offline(&self) {
        self.kernel.network.set_online(&self.kernel.our, false);
    }

    /// Brings this node back onto its network.
    pub fn go_online(&self) {
        self.kernel.network.set_online(&self.kernel.our, true);
    }

    /// Starts `chain:app-store:sys` on this node, serving the network's listings
    /// ([`crate::chain`]). An error if the process id is taken (e.g. by a test mailbox).
    pub fn start_chain(&self) -> Result<()> {
        crate::chain::start(self)
    }

    /// Starts `downloads:app-store:sys` on this node ([`crate::downloads`]); returns its handle.
    /// An error if the process id is taken.
    pub fn start_downloads(&self) -> Result<Downloads> {
        Downloads::start(self)
    }

    /// The kernel, for the services.
    pub(crate) fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// Registers a service's stop flag, set when the node is dropped.
    pub(crate) fn add_service(&self, stop: Arc<AtomicBool>) {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stop);
    }

    /// The node's HTTP server and homepage, on loopback.
    pub fn http(&self) -> &HttpServer {
        self.http.get().expect("Node::new starts the HTTP server")
    }

    /// The node's name.
    pub fn our(&self) -> &str {
        &self.kernel.our
    }

    /// The home directory (the VFS is `{home}/vfs`).
    pub fn home(&self) -> &Path {
        &self.kernel.home
    }

    /// Bootstraps a bundled package the way the runtime does at every boot, then starts and runs
    /// its processes. Returns their process ids in manifest order.
    ///
    /// `/{package_id}/pkg` is wiped and recreated, the zip is written to it as
    /// `{package_id}.zip` and every entry extracted (parent directories created, `api.zip` not
    /// unzipped). Each manifest entry becomes a process-map entry with `wasm_bytes_handle =
    /// /{package_id}/pkg/{file}` and capabilities made out of thin air: its
    /// `request_capabilities` (string and object forms), messaging itself, `"network"` if
    /// requested, and VFS read and write on `/{package_id}/pkg`. An existing entry is extended,
    /// never reduced. A second pass applies every `grant_capabilities`.
    pub fn boot_package(
        &self,
        package_id: &str,
        zip: &[u8],
        wit_version: Option<u32>,
    ) -> Result<Vec<String>> {
        let ids = self.bootstrap(package_id, zip, wit_version)?;
        {
            let mut bundled = self.bundled.lock().unwrap_or_else(PoisonError::into_inner);
            bundled.retain(|(id, _, _)| id != package_id);
            bundled.push((package_id.to_owned(), zip.to_vec(), wit_version));
        }
        for pid in &ids {
            self.start_from_vfs(pid)?;
        }
        for pid in &ids {
            self.kernel.run(pid);
        }
        Ok(ids)
    }

    /// Writes the package drive and fills in the process map; returns the process ids.
    fn bootstrap(
        &self,
        package_id: &str,
        zip: &[u8],
        wit_version: Option<u32>,
    ) -> Result<Vec<String>> {
        let (package, publisher) = package_id
            .split_once(':')
            .ok_or_else(|| anyhow!("`{package_id}` is not package:publisher"))?;
        let drive = format!("/{package_id}/pkg");
        let dir = self.home().join("vfs").join(package_id).join("pkg");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{package_id}.zip")), zip)?;
        let mut archive =
            zip::ZipArchive::new(Cursor::new(zip)).context("reading the package zip")?;
        for index in 0..archive.len() {
            let mut entry = archive.by_index(index)?;
            let Some(relative) = entry.enclosed_name() else {
                bail!("zip entry {:?} leaves the package drive", entry.name().ok());
            };
            let path = dir.join(relative);
            if entry.is_dir() {
                std::fs::create_dir_all(&path)?;
            } else {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                std::fs::write(&path, bytes)?;
            }
        }
        let manifest: Vec<Value> = serde_json::from_slice(
            &std::fs::read(dir.join("manifest.json")).context("reading pkg/manifest.json")?,
        )
        .context("parsing pkg/manifest.json")?;

        let our = self.our().to_owned();
        let parse_cap = |value: &Value| -> Result<(String, Capability)> {
            match value {
                Value::String(process) => Ok((
                    process.clone(),
                    caps::messaging(&format!("{our}@{process}")),
                )),
                Value::Object(map) => {
                    let process = map
                        .get("process")
                        .and_then(Value::as_str)
                        .ok_or_else(|| anyhow!("capability without process: {value}"))?;
                    let params = map.get("params").cloned().unwrap_or(Value::Null);
                    Ok((
                        process.to_owned(),
                        caps::capability(&format!("{our}@{process}"), &params.to_string()),
                    ))
                }
                _ => bail!("bad capability entry {value}"),
            }
        };
        let mut ids = Vec::new();
        let mut st = self.kernel.lock();
        for entry in &manifest {
            let name = entry["process_name"]
                .as_str()
                .ok_or_else(|| anyhow!("manifest entry without process_name"))?;
            let pid = format!("{name}:{package}:{publisher}");
            if caps::parse_process_id(&pid).is_none() {
                bail!("bad process id {pid}");
            }
            let file = entry["process_wasm_path"]
                .as_str()
                .ok_or_else(|| anyhow!("{pid}: no process_wasm_path"))?
                .trim_start_matches('/');
            let on_exit = caps::on_exit_from_json(&entry["on_exit"])
                .ok_or_else(|| anyhow!("{pid}: bad on_exit"))?;
            let mut granted = Vec::new();
            for value in entry["request_capabilities"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Ok((process, cap)) = parse_cap(value) {
                    if caps::parse_process_id(&process).is_some() {
                        granted.push(cap);
                    }
                }
            }
            granted.push(caps::messaging(&format!("{our}@{pid}")));
            if entry["request_networking"].as_bool() == Some(true) {
                granted.push(caps::network(&our));
            }
            granted.push(caps::vfs_read(&our, &drive));
            granted.push(caps::vfs_write(&our, &drive));
            let public = entry["public"].as_bool().unwrap_or(false);
            let persisted = st
                .process_map
                .entry(pid.clone())
                .or_insert_with(|| PersistedProcess {
                    wasm_bytes_handle: String::new(),
                    wit_version,
                    on_exit: on_exit.clone(),
                    capabilities: Vec::new(),
                    public,
                });
            persisted.wasm_bytes_handle = format!("{drive}/{file}");
            persisted.wit_version = wit_version;
            persisted.on_exit = on_exit;
            persisted.public = public;
            Kernel::add_caps(&mut st, &pid, granted);
            ids.push(pid);
        }
        for (entry, pid) in manifest.iter().zip(&ids) {
            for value in entry["grant_capabilities"].as_array().into_iter().flatten() {
                let Ok((target, mut cap)) = parse_cap(value) else {
                    continue;
                };
                // The issuer is the granting process; `process` names the grantee.
                cap.issuer = parse_address(&format!("{our}@{pid}"))
                    .ok_or_else(|| anyhow!("bad process id {pid}"))?;
                Kernel::add_caps(&mut st, &target, vec![cap]);
            }
        }
        Ok(ids)
    }

    /// Starts the task of a process in the map from `{home}/vfs/{wasm_bytes_handle}`.
    fn start_from_vfs(&self, pid: &str) -> Result<()> {
        let persisted = self
            .kernel
            .lock()
            .process_map
            .get(pid)
            .cloned()
            .ok_or_else(|| anyhow!("no process {pid}"))?;
        let path = self.wasm_path(&persisted.wasm_bytes_handle);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut st = self.kernel.lock();
        self.kernel
            .start_process(&mut st, pid, &persisted, wasm)
            .map_err(|e| anyhow!(e))
    }

    fn wasm_path(&self, handle: &str) -> PathBuf {
        self.home()
            .join("vfs")
            .join(handle.strip_prefix('/').unwrap_or(handle))
    }

    /// Registers a test-controlled process at `address` (`node@process:package:publisher`). On
    /// this node it enters the process map with no capabilities; at another node's address it
    /// stands in for a remote process (and takes that address's messages before the network
    /// does).
    ///
    /// # Panics
    /// If `address` is not an address or the process id is taken on this node.
    pub fn mailbox(&self, address: &str, public: bool) -> Mailbox {
        Mailbox::register(&self.kernel, address, public).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds capabilities to a process (as `GrantCapabilities` does).
    pub fn grant(&self, process: &str, caps: Vec<Capability>) {
        Kernel::add_caps(&mut self.kernel.lock(), process, caps);
    }

    /// Removes capabilities from a process (as `DropCapabilities` does).
    pub fn drop_capabilities(&self, process: &str, caps: &[Capability]) {
        Kernel::drop_caps(&mut self.kernel.lock(), process, caps);
    }

    /// The capabilities a process holds (empty if it is not in the process map).
    pub fn capabilities(&self, process: &str) -> Vec<Capability> {
        self.kernel.capabilities(process)
    }

    /// Whether a process holds a capability equal to `cap`.
    pub fn has_capability(&self, process: &str, cap: &Capability) -> bool {
        caps::holds(&self.capabilities(process), cap)
    }

    /// A process-map entry.
    pub fn process(&self, pid: &str) -> Option<ProcessInfo> {
        let st = self.kernel.lock();
        let p = st.process_map.get(pid)?;
        Some(ProcessInfo {
            wasm_bytes_handle: p.wasm_bytes_handle.clone(),
            wit_version: p.wit_version,
            on_exit: p.on_exit.clone(),
            public: p.public,
            capabilities: p.capabilities.clone(),
            status: st.statuses.get(pid).cloned(),
        })
    }

    /// Every process id in the process map (runtime modules and mailboxes included).
    pub fn processes(&self) -> Vec<String> {
        self.kernel.lock().process_map.keys().cloned().collect()
    }

    /// The peak guest memory (largest linear memory size, in bytes) of a process's latest run,
    /// from its start until now.
    pub fn memory_peak(&self, pid: &str) -> Option<usize> {
        self.kernel.lock().memory.get(pid).map(|peak| peak.bytes())
    }

    /// The last status of a process task, also after it left the process map.
    pub fn status(&self, pid: &str) -> Option<ProcessStatus> {
        self.kernel.lock().statuses.get(pid).cloned()
    }

    /// Every VFS request served so far, in order.
    pub fn vfs_calls(&self) -> Vec<VfsCall> {
        self.kernel.lock().vfs_log.clone()
    }

    /// Every messaging call processes made into the host so far, timed, in order.
    pub fn host_calls(&self) -> Vec<HostCall> {
        self.kernel.lock().host_calls.clone()
    }

    /// Every printout so far: `(process id, print)`; the kernel's are under `kernel:distro:sys`.
    pub fn prints(&self) -> Vec<(String, Print)> {
        self.kernel.lock().prints.clone()
    }

    /// The messages one process printed, in order.
    pub fn print_messages(&self, pid: &str) -> Vec<String> {
        self.kernel
            .lock()
            .prints
            .iter()
            .filter(|(p, _)| p == pid)
            .map(|(_, print)| print.message.clone())
            .collect()
    }

    /// Waits up to `timeout` for a printout (past or future) with `matches(process id, message)`.
    pub fn wait_for_print(
        &self,
        matches: impl Fn(&str, &str) -> bool,
        timeout: Duration,
    ) -> Option<(String, Print)> {
        self.kernel.wait_until(timeout, |st| {
            st.prints
                .iter()
                .find(|(pid, print)| matches(pid, &print.message))
                .cloned()
        })
    }

    /// Waits up to `timeout` until the status of `pid` satisfies `matches`; returns it.
    pub fn wait_for_status(
        &self,
        pid: &str,
        matches: impl Fn(&ProcessStatus) -> bool,
        timeout: Duration,
    ) -> Option<ProcessStatus> {
        self.kernel.wait_until(timeout, |st| {
            st.statuses.get(pid).filter(|s| matches(s)).cloned()
        })
    }

    /// A process's saved state (`set-state`).
    pub fn state(&self, pid: &str) -> Option<Vec<u8>> {
        self.kernel.get_state(pid)
    }

    /// The bytes of a VFS file (`/package:publisher/drive/...`), if it exists.
    pub fn read_file(&self, vfs_path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.kernel.vfs.host_path(vfs_path)?).ok()
    }

    /// Writes a VFS file, creating parent directories (test setup; the VFS itself does not).
    pub fn write_file(&self, vfs_path: &str, bytes: &[u8]) -> Result<()> {
        let path = self
            .kernel
            .vfs
            .host_path(vfs_path)
            .ok_or_else(|| anyhow!("`{vfs_path}` is not a VFS path"))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// The names in a VFS directory, sorted (empty if it does not exist).
    pub fn list_dir(&self, vfs_path: &str) -> Vec<String> {
        let Some(dir) = self.kernel.vfs.host_path(vfs_path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Injects a failure (see [`Fault`]).
    pub fn fault(&self, fault: Fault) {
        self.kernel.add_fault(fault);
    }

    /// Kills a process as `KillProcess` does (revoking the caps it issued); false if there was no
    /// such task.
    pub fn kill(&self, pid: &str) -> bool {
        self.kernel.kill(pid, true)
    }

    /// Stops every process and boots again: processes with `OnExit::None` are dropped (as at
    /// shutdown), bundled packages are bootstrapped again, every other process is reloaded from
    /// `{home}/vfs/{wasm_bytes_handle}` with its capabilities (dropped, with the kernel's
    /// printout, if the file cannot be read), `OnExit::Requests` are fired, and all are run.
    /// Process state and mailboxes survive.
    pub fn reboot(&self) -> Result<()> {
        self.boot_again(false)
    }

    /// Stops every process and boots again as after a crash: the process map as last persisted
    /// (here all of it: `OnExit::None` processes come back too, as when a later persist wrote
    /// them), files as left; otherwise as [`Node::reboot`].
    pub fn crash_reboot(&self) -> Result<()> {
        self.boot_again(true)
    }

    /// [`Node::reboot`], keeping `OnExit::None` processes if `keep_transient`.
    fn boot_again(&self, keep_transient: bool) -> Result<()> {
        self.kernel.vfs.restart();
        {
            let mut st = self.kernel.lock();
            for (pid, handle) in st.handles.drain().collect::<Vec<_>>() {
                handle.abort();
                st.senders.remove(&pid);
                if let Some(status) = st.statuses.get_mut(&pid) {
                    if !status.is_final() {
                        *status = ProcessStatus::Killed;
                    }
                }
            }
            st.process_map.retain(|_, p| {
                keep_transient
                    || p.wasm_bytes_handle.is_empty()
                    || !matches!(p.on_exit, OnExit::None)
            });
        }
        let bundled = self
            .bundled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (id, zip, wit_version) in &bundled {
            self.bootstrap(id, zip, *wit_version)?;
        }
        let persisted: BTreeMap<String, PersistedProcess> = self
            .kernel
            .lock()
            .process_map
            .iter()
            .filter(|(_, p)| !p.wasm_bytes_handle.is_empty())
            .map(|(pid, p)| (pid.clone(), p.clone()))
            .collect();
        let mut started = Vec::new();
        for (pid, p) in &persisted {
            let path = self.wasm_path(&p.wasm_bytes_handle);
            let wasm = match std::fs::read(&path) {
                Ok(wasm) => wasm,
                Err(e) => {
                    self.kernel.print(
                        KERNEL,
                        0,
                        format!(
                            "kernel: couldn't read wasm bytes for process: {pid} at {}: {e}",
                            path.display()
                        ),
                    );
                    self.kernel.lock().process_map.remove(pid);
                    continue;
                }
            };
            let mut st = self.kernel.lock();
            if let Err(e) = self.kernel.start_process(&mut st, pid, p, wasm) {
                st.process_map.remove(pid);
                drop(st);
                self.kernel
                    .print(KERNEL, 0, format!("kernel: couldn't reboot process: {e}"));
                continue;
            }
            started.push(pid.clone());
        }
        for (pid, p) in &persisted {
            let OnExit::Requests(requests) = &p.on_exit else {
                continue;
            };
            for (target, request, blob) in requests {
                let mut request = request.clone();
                request.expects_response = None;
                if !caps::holds(
                    &p.capabilities,
                    &caps::messaging(&crate::process::format_address(target)),
                ) {
                    continue;
                }
                self.kernel.route(crate::kernel::KernelMessage {
                    id: self.kernel.new_id(),
                    source: self.kernel.address(pid),
                    target: target.clone(),
                    rsvp: None,
                    message: crate::bindings::kinode::process::standard::Message::Request(request),
                    blob: blob.clone(),
                });
            }
        }
        for pid in &started {
            self.kernel.run(pid);
        }
        Ok(())
    }
}
