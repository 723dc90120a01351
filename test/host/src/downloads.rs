//! `downloads:app-store:sys` and its `ft-worker` transfers between nodes (the kinode repo's
//! `kinode/packages/app-store/downloads/src/lib.rs`, `handle_message`, `format_entries`,
//! `extract_and_write_manifest`, `download_zip_exists`; `ft-worker/src/lib.rs`, `handle_sender`,
//! `handle_receiver`, `send_chunk`, `handle_chunk`; `ft-worker/src/ft_worker_lib.rs`; types from
//! `api/app-store:sys-v1.wit` interface `downloads`), as far as what crosses the boundary a
//! local client process sees.
//!
//! [`crate::Node::start_downloads`] starts it (it is not started by default): a service thread
//! serving a mailbox at `our@downloads:app-store:sys` in the process map, `public: false`, with
//! the `"network"` capability, VFS root, and messaging `vfs`, `timer`, `main:app-store:sys` and
//! `chain:app-store:sys`. It creates the drive `/app-store:sys/downloads` as the real `init`
//! does. Its state, `mirroring` (a set of package ids, per package, not per version), is saved
//! with set-state as `{"mirroring":[package_id..]}` at every change and read back at start; the
//! service itself lives on across [`crate::Node::reboot`], as mailboxes do.
//!
//! A local caller needs the messaging capability for downloads, and gets answers as from any
//! non-public process here: only if it is public or downloads holds messaging it.
//!
//! As the real one, every body JSON with PascalCase variant tags, snake_case fields and a package
//! id as `{"package_name","publisher_node"}`; answers only to requests expecting one; a handler's
//! error is printed and nothing is answered:
//! - `MirrorCheck(pid)` (any node): `"Success"` if mirroring, else `{"Err":"NotMirroring"}`.
//! - `LocalDownload {package_id, download_from, desired_version_hash}` (local only, never
//!   answered): registers a receiver worker at `our@{random u64}:app-store:sys` with downloads'
//!   capabilities and messaging `timer`, and sends `{"RemoteDownload":{package_id,
//!   worker_address, desired_version_hash}}` to `{download_from}@downloads:app-store:sys`
//!   expecting a response in 60 s. An `{"Err":e}` response sends `DownloadComplete {..., err: e}`
//!   to main; a send error (`Offline`, `Timeout`) is only printed, as for any manual download.
//! - `RemoteDownload` (any node): not mirroring -> `{"Err":"NotMirroring"}`; no zip at
//!   `/app-store:sys/downloads/{pkg}/{hash}.zip` -> `{"Err":"FileNotFound"}`; else a sender
//!   worker (`our@{random u64}:app-store:sys`) is started and `"Success"` answered. The sender
//!   opens the zip, sends `{"Size":{package_id,size}}`, then `{"Chunk":{package_id,version_hash,
//!   offset,length}}` requests with the bytes (seek and read-exact, 262144 each) as blob to the
//!   worker address, fire-and-forget: whatever bytes the file holds.
//! - The receiver worker sets its killswitch with `timer:distro:sys` (120 s by default,
//!   [`Downloads::set_killswitch`]); creates the package directory; on each `Chunk` opens the zip
//!   (`create: true`, first chunk) and `WriteAll`s the blob (the offset is not used to seek),
//!   hashes it with SHA-256 and, once it knows the size, sends `Progress` to downloads; at the end
//!   it compares the hash, reads the zip back and writes its root `manifest.json` to
//!   `{hash}.json`, and sends `DownloadComplete`. Any other message (a response, the killswitch's
//!   timer response, a send error, a chunk without blob, an unparseable body) or VFS error ends
//!   it with `DownloadComplete {err: "WorkerSpawnFailed"}`. The worker then leaves the process
//!   map.
//! - `Progress` (no check) and `DownloadComplete` (local) are forwarded bare (the
//!   `ProgressUpdate` / `DownloadCompleteRequest` object alone) to `our@main:app-store:sys`; with
//!   no such process the kernel drops them.
//! - `GetFiles(None)` (local): `{"GetFiles":[{"Dir":{name,mirroring}}..]}` of the drive's
//!   directories but `tmp`; `GetFiles(Some(pid))`: `{"File":{name,size,manifest}}` of its `*.zip`
//!   files, `manifest` the sibling `.json` or `""`; no reply if the directory is missing.
//! - `RemoveFile {package_id, version_hash}` (local): removes the zip and json, errors ignored,
//!   `"Success"`. `AddDownload {package_id, version_hash, mirror}` + blob (local): writes the zip
//!   and json, mirrors if asked, `"Success"`. `StartMirroring(pid)` / `StopMirroring(pid)` (no
//!   source check): `"Success"`.
//!
//! v1.0.0 quirks kept: a hash mismatch sends `DownloadComplete {err: {"HashMismatch":{desired,
//! actual}}}` and then still writes the json and sends `DownloadComplete {err: null}`, leaving the
//! bad zip; the killswitch's timer response never matches the worker's `our@timer:distro:sys`
//! check, so a stalled download (or one the mirror refused: the worker is never stopped) ends
//! about 120 s later as `WorkerSpawnFailed` rather than `Timeout`.
//!
//! Simplified: workers are host threads with mailboxes, not `ft-worker.wasm` processes: the
//! parent hands them their request directly instead of an init message (so there is no init
//! source check), and the sender sets no killswitch. A `download_from` starting with `http` is
//! not served (printed and ignored). `AutoUpdate` is not served (printed; chain here never sends
//! it). The 60 s of `RemoteDownload` is kept by nobody: a mirror that never answers just leaves
//! the worker to its killswitch, which is what a manual download sees anyway.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::caps::{self, TIMER, VFS};
use crate::chain::{hex, PackageId, CHAIN};
use crate::kernel::Kernel;
use crate::mailbox::request;
use crate::{IncomingKind, Mailbox, Node};

/// The downloads process's id.
pub const DOWNLOADS: &str = "downloads:app-store:sys";
/// The app store's main process, which downloads notifies.
const MAIN: &str = "main:app-store:sys";
/// The downloads drive.
const DRIVE: &str = "/app-store:sys/downloads";
/// `CHUNK_SIZE`.
const CHUNK_SIZE: u64 = 262_144;
/// `RemoteDownload`'s `expects_response`, seconds.
const REMOTE_DOWNLOAD_TIMEOUT_S: u64 = 60;
/// How long a service waits for the VFS, seconds.
const VFS_TIMEOUT_S: u64 = 5;
/// `KILL_SWITCH_MS`.
const KILL_SWITCH_MS: u64 = 120_000;
/// How often service threads look for messages and their stop flag.
const POLL: Duration = Duration::from_millis(5);

/// A handle on a node's `downloads:app-store:sys`. Cheap to clone.
#[derive(Clone)]
pub struct Downloads {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads")
            .field("our", &self.shared.our)
            .field("mirroring", &self.mirroring())
            .finish_non_exhaustive()
    }
}

/// What the service, its workers and the handle share.
struct Shared {
    our: String,
    mirroring: Mutex<HashSet<PackageId>>,
    chunk_delay_ms: AtomicU64,
    killswitch_ms: AtomicU64,
    stop: Arc<AtomicBool>,
    commands: Mutex<mpsc::Sender<Command>>,
}

/// A test control the service thread carries out.
enum Command {
    /// What `AddDownload` does.
    Publish {
        id: PackageId,
        version_hash: String,
        zip: Vec<u8>,
        mirror: bool,
        done: mpsc::Sender<Result<()>>,
    },
}

impl Downloads {
    /// Starts the service on `node` (see [`crate::Node::start_downloads`]).
    pub(crate) fn start(node: &Node) -> Result<Downloads> {
        let kernel = Arc::clone(node.kernel());
        let our = kernel.our.clone();
        let mailbox = Mailbox::register(&kernel, &format!("{our}@{DOWNLOADS}"), false)
            .map_err(|e| anyhow!(e))?;
        Kernel::add_caps(
            &mut kernel.lock(),
            DOWNLOADS,
            vec![
                caps::messaging(&format!("{our}@{DOWNLOADS}")),
                caps::network(&our),
                caps::vfs_root(&our),
                caps::messaging(&format!("{our}@{VFS}")),
                caps::messaging(&format!("{our}@{TIMER}")),
                caps::messaging(&format!("{our}@{MAIN}")),
                caps::messaging(&format!("{our}@{CHAIN}")),
            ],
        );
        // `init`: the state, then the drive.
        let mirroring = kernel
            .get_state(DOWNLOADS)
            .and_then(|bytes| serde_json::from_slice::<State>(&bytes).ok())
            .map(|state| state.mirroring)
            .unwrap_or_default();
        vfs(&mailbox, &our, DRIVE, json!("CreateDrive"), None)
            .context("creating the downloads drive")?;
        let (commands, receiver) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        node.add_service(Arc::clone(&stop));
        let shared = Arc::new(Shared {
            our: our.clone(),
            mirroring: Mutex::new(mirroring),
            chunk_delay_ms: AtomicU64::new(0),
            killswitch_ms: AtomicU64::new(KILL_SWITCH_MS),
            stop,
            commands: Mutex::new(commands),
        });
        let service = Service {
            kernel,
            shared: Arc::clone(&shared),
            mailbox,
            pending: HashMap::new(),
        };
        thread::Builder::new()
            .name(format!("{our} downloads"))
            .spawn(move || service.serve(&receiver))?;
        Ok(Downloads { shared })
    }

    /// `node@downloads:app-store:sys`.
    pub fn address(&self) -> String {
        format!("{}@{DOWNLOADS}", self.shared.our)
    }

    /// A pause before each chunk this node's sender workers send (0 by default), so a test can act
    /// while a download is under way.
    pub fn set_chunk_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.chunk_delay_ms.store(millis, Ordering::SeqCst);
    }

    /// The killswitch of receiver workers started from now on (`KILL_SWITCH_MS`, 120 s, by
    /// default).
    pub fn set_killswitch(&self, after: Duration) {
        let millis = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.shared.killswitch_ms.store(millis, Ordering::SeqCst);
    }

    /// The packages this node mirrors, `name:publisher`, sorted.
    pub fn mirroring(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .shared
            .mirroring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(ToString::to_string)
            .collect();
        ids.sort();
        ids
    }

    /// Does what `AddDownload` does for `package_id` (`name:publisher`) with `zip`: writes
    /// `{hash}.zip` and `{hash}.json` in the downloads drive and, if `mirror`, mirrors the
    /// package. Returns the version hash (SHA-256 of the zip, lowercase hex).
    pub fn publish(&self, package_id: &str, zip: &[u8], mirror: bool) -> Result<String> {
        let id = PackageId::parse(package_id)?;
        let version_hash = hex(&Sha256::digest(zip));
        let (done, result) = mpsc::channel();
        self.shared
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Command::Publish {
                id,
                version_hash: version_hash.clone(),
                zip: zip.to_vec(),
                mirror,
                done,
            })
            .map_err(|_| anyhow!("downloads has stopped"))?;
        result
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| anyhow!("downloads did not publish {package_id}"))??;
        Ok(version_hash)
    }
}

/// The persisted state.
#[derive(Serialize, Deserialize)]
struct State {
    mirroring: HashSet<PackageId>,
}

// -------------------------------------------------------------------------------------------------
// The wire types (`api/app-store:sys-v1.wit`, interface `downloads`).

/// `download-request`.
#[derive(Serialize, Deserialize)]
enum DownloadRequest {
    MirrorCheck(PackageId),
    RemoteDownload(RemoteDownloadRequest),
    Chunk(ChunkRequest),
    Progress(ProgressUpdate),
    Size(SizeUpdate),
    LocalDownload(LocalDownloadRequest),
    AutoUpdate(Value),
    DownloadComplete(DownloadCompleteRequest),
    AutoDownloadComplete(Value),
    GetFiles(Option<PackageId>),
    RemoveFile(RemoveFileRequest),
    AddDownload(AddDownloadRequest),
    StartMirroring(PackageId),
    StopMirroring(PackageId),
}

/// `download-response`.
#[derive(Serialize, Deserialize)]
enum DownloadResponse {
    Success,
    GetFiles(Vec<Entry>),
    Err(DownloadError),
}

#[derive(Serialize, Deserialize, Clone)]
struct LocalDownloadRequest {
    package_id: PackageId,
    download_from: String,
    desired_version_hash: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct RemoteDownloadRequest {
    package_id: PackageId,
    worker_address: String,
    desired_version_hash: String,
}

#[derive(Serialize, Deserialize)]
struct ChunkRequest {
    package_id: PackageId,
    version_hash: String,
    offset: u64,
    length: u64,
}

#[derive(Serialize, Deserialize)]
struct ProgressUpdate {
    package_id: PackageId,
    version_hash: String,
    downloaded: u64,
    total: u64,
}

#[derive(Serialize, Deserialize)]
struct SizeUpdate {
    package_id: PackageId,
    size: u64,
}

#[derive(Serialize, Deserialize)]
struct DownloadCompleteRequest {
    package_id: PackageId,
    version_hash: String,
    err: Option<DownloadError>,
}

#[derive(Serialize, Deserialize)]
struct RemoveFileRequest {
    package_id: PackageId,
    version_hash: String,
}

#[derive(Serialize, Deserialize)]
struct AddDownloadRequest {
    package_id: PackageId,
    version_hash: String,
    mirror: bool,
}

/// `download-error`.
#[derive(Serialize, Deserialize, Debug)]
enum DownloadError {
    NoPackage,
    NotMirroring,
    HashMismatch(HashMismatch),
    FileNotFound,
    WorkerSpawnFailed,
    HttpClientError,
    BlobNotFound,
    VfsError,
    Timeout,
    InvalidManifest,
    Offline,
}

#[derive(Serialize, Deserialize, Debug)]
struct HashMismatch {
    desired: String,
    actual: String,
}

/// `entry`.
#[derive(Serialize, Deserialize)]
enum Entry {
    File(FileEntry),
    Dir(DirEntry),
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    name: String,
    size: u64,
    manifest: String,
}

#[derive(Serialize, Deserialize)]
struct DirEntry {
    name: String,
    mirroring: bool,
}

/// JSON bytes of a wire value.
fn body(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

// -------------------------------------------------------------------------------------------------
// The service.

/// The downloads process.
struct Service {
    kernel: Arc<Kernel>,
    shared: Arc<Shared>,
    mailbox: Mailbox,
    /// `RemoteDownload`s awaiting their answer, by request id (the real one's `context`).
    pending: HashMap<u64, LocalDownloadRequest>,
}

impl Service {
    fn serve(mut self, commands: &mpsc::Receiver<Command>) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            while let Ok(command) = commands.try_recv() {
                match command {
                    Command::Publish {
                        id,
                        version_hash,
                        zip,
                        mirror,
                        done,
                    } => {
                        let _ = done.send(self.add_download(&id, &version_hash, &zip, mirror));
                    }
                }
            }
            let Some(incoming) = self.mailbox.recv(POLL) else {
                continue;
            };
            match incoming.kind {
                IncomingKind::Request { expects_response } => {
                    let local = node_of(&incoming.source) == self.shared.our;
                    match self.handle_request(&incoming.body, incoming.blob.as_deref(), local) {
                        Ok(Some(answer)) if expects_response.is_some() => {
                            self.mailbox
                                .respond(&incoming, body(&answer), None, Vec::new());
                        }
                        Ok(_) => {}
                        Err(e) => self.print(1, format!("downloads: error handling message: {e}")),
                    }
                }
                IncomingKind::Response => self.handle_response(incoming.id, &incoming.body),
                IncomingKind::SendError(kind) => {
                    if let Some(request) = self.pending.remove(&incoming.id) {
                        // Only auto-updates act on a send error.
                        self.print(
                            1,
                            format!(
                                "downloads: {kind:?} sending RemoteDownload of {} to {}",
                                request.package_id, request.download_from
                            ),
                        );
                    }
                }
            }
        }
    }

    fn print(&self, verbosity: u8, message: String) {
        self.kernel.print(DOWNLOADS, verbosity, message);
    }

    fn is_mirroring(&self, id: &PackageId) -> bool {
        self.shared
            .mirroring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// Adds or removes a mirrored package and saves the state.
    fn set_mirroring(&self, id: &PackageId, on: bool) {
        let mut mirroring = self
            .shared
            .mirroring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if on {
            mirroring.insert(id.clone());
        } else {
            mirroring.remove(id);
        }
        let state = State {
            mirroring: mirroring.clone(),
        };
        drop(mirroring);
        self.kernel.set_state(
            DOWNLOADS,
            Some(serde_json::to_vec(&state).unwrap_or_default()),
        );
    }

    /// Sends a bare body to `our@main:app-store:sys`, fire-and-forget.
    fn notify_main(&self, bytes: Vec<u8>) {
        let main = format!("{}@{MAIN}", self.shared.our);
        self.mailbox.send(&main, bytes, None, Vec::new());
    }

    /// One request; `Ok(Some(answer))` if it is answered.
    fn handle_request(
        &mut self,
        bytes: &[u8],
        blob: Option<&[u8]>,
        local: bool,
    ) -> Result<Option<DownloadResponse>> {
        let request: DownloadRequest = serde_json::from_slice(bytes)?;
        let not_local = |what: &str| anyhow!("got non-local {what} request");
        Ok(match request {
            DownloadRequest::MirrorCheck(id) => Some(if self.is_mirroring(&id) {
                DownloadResponse::Success
            } else {
                DownloadResponse::Err(DownloadError::NotMirroring)
            }),
            DownloadRequest::LocalDownload(download) => {
                if !local {
                    return Err(not_local("LocalDownload"));
                }
                self.local_download(download)?;
                None
            }
            DownloadRequest::RemoteDownload(download) => Some(self.remote_download(download)?),
            DownloadRequest::Progress(progress) => {
                self.notify_main(body(&progress));
                None
            }
            DownloadRequest::DownloadComplete(complete) => {
                if !local {
                    return Err(not_local("DownloadComplete"));
                }
                self.notify_main(body(&complete));
                None
            }
            DownloadRequest::GetFiles(id) => {
                if !local {
                    return Err(not_local("GetFiles"));
                }
                Some(DownloadResponse::GetFiles(self.get_files(id.as_ref())?))
            }
            DownloadRequest::RemoveFile(remove) => {
                if !local {
                    return Err(not_local("RemoveFile"));
                }
                let dir = format!("{DRIVE}/{}", remove.package_id);
                for ext in ["zip", "json"] {
                    let path = format!("{dir}/{}.{ext}", remove.version_hash);
                    let _ = vfs(
                        &self.mailbox,
                        &self.shared.our,
                        &path,
                        json!("RemoveFile"),
                        None,
                    );
                }
                Some(DownloadResponse::Success)
            }
            DownloadRequest::AddDownload(add) => {
                if !local {
                    return Err(not_local("AddDownload"));
                }
                let zip = blob.ok_or_else(|| anyhow!("blob not found"))?;
                self.add_download(&add.package_id, &add.version_hash, zip, add.mirror)?;
                Some(DownloadResponse::Success)
            }
            DownloadRequest::StartMirroring(id) => {
                self.set_mirroring(&id, true);
                Some(DownloadResponse::Success)
            }
            DownloadRequest::StopMirroring(id) => {
                self.set_mirroring(&id, false);
                Some(DownloadResponse::Success)
            }
            DownloadRequest::AutoUpdate(_) => {
                self.print(
                    0,
                    "downloads: AutoUpdate is not served by the test host".into(),
                );
                None
            }
            DownloadRequest::Chunk(_)
            | DownloadRequest::Size(_)
            | DownloadRequest::AutoDownloadComplete(_) => {
                bail!("unexpected download request")
            }
        })
    }

    /// The answer to a `RemoteDownload` this node sent.
    fn handle_response(&mut self, id: u64, bytes: &[u8]) {
        let Some(request) = self.pending.remove(&id) else {
            return;
        };
        match serde_json::from_slice::<DownloadResponse>(bytes) {
            Ok(DownloadResponse::Err(err)) => {
                self.notify_main(body(&DownloadCompleteRequest {
                    package_id: request.package_id,
                    version_hash: request.desired_version_hash,
                    err: Some(err),
                }));
            }
            Ok(_) => self.print(
                1,
                format!(
                    "downloads: {} is sending {}",
                    request.download_from, request.package_id
                ),
            ),
            Err(e) => self.print(1, format!("downloads: bad response: {e}")),
        }
    }

    /// Registers a worker at `our@{random u64}:app-store:sys` with downloads' capabilities and
    /// messaging `timer` (`spawn_receive_transfer` / `spawn_send_transfer`).
    fn spawn_worker(&self) -> Result<Mailbox> {
        let our = &self.shared.our;
        let mailbox = Mailbox::register(
            &self.kernel,
            &format!("{our}@{}:app-store:sys", rand_u64()),
            false,
        )
        .map_err(|e| anyhow!(e))?;
        let mut granted = self.kernel.capabilities(DOWNLOADS);
        granted.push(caps::messaging(&format!("{our}@{TIMER}")));
        let mut st = self.kernel.lock();
        Kernel::add_caps(&mut st, &mailbox.process_id(), granted);
        // The timer answers the killswitch: runtime modules may message every process (the
        // runtime's bootstrap grants them that; here the worker is not public).
        Kernel::add_caps(&mut st, TIMER, vec![caps::messaging(&mailbox.address())]);
        Ok(mailbox)
    }

    /// `LocalDownload`: a receiver worker, and `RemoteDownload` to the mirror.
    fn local_download(&mut self, download: LocalDownloadRequest) -> Result<()> {
        if download.download_from.starts_with("http") {
            self.print(
                0,
                format!(
                    "downloads: HTTP downloads are not served by the test host; ignoring {}",
                    download.download_from
                ),
            );
            return Ok(());
        }
        let mirror = format!("{}@{DOWNLOADS}", download.download_from);
        if crate::parse_address(&mirror).is_none() {
            bail!("bad download_from {}", download.download_from);
        }
        let worker = self.spawn_worker()?;
        let worker_address = worker.address();
        let receiver = Receiver {
            kernel: Arc::clone(&self.kernel),
            shared: Arc::clone(&self.shared),
            mailbox: worker,
            package_id: download.package_id.clone(),
            version_hash: download.desired_version_hash.clone(),
        };
        thread::Builder::new()
            .name(format!("{} ft-worker receiver", self.shared.our))
            .spawn(move || receiver.run())?;
        let remote = DownloadRequest::RemoteDownload(RemoteDownloadRequest {
            package_id: download.package_id.clone(),
            worker_address,
            desired_version_hash: download.desired_version_hash.clone(),
        });
        let id = self.mailbox.send_request(
            &mirror,
            request(body(&remote), Some(REMOTE_DOWNLOAD_TIMEOUT_S), Vec::new()),
            None,
        );
        self.pending.insert(id, download);
        Ok(())
    }

    /// `RemoteDownload`: checks, then a sender worker.
    fn remote_download(&self, download: RemoteDownloadRequest) -> Result<DownloadResponse> {
        if !self.is_mirroring(&download.package_id) {
            return Ok(DownloadResponse::Err(DownloadError::NotMirroring));
        }
        let path = format!(
            "{DRIVE}/{}/{}.zip",
            download.package_id, download.desired_version_hash
        );
        let exists = vfs(
            &self.mailbox,
            &self.shared.our,
            &path,
            json!("Metadata"),
            None,
        )
        .is_ok_and(|(answer, _)| answer["Metadata"]["file_type"] == json!("File"));
        if !exists {
            return Ok(DownloadResponse::Err(DownloadError::FileNotFound));
        }
        let sender = Sender {
            kernel: Arc::clone(&self.kernel),
            shared: Arc::clone(&self.shared),
            mailbox: self.spawn_worker()?,
            request: download,
        };
        thread::Builder::new()
            .name(format!("{} ft-worker sender", self.shared.our))
            .spawn(move || sender.run())?;
        Ok(DownloadResponse::Success)
    }

    /// `GetFiles` (`format_entries`).
    fn get_files(&self, id: Option<&PackageId>) -> Result<Vec<Entry>> {
        let our = &self.shared.our;
        let dir = match id {
            Some(id) => format!("{DRIVE}/{id}"),
            None => DRIVE.to_owned(),
        };
        let (answer, _) = vfs(&self.mailbox, our, &dir, json!("ReadDir"), None)?;
        let listed = answer["ReadDir"].as_array().cloned().unwrap_or_default();
        let mut entries = Vec::new();
        for item in listed {
            let Some(path) = item["path"].as_str() else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or(path).to_owned();
            match id {
                None => {
                    if item["file_type"] != json!("Directory") || name == "tmp" {
                        continue;
                    }
                    let mirroring = self
                        .shared
                        .mirroring
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .any(|m| m.package_name == name || m.to_string() == name);
                    entries.push(Entry::Dir(DirEntry { name, mirroring }));
                }
                Some(_) => {
                    let Some(stem) = name.strip_suffix(".zip") else {
                        continue;
                    };
                    if item["file_type"] != json!("File") {
                        continue;
                    }
                    let (metadata, _) = vfs(
                        &self.mailbox,
                        our,
                        &format!("{dir}/{name}"),
                        json!("Metadata"),
                        None,
                    )?;
                    let size = metadata["Metadata"]["len"].as_u64().unwrap_or(0);
                    let manifest = read(&self.mailbox, our, &format!("{dir}/{stem}.json"))
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .unwrap_or_default();
                    entries.push(Entry::File(FileEntry {
                        name,
                        size,
                        manifest,
                    }));
                }
            }
        }
        Ok(entries)
    }

    /// `AddDownload`: the zip and its manifest, and mirroring if asked.
    fn add_download(
        &self,
        id: &PackageId,
        version_hash: &str,
        zip: &[u8],
        mirror: bool,
    ) -> Result<()> {
        let our = &self.shared.our;
        let dir = format!("{DRIVE}/{id}");
        vfs(&self.mailbox, our, &dir, json!("CreateDirAll"), None)?;
        vfs(
            &self.mailbox,
            our,
            &format!("{dir}/{version_hash}.zip"),
            json!("Write"),
            Some(zip.to_vec()),
        )?;
        write_manifest(
            &self.mailbox,
            our,
            zip,
            &format!("{dir}/{version_hash}.json"),
        )?;
        if mirror {
            self.set_mirroring(id, true);
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------------
// ft-worker.

/// A receiver worker (`handle_receiver`).
struct Receiver {
    kernel: Arc<Kernel>,
    shared: Arc<Shared>,
    mailbox: Mailbox,
    package_id: PackageId,
    version_hash: String,
}

impl Receiver {
    fn run(self) {
        let start = Instant::now();
        match self.receive() {
            Ok(()) => self.kernel.print(
                &self.mailbox.process_id(),
                1,
                format!(
                    "ft_worker: receive downloaded package in {}ms",
                    start.elapsed().as_millis()
                ),
            ),
            Err(e) => {
                self.kernel.print(
                    &self.mailbox.process_id(),
                    1,
                    format!("ft_worker: receive error: {e}"),
                );
                self.complete(Some(DownloadError::WorkerSpawnFailed));
            }
        }
        self.kernel.remove_mailbox(&self.mailbox.process_id());
    }

    /// Sends `DownloadComplete` to downloads.
    fn complete(&self, err: Option<DownloadError>) {
        let complete = DownloadRequest::DownloadComplete(DownloadCompleteRequest {
            package_id: self.package_id.clone(),
            version_hash: self.version_hash.clone(),
            err,
        });
        let downloads = format!("{}@{DOWNLOADS}", self.shared.our);
        self.mailbox
            .send(&downloads, body(&complete), None, Vec::new());
    }

    fn receive(&self) -> Result<()> {
        let our = &self.shared.our;
        let downloads = format!("{our}@{DOWNLOADS}");
        let killswitch = self.shared.killswitch_ms.load(Ordering::SeqCst);
        self.mailbox.send_request(
            &format!("{our}@{TIMER}"),
            request(
                json!({ "SetTimer": killswitch }).to_string(),
                Some(killswitch / 1000 + 1),
                Vec::new(),
            ),
            None,
        );
        let dir = format!("{DRIVE}/{}", self.package_id);
        vfs(&self.mailbox, our, &dir, json!("CreateDirAll"), None)?;
        let zip_path = format!("{dir}/{}.zip", self.version_hash);
        let mut opened = false;
        let mut size: Option<u64> = None;
        let mut hasher = Sha256::new();
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let Some(message) = self.mailbox.recv(POLL) else {
                continue;
            };
            if !matches!(message.kind, IncomingKind::Request { .. }) {
                bail!("ft_worker: got bad message");
            }
            match serde_json::from_slice::<DownloadRequest>(&message.body)? {
                DownloadRequest::Chunk(chunk) => {
                    let bytes = message
                        .blob
                        .ok_or_else(|| anyhow!("ft_worker: got no blob in chunk request"))?;
                    if !opened {
                        vfs(
                            &self.mailbox,
                            our,
                            &zip_path,
                            json!({"OpenFile": {"create": true}}),
                            None,
                        )?;
                        opened = true;
                    }
                    hasher.update(&bytes);
                    vfs(
                        &self.mailbox,
                        our,
                        &zip_path,
                        json!("WriteAll"),
                        Some(bytes),
                    )?;
                    let downloaded = chunk.offset.saturating_add(chunk.length);
                    if let Some(total) = size {
                        let progress = DownloadRequest::Progress(ProgressUpdate {
                            package_id: chunk.package_id,
                            version_hash: chunk.version_hash,
                            downloaded,
                            total,
                        });
                        self.mailbox
                            .send(&downloads, body(&progress), None, Vec::new());
                    }
                    if size.is_some_and(|total| downloaded >= total) {
                        let received = hex(&hasher.finalize());
                        if received != self.version_hash {
                            self.kernel.print(
                                &self.mailbox.process_id(),
                                1,
                                format!(
                                    "ft_worker: {} hash mismatch: desired: {} != actual: {received}",
                                    self.package_id, self.version_hash
                                ),
                            );
                            self.complete(Some(DownloadError::HashMismatch(HashMismatch {
                                desired: self.version_hash.clone(),
                                actual: received,
                            })));
                        }
                        let contents = read(&self.mailbox, our, &zip_path)?;
                        let json_path = format!("{dir}/{}.json", self.version_hash);
                        write_manifest(&self.mailbox, our, &contents, &json_path)?;
                        self.complete(None);
                        return Ok(());
                    }
                }
                DownloadRequest::Size(update) => size = Some(update.size),
                _ => self.kernel.print(
                    &self.mailbox.process_id(),
                    0,
                    "ft_worker: got unexpected message",
                ),
            }
        }
    }
}

/// A sender worker (`handle_sender`, `send_chunk`).
struct Sender {
    kernel: Arc<Kernel>,
    shared: Arc<Shared>,
    mailbox: Mailbox,
    request: RemoteDownloadRequest,
}

impl Sender {
    fn run(self) {
        let start = Instant::now();
        let message = match self.send() {
            Ok(()) => format!(
                "ft_worker: sent package to {} in {}ms",
                self.request.worker_address,
                start.elapsed().as_millis()
            ),
            Err(e) => format!("ft_worker: send error: {e}"),
        };
        self.kernel.print(&self.mailbox.process_id(), 1, message);
        self.kernel.remove_mailbox(&self.mailbox.process_id());
    }

    fn send(&self) -> Result<()> {
        let our = &self.shared.our;
        let target = &self.request.worker_address;
        if crate::parse_address(target).is_none() {
            bail!("bad worker address {target}");
        }
        let id = &self.request.package_id;
        let hash = &self.request.desired_version_hash;
        let path = format!("{DRIVE}/{id}/{hash}.zip");
        vfs(
            &self.mailbox,
            our,
            &path,
            json!({"OpenFile": {"create": false}}),
            None,
        )?;
        let (metadata, _) = vfs(&self.mailbox, our, &path, json!("Metadata"), None)?;
        let size = metadata["Metadata"]["len"]
            .as_u64()
            .ok_or_else(|| anyhow!("no length in {metadata}"))?;
        let update = DownloadRequest::Size(SizeUpdate {
            package_id: id.clone(),
            size,
        });
        self.mailbox.send(target, body(&update), None, Vec::new());
        vfs(
            &self.mailbox,
            our,
            &path,
            json!({"Seek": {"Start": 0}}),
            None,
        )?;
        for index in 0..size.div_ceil(CHUNK_SIZE) {
            self.pause()?;
            let offset = index * CHUNK_SIZE;
            let length = CHUNK_SIZE.min(size - offset);
            vfs(
                &self.mailbox,
                our,
                &path,
                json!({"Seek": {"Start": offset}}),
                None,
            )?;
            let (_, bytes) = vfs(
                &self.mailbox,
                our,
                &path,
                json!({"ReadExact": {"length": length}}),
                None,
            )?;
            let chunk = DownloadRequest::Chunk(ChunkRequest {
                package_id: id.clone(),
                version_hash: hash.clone(),
                offset,
                length,
            });
            self.mailbox.send(
                target,
                body(&chunk),
                Some(bytes.unwrap_or_default()),
                Vec::new(),
            );
        }
        Ok(())
    }

    /// The test's chunk delay, cut short if the node stops.
    fn pause(&self) -> Result<()> {
        let until = Instant::now()
            + Duration::from_millis(self.shared.chunk_delay_ms.load(Ordering::SeqCst));
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                bail!("the node stopped");
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            thread::sleep((until - now).min(POLL));
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Helpers.

/// One VFS request from `mailbox`, awaited; an `Err` answer is an error.
fn vfs(
    mailbox: &Mailbox,
    our: &str,
    path: &str,
    action: Value,
    blob: Option<Vec<u8>>,
) -> Result<(Value, Option<Vec<u8>>)> {
    let request = json!({"path": path, "action": action}).to_string();
    let reply = mailbox
        .request(
            &format!("{our}@{VFS}"),
            request,
            blob,
            Vec::new(),
            VFS_TIMEOUT_S,
        )
        .map_err(|e| anyhow!("VFS {action} {path}: {e:?}"))?;
    let answer = reply.json();
    if answer.get("Err").is_some() {
        bail!("VFS {action} {path}: {answer}");
    }
    Ok((answer, reply.blob))
}

/// A whole file.
fn read(mailbox: &Mailbox, our: &str, path: &str) -> Result<Vec<u8>> {
    match vfs(mailbox, our, path, json!("Read"), None)? {
        (answer, Some(bytes)) if answer == json!("Read") => Ok(bytes),
        (answer, _) => bail!("VFS Read {path}: {answer}"),
    }
}

/// `extract_and_write_manifest`: the zip's root `manifest.json`, if any, written to
/// `manifest_path` (opened with `create: true`, then written whole).
fn write_manifest(mailbox: &Mailbox, our: &str, zip: &[u8], manifest_path: &str) -> Result<()> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))?;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index)?;
        if file.name().is_ok_and(|name| name == "manifest.json") {
            let mut contents = String::new();
            file.read_to_string(&mut contents)?;
            vfs(
                mailbox,
                our,
                manifest_path,
                json!({"OpenFile": {"create": true}}),
                None,
            )?;
            vfs(
                mailbox,
                our,
                manifest_path,
                json!("Write"),
                Some(contents.into_bytes()),
            )?;
            break;
        }
    }
    Ok(())
}

/// The node of `node@process:package:publisher`.
fn node_of(address: &str) -> &str {
    address.split_once('@').map_or("", |(node, _)| node)
}

/// A random u64 for a worker's process name.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
