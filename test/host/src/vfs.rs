//! The VFS of a test node: `vfs:distro:sys` served synchronously over `{home}/vfs`.
//!
//! This module owns the VFS wire format (KINODE.md 4.3), path parsing, the capability rules
//! (KINODE.md 4.5) and every action's effect on disk. It mirrors the Kinode runtime's
//! `kinode/src/vfs.rs` (kinode repo v1.0.0), including its quirks: writes never create parent
//! directories, `AddZip` relies on explicit directory entries, and `ReadDir` lists paths relative
//! to the VFS root without a leading `/`.
//!
//! **The open-file cache**, as the runtime keeps it (`Files` in `vfs.rs` v1.0.0): one cache for the
//! whole node, keyed by path, of open OS handles.
//! - `OpenFile`, `WriteAll`, `Append`, `SyncAll`, `ReadToEnd`, `ReadExact`, `ReadToString`,
//!   `Seek`, `Len`, `SetLen` and `Hash` go through `Files::open_file`: a cached handle is used as
//!   it is, whatever happened to the path since; otherwise the path is opened read-write (created
//!   and truncated only for `CreateFile`), seeked to the position saved when an earlier handle of
//!   the path was evicted, and cached. So after the file at a path is replaced (removed, or its
//!   directory removed, and written anew), these actions keep answering about the old file: `Hash`
//!   its hash, `Len` its length, the reads its bytes.
//! - `Read`, `Write`, `Metadata`, `ReadDir`, `AddZip`, `CopyFile`, `Rename`, `RemoveDir` and
//!   `RemoveDirAll` use the file system directly and leave the cache as it is (a renamed or removed
//!   path's handle stays cached under its old path).
//! - Only `RemoveFile`, `CloseFile` and `CreateFile` (which then reopens) drop a path's handle;
//!   none of them forgets a saved position.
//! - Eviction (`open_file`, `close_least_recently_used_files`): when a newly cached handle makes
//!   the cache hold at least the fd limit, the VFS tells `fd-manager:distro:sys` it hit the limit
//!   and closes `limit / 2` handles in the order their paths were first cached (the runtime's
//!   `UniqueQueue` does not move a path that is used again), never the one just opened, saving
//!   each closed handle's position if it is not 0. The limit starts at 10 and is then what
//!   fd-manager sends (`fd_manager.rs`): half of `ulimit -n * 90 % - 30` shared by the four
//!   processes that ask (vfs, kv, sqlite, net), plus that half again weighted by the hits each
//!   reported. Here fd-manager's answer is taken at once, for the soft limit 1024 most systems
//!   have: 111, and 556 once the VFS hit it (the only one of the four that exists here); a test
//!   may set another limit, as fd-manager's `FdsLimit` does.
//!
//! The node owns everything around a request: it checks that the source is local, lets the
//! kernel bypass the capability check, answers only when a response is expected, and adds
//! [`VfsReply::grants`] to the caller.
//!
//! Deviations from the runtime, all of them only visible in corner cases or in time:
//! - Requests are served one at a time: no handle is ever in use by another request when the
//!   cache evicts (the runtime serves requests concurrently and skips handles in use).
//! - Files are read and written with plain blocking calls. The runtime goes through tokio, so its
//!   `Hash`, which reads 1 KiB at a time, makes a trip to tokio's blocking pool per KiB: far slower
//!   than here (BENCHMARKS.md "SHA-256 in Wasm" measures both), and slower than hashing in Wasm.
//! - `ReadDir` entries are sorted by path (the runtime returns them in the OS's order).
//! - `AddZip` refuses, with `UnzipError`, an entry whose name would leave the VFS root (the
//!   runtime writes it wherever `path.join(name)` points).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The VFS of a test node: `vfs:distro:sys` over `{home}/vfs`.
#[derive(Debug)]
pub struct Vfs {
    /// The canonical VFS root, `{home}/vfs`.
    root: PathBuf,
    /// The open-file cache.
    files: Mutex<Files>,
}

/// The runtime's open-file cache: handles by host path, the positions of evicted handles, the
/// order paths were first cached in, and the fd limit.
#[derive(Debug)]
struct Files {
    open: HashMap<PathBuf, File>,
    positions: HashMap<PathBuf, u64>,
    order: VecDeque<PathBuf>,
    ordered: HashSet<PathBuf>,
    limit: u64,
    /// Whether this VFS told fd-manager it hit its limit (fd-manager then raises it).
    hit: bool,
}

/// fd-manager's limit for the VFS before and after the VFS reported a hit (see the header).
const FDS_LIMIT: u64 = 111;
const FDS_LIMIT_AFTER_HIT: u64 = 556;

/// Who is asking, as the kernel stamps it.
pub struct VfsCaller<'a> {
    /// The caller's package name (a process may do anything in its own package's drives).
    pub package_name: &'a str,
    /// The caller's package publisher.
    pub publisher_node: &'a str,
    /// Whether the caller holds a capability issued by `our@vfs:distro:sys` with these params (the
    /// node compares params as parsed JSON, e.g. `{"kind":"read","drive":"/p:pub/pkg"}` or
    /// `{"root":true}`).
    pub has_cap: &'a dyn Fn(&Value) -> bool,
}

/// The response the VFS sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfsReply {
    /// The JSON response body, e.g. `"Ok"`, `"Read"`, `{"Err":{"IOError":"..."}}` (KINODE.md 4.3
    /// shapes, serde of process_lib's VfsResponse/VfsError).
    pub body: Vec<u8>,
    /// The blob (for `Read` etc.).
    pub blob: Option<Vec<u8>>,
    /// Capabilities (as params JSON, issuer = vfs) the node must add to the caller: `CreateDrive`
    /// grants read and write on the new drive.
    pub grants: Vec<Value>,
}

/// A request body, `{"path": .., "action": ..}`.
#[derive(Deserialize)]
struct Request {
    path: String,
    action: VfsAction,
}

/// `VfsAction` on the wire.
#[derive(Deserialize, PartialEq)]
enum VfsAction {
    CreateDrive,
    CreateDir,
    CreateDirAll,
    CreateFile,
    OpenFile { create: bool },
    CloseFile,
    Write,
    WriteAll,
    Append,
    SyncAll,
    Read,
    ReadDir,
    ReadToEnd,
    ReadExact { length: u64 },
    ReadToString,
    Seek(WireSeek),
    RemoveFile,
    RemoveDir,
    RemoveDirAll,
    Rename { new_path: String },
    Metadata,
    AddZip,
    CopyFile { new_path: String },
    Len,
    SetLen(u64),
    Hash,
}

/// `SeekFrom` on the wire.
#[derive(Deserialize, PartialEq)]
enum WireSeek {
    Start(u64),
    End(i64),
    Current(i64),
}

/// `VfsResponse` on the wire.
#[derive(Serialize)]
enum VfsResponse {
    Ok,
    Err(VfsError),
    Read,
    SeekFrom { new_offset: u64 },
    ReadDir(Vec<DirEntry>),
    ReadToString(String),
    Metadata(FileMetadata),
    Len(u64),
    Hash([u8; 32]),
}

/// `FileType` on the wire.
#[derive(Serialize)]
enum FileType {
    File,
    Directory,
    Symlink,
    Other,
}

/// `FileMetadata` on the wire.
#[derive(Serialize)]
struct FileMetadata {
    file_type: FileType,
    len: u64,
}

/// `DirEntry` on the wire.
#[derive(Serialize)]
struct DirEntry {
    path: String,
    file_type: FileType,
}

/// `VfsError` on the wire.
#[derive(Serialize, Debug)]
enum VfsError {
    NoWriteCap,
    NoReadCap,
    MalformedRequest,
    NoBlob,
    ParseError { error: String, path: String },
    IOError(String),
    UnzipError,
}

impl From<io::Error> for VfsError {
    fn from(err: io::Error) -> Self {
        VfsError::IOError(err.to_string())
    }
}

/// A VFS path taken apart: `/{package_name}:{publisher}/{drive}/rest`.
struct Target {
    package_name: String,
    publisher: String,
    /// `/{package_name}:{publisher}/{drive}`, as capabilities name it.
    drive: String,
    /// The drive's directory on disk.
    drive_dir: PathBuf,
    /// The whole path on disk.
    host: PathBuf,
}

impl Vfs {
    /// A VFS over `root` (`{home}/vfs`), which is created if missing and then canonicalised. If
    /// either fails, `root` is used as given and requests fail with `IOError`.
    pub fn new(root: PathBuf) -> Self {
        // A failure shows up as an `IOError` on the first request, as on a broken disk.
        let _ = fs::create_dir_all(&root);
        let root = fs::canonicalize(&root).unwrap_or(root);
        Self {
            root,
            files: Mutex::new(Files::new()),
        }
    }

    /// Sets the VFS's fd limit, as fd-manager's `FdsLimit` does: if the cache holds at least
    /// `limit` handles, the ones over it are closed.
    pub fn set_fds_limit(&self, limit: u64) {
        let mut files = self.files();
        files.limit = limit;
        let open = files.open.len() as u64;
        if open >= limit {
            files.close_first_cached(open - limit, None);
        }
    }

    /// Forgets every cached handle and saved position, as a runtime started again has none.
    pub fn restart(&self) {
        *self.files() = Files::new();
    }

    /// How many handles the open-file cache holds.
    pub fn open_handles(&self) -> usize {
        self.files().open.len()
    }

    /// The VFS root directory, `{home}/vfs`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of a VFS path like `/pkg:pub/drive/a/b`, or None if it is malformed or escapes the
    /// root.
    pub fn host_path(&self, vfs_path: &str) -> Option<PathBuf> {
        self.parse(vfs_path).map(|target| target.host)
    }

    /// Handles one request: `body` is the JSON `{"path": ..., "action": ...}`, `blob` the request's
    /// blob.
    pub fn handle(&self, caller: &VfsCaller<'_>, body: &[u8], blob: Option<&[u8]>) -> VfsReply {
        let mut grants = Vec::new();
        let (response, blob) = match self.serve(caller, body, blob, &mut grants) {
            Ok(reply) => reply,
            Err(err) => (VfsResponse::Err(err), None),
        };
        VfsReply {
            body: serde_json::to_vec(&response).expect("VfsResponse serialises to JSON"),
            blob,
            grants,
        }
    }

    /// Parses, checks and performs one request.
    fn serve(
        &self,
        caller: &VfsCaller<'_>,
        body: &[u8],
        blob: Option<&[u8]>,
        grants: &mut Vec<Value>,
    ) -> Result<(VfsResponse, Option<Vec<u8>>), VfsError> {
        let request: Request =
            serde_json::from_slice(body).map_err(|_| VfsError::MalformedRequest)?;

        // Listing every drive is the one request not inside a drive; it needs root.
        if request.action == VfsAction::ReadDir && request.path == "/" {
            if !(caller.has_cap)(&json!({ "root": true })) {
                return Err(VfsError::NoReadCap);
            }
            return Ok((VfsResponse::ReadDir(self.list(&self.root)?), None));
        }

        let target = self
            .parse(&request.path)
            .ok_or(VfsError::MalformedRequest)?;
        self.check_caps(caller, &request.action, &target, grants)?;
        let path = target.host.as_path();
        let ok = Ok((VfsResponse::Ok, None));

        match request.action {
            VfsAction::CreateDrive => {
                fs::create_dir_all(&target.drive_dir)?;
                ok
            }
            VfsAction::CreateDir => {
                fs::create_dir(path)?;
                ok
            }
            VfsAction::CreateDirAll => {
                fs::create_dir_all(path)?;
                ok
            }
            VfsAction::CreateFile => {
                self.drop_handle(path);
                self.with_file(path, true, true, |_| Ok(()))?;
                ok
            }
            VfsAction::OpenFile { create } => {
                self.with_file(path, create, false, |file| file.rewind())?;
                ok
            }
            VfsAction::CloseFile => {
                self.drop_handle(path);
                ok
            }
            VfsAction::Write => {
                fs::write(path, blob.ok_or(VfsError::NoBlob)?)?;
                ok
            }
            VfsAction::WriteAll => {
                let blob = blob.ok_or(VfsError::NoBlob)?;
                self.with_file(path, false, false, |file| file.write_all(blob))?;
                ok
            }
            VfsAction::Append => {
                let blob = blob.ok_or(VfsError::NoBlob)?;
                self.with_file(path, false, false, |file| {
                    file.seek(SeekFrom::End(0))?;
                    file.write_all(blob)
                })?;
                ok
            }
            VfsAction::SyncAll => {
                self.with_file(path, false, false, |file| file.sync_all())?;
                ok
            }
            VfsAction::Read => Ok((VfsResponse::Read, Some(fs::read(path)?))),
            VfsAction::ReadToEnd => {
                let bytes = self.with_file(path, false, false, |file| {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes).map(|_| bytes)
                })?;
                Ok((VfsResponse::Read, Some(bytes)))
            }
            VfsAction::ReadExact { length } => {
                let bytes = self.with_file(path, false, false, |file| {
                    // Like `read_exact` into `vec![0; length]`, without trusting `length`.
                    let mut bytes = Vec::new();
                    Read::take(&mut *file, length).read_to_end(&mut bytes)?;
                    if (bytes.len() as u64) < length {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "failed to fill whole buffer",
                        ));
                    }
                    Ok(bytes)
                })?;
                Ok((VfsResponse::Read, Some(bytes)))
            }
            VfsAction::ReadToString => {
                let text = self.with_file(path, false, false, |file| {
                    let mut text = String::new();
                    file.read_to_string(&mut text).map(|_| text)
                })?;
                Ok((VfsResponse::ReadToString(text), None))
            }
            VfsAction::ReadDir => Ok((VfsResponse::ReadDir(self.list(path)?), None)),
            VfsAction::Seek(seek) => {
                let seek = match seek {
                    WireSeek::Start(offset) => SeekFrom::Start(offset),
                    WireSeek::End(offset) => SeekFrom::End(offset),
                    WireSeek::Current(offset) => SeekFrom::Current(offset),
                };
                let new_offset = self.with_file(path, false, false, |file| file.seek(seek))?;
                Ok((VfsResponse::SeekFrom { new_offset }, None))
            }
            VfsAction::RemoveFile => {
                fs::remove_file(path)?;
                self.drop_handle(path);
                ok
            }
            VfsAction::RemoveDir => {
                fs::remove_dir(path)?;
                ok
            }
            VfsAction::RemoveDirAll => {
                fs::remove_dir_all(path)?;
                ok
            }
            VfsAction::Rename { new_path } => {
                let new = self.parse(&new_path).ok_or(VfsError::MalformedRequest)?;
                fs::rename(path, new.host)?;
                ok
            }
            VfsAction::CopyFile { new_path } => {
                let new = self.parse(&new_path).ok_or(VfsError::MalformedRequest)?;
                fs::copy(path, new.host)?;
                ok
            }
            VfsAction::Metadata => {
                let metadata = fs::metadata(path)?;
                let meta = FileMetadata {
                    file_type: file_type(&metadata),
                    len: metadata.len(),
                };
                Ok((VfsResponse::Metadata(meta), None))
            }
            VfsAction::Len => {
                let len = self
                    .with_file(path, false, false, |file| file.metadata())?
                    .len();
                Ok((VfsResponse::Len(len), None))
            }
            VfsAction::SetLen(len) => {
                self.with_file(path, false, false, |file| file.set_len(len))?;
                ok
            }
            VfsAction::Hash => {
                // The runtime hashes the whole file through its open handle, leaving the cursor
                // at the end.
                let hash = self.with_file(path, false, false, |file| {
                    file.rewind()?;
                    let mut hasher = Sha256::new();
                    let mut buffer = [0; 8192];
                    loop {
                        match file.read(&mut buffer)? {
                            0 => break,
                            n => hasher.update(&buffer[..n]),
                        }
                    }
                    Ok(hasher.finalize().into())
                })?;
                Ok((VfsResponse::Hash(hash), None))
            }
            VfsAction::AddZip => {
                self.add_zip(path, blob.ok_or(VfsError::NoBlob)?)?;
                ok
            }
        }
    }

    /// Takes a VFS path apart the way the runtime's `parse_package_and_drive` does: strip leading
    /// `/` (then `\`), join to the root, resolve `.` and `..` lexically, refuse anything outside
    /// the root, then require `{package_name}:{publisher}/{drive}`.
    fn parse(&self, vfs_path: &str) -> Option<Target> {
        let trimmed = vfs_path.trim_start_matches('/').trim_start_matches('\\');
        let host = normalize(&self.root.join(trimmed));
        let relative = host.strip_prefix(&self.root).ok()?.to_str()?;
        let mut parts = relative.split('/');
        let package = parts.next().filter(|part| !part.is_empty())?;
        let drive = parts.next()?;
        let mut segments = package.split(':');
        let (package_name, publisher) = (segments.next()?, segments.next()?);
        if segments.next().is_some() {
            return None;
        }
        Some(Target {
            package_name: package_name.to_string(),
            publisher: publisher.to_string(),
            drive: format!("/{package}/{drive}"),
            drive_dir: self.root.join(package).join(drive),
            host,
        })
    }

    /// The runtime's `check_caps`: own-package drives are free; otherwise a drive cap of the
    /// action's kind, or root. `CreateDrive` grants read and write on the drive.
    fn check_caps(
        &self,
        caller: &VfsCaller<'_>,
        action: &VfsAction,
        target: &Target,
        grants: &mut Vec<Value>,
    ) -> Result<(), VfsError> {
        let own = |t: &Target| {
            t.package_name == caller.package_name && t.publisher == caller.publisher_node
        };
        let has =
            |kind: &str, drive: &str| (caller.has_cap)(&json!({ "kind": kind, "drive": drive }));
        let root = || (caller.has_cap)(&json!({ "root": true }));
        let allowed = |kind: &str, drive: &str| has(kind, drive) || root();

        match action {
            VfsAction::CreateDir
            | VfsAction::CreateDirAll
            | VfsAction::CreateFile
            | VfsAction::OpenFile { .. }
            | VfsAction::CloseFile
            | VfsAction::Write
            | VfsAction::WriteAll
            | VfsAction::Append
            | VfsAction::SyncAll
            | VfsAction::RemoveFile
            | VfsAction::RemoveDir
            | VfsAction::RemoveDirAll
            | VfsAction::AddZip
            | VfsAction::SetLen(_) => {
                if own(target) || allowed("write", &target.drive) {
                    Ok(())
                } else {
                    Err(VfsError::NoWriteCap)
                }
            }
            VfsAction::Read
            | VfsAction::ReadDir
            | VfsAction::ReadExact { .. }
            | VfsAction::ReadToEnd
            | VfsAction::ReadToString
            | VfsAction::Seek(_)
            | VfsAction::Hash
            | VfsAction::Metadata
            | VfsAction::Len => {
                if own(target) || allowed("read", &target.drive) {
                    Ok(())
                } else {
                    Err(VfsError::NoReadCap)
                }
            }
            VfsAction::CopyFile { new_path } | VfsAction::Rename { new_path } => {
                let new = self.parse(new_path).ok_or(VfsError::MalformedRequest)?;
                if own(target) && own(&new) {
                    return Ok(());
                }
                // Otherwise both drives need write (one check if they are the same drive), even
                // the caller's own; root covers both.
                if !allowed("write", &target.drive) {
                    return Err(VfsError::NoWriteCap);
                }
                if new.drive != target.drive && !allowed("write", &new.drive) {
                    return Err(VfsError::NoWriteCap);
                }
                Ok(())
            }
            VfsAction::CreateDrive => {
                if !own(target) && !root() {
                    return Err(VfsError::NoWriteCap);
                }
                grants.push(json!({ "kind": "read", "drive": target.drive }));
                grants.push(json!({ "kind": "write", "drive": target.drive }));
                Ok(())
            }
        }
    }

    /// The entries of `dir`, named relative to the root (`pkg:pub/drive/x`), sorted by path.
    fn list(&self, dir: &Path) -> Result<Vec<DirEntry>, VfsError> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(&self.root).unwrap_or(&path);
            // `DirEntry::metadata` does not follow symlinks, like the runtime's.
            let metadata = entry.metadata()?;
            entries.push(DirEntry {
                path: relative.display().to_string(),
                file_type: file_type(&metadata),
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Unpacks `zip` into `dir` like the runtime: create `dir`, then in entry order create each
    /// directory entry (with parents) and write each file entry to `dir.join(name)` without
    /// creating its parents.
    fn add_zip(&self, dir: &Path, zip: &[u8]) -> Result<(), VfsError> {
        let mut archive =
            zip::ZipArchive::new(Cursor::new(zip)).map_err(|err| VfsError::ParseError {
                error: err.to_string(),
                path: dir.display().to_string(),
            })?;
        fs::create_dir_all(dir)?;
        for index in 0..archive.len() {
            let mut entry = archive.by_index(index).map_err(|_| VfsError::UnzipError)?;
            let name = entry.name().map_err(|_| VfsError::UnzipError)?;
            let local = dir.join(name.as_ref());
            if !normalize(&local).starts_with(&self.root) {
                return Err(VfsError::UnzipError);
            }
            if entry.is_file() {
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents)?;
                fs::write(&local, contents)?;
            } else if entry.is_dir() {
                fs::create_dir_all(&local)?;
            } else {
                return Err(VfsError::UnzipError);
            }
        }
        Ok(())
    }

    /// Runs `op` on the cached handle of `path`, opening and caching one if there is none
    /// (`Files::open_file`).
    fn with_file<T>(
        &self,
        path: &Path,
        create: bool,
        truncate: bool,
        op: impl FnOnce(&mut File) -> io::Result<T>,
    ) -> Result<T, VfsError> {
        let mut files = self.files();
        let file = files.open_file(path, create, truncate)?;
        Ok(op(file)?)
    }

    /// Drops the cached handle of `path`, if any (`Files::remove_file`).
    fn drop_handle(&self, path: &Path) {
        self.files().open.remove(path);
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Files {
    fn new() -> Files {
        Files {
            open: HashMap::new(),
            positions: HashMap::new(),
            order: VecDeque::new(),
            ordered: HashSet::new(),
            limit: FDS_LIMIT,
            hit: false,
        }
    }

    /// The cached handle of `path`, or a new one: opened read-write, at the position saved when
    /// the path's last handle was evicted, and cached; then, if the cache is full, the first
    /// cached half of the limit other than this one is closed.
    fn open_file(&mut self, path: &Path, create: bool, truncate: bool) -> io::Result<&mut File> {
        if !self.open.contains_key(path) {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(truncate)
                .open(path)?;
            if let Some(position) = self.positions.get(path) {
                file.seek(SeekFrom::Start(*position))?;
            }
            self.open.insert(path.to_path_buf(), file);
            if self.ordered.insert(path.to_path_buf()) {
                self.order.push_back(path.to_path_buf());
            }
            if self.open.len() as u64 >= self.limit {
                let to_close = self.limit / 2;
                self.close_first_cached(to_close, Some(path));
                if !self.hit {
                    self.hit = true;
                    self.limit = FDS_LIMIT_AFTER_HIT;
                }
            }
        }
        self.open
            .get_mut(path)
            .ok_or_else(|| io::Error::other("the open-file cache lost a handle it just opened"))
    }

    /// Closes up to `count` cached handles in the order their paths were first cached, skipping
    /// `in_use` (which goes to the back, as the runtime puts back a handle still in use) and
    /// saving each closed handle's position if it is not 0.
    fn close_first_cached(&mut self, count: u64, in_use: Option<&Path>) {
        let mut closed = 0;
        let mut kept = Vec::new();
        while closed < count {
            let Some(path) = self.order.pop_front() else {
                break;
            };
            self.ordered.remove(&path);
            if Some(path.as_path()) == in_use {
                kept.push(path);
                continue;
            }
            if let Some(mut file) = self.open.remove(&path) {
                if let Ok(position) = file.stream_position() {
                    if position != 0 {
                        self.positions.insert(path, position);
                    }
                }
                closed += 1;
            }
        }
        for path in kept {
            if self.ordered.insert(path.clone()) {
                self.order.push_back(path);
            }
        }
    }
}

fn file_type(metadata: &fs::Metadata) -> FileType {
    if metadata.is_file() {
        FileType::File
    } else if metadata.is_dir() {
        FileType::Directory
    } else if metadata.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::Other
    }
}

/// Resolves `.` and `..` lexically, without touching the disk (the runtime's `normalize_path`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    /// A caller in `package_name:publisher` holding exactly `caps`.
    struct Who {
        package: (&'static str, &'static str),
        caps: Vec<Value>,
    }

    fn own(package: &'static str, publisher: &'static str) -> Who {
        Who {
            package: (package, publisher),
            caps: Vec::new(),
        }
    }

    fn foreign(caps: Vec<Value>) -> Who {
        Who {
            package: ("other", "pub.os"),
            caps,
        }
    }

    fn read_cap(drive: &str) -> Value {
        json!({"kind": "read", "drive": drive})
    }

    fn write_cap(drive: &str) -> Value {
        json!({"kind": "write", "drive": drive})
    }

    fn root_cap() -> Value {
        json!({"root": true})
    }

    /// Sends `{"path", "action"}` with `blob` as `who`; returns the body as JSON, the blob and the
    /// grants.
    fn call(
        vfs: &Vfs,
        who: &Who,
        path: &str,
        action: Value,
        blob: Option<&[u8]>,
    ) -> (Value, Option<Vec<u8>>, Vec<Value>) {
        let body = serde_json::to_vec(&json!({"path": path, "action": action})).unwrap();
        call_raw(vfs, who, &body, blob)
    }

    fn call_raw(
        vfs: &Vfs,
        who: &Who,
        body: &[u8],
        blob: Option<&[u8]>,
    ) -> (Value, Option<Vec<u8>>, Vec<Value>) {
        let has_cap = |params: &Value| who.caps.contains(params);
        let caller = VfsCaller {
            package_name: who.package.0,
            publisher_node: who.package.1,
            has_cap: &has_cap,
        };
        let reply = vfs.handle(&caller, body, blob);
        let body = serde_json::from_slice(&reply.body).unwrap();
        (body, reply.blob, reply.grants)
    }

    /// Just the response body.
    fn body(vfs: &Vfs, who: &Who, path: &str, action: Value, blob: Option<&[u8]>) -> Value {
        call(vfs, who, path, action, blob).0
    }

    fn new_vfs() -> (tempfile::TempDir, Vfs) {
        let home = tempfile::tempdir().unwrap();
        let vfs = Vfs::new(home.path().join("vfs"));
        (home, vfs)
    }

    fn io_error(message: &str) -> Value {
        json!({"Err": {"IOError": message}})
    }

    const ENOENT: &str = "No such file or directory (os error 2)";

    /// A zip of `entries`: `(name, Some(bytes))` is a file, `(name, None)` a directory.
    fn zip_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o755);
        for (name, contents) in entries {
            match contents {
                Some(bytes) => {
                    zip.start_file(*name, options).unwrap();
                    zip.write_all(bytes).unwrap();
                }
                None => zip.add_directory(*name, options).unwrap(),
            }
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn new_creates_the_root_and_host_path_maps_into_it() {
        let home = tempfile::tempdir().unwrap();
        let vfs = Vfs::new(home.path().join("vfs"));
        let root = home.path().join("vfs").canonicalize().unwrap();
        assert_eq!(vfs.root(), root);
        assert_eq!(
            vfs.host_path("/app:pub.os/pkg/a/b.wasm"),
            Some(root.join("app:pub.os/pkg/a/b.wasm"))
        );
        assert_eq!(
            vfs.host_path("/app:pub.os/pkg"),
            Some(root.join("app:pub.os/pkg"))
        );
        assert_eq!(
            vfs.host_path("/app:pub.os/pkg/x/../y/./z"),
            Some(root.join("app:pub.os/pkg/y/z"))
        );
    }

    #[test]
    fn malformed_paths_and_escapes_are_refused() {
        let (_home, vfs) = new_vfs();
        for path in [
            "/",
            "",
            "/app:pub.os",
            "/nocolon/pkg/x",
            "/a:b:c/pkg/x",
            "/..",
            "/app:pub.os/../../etc/passwd",
            "/app:pub.os/pkg/../../../x/y",
        ] {
            assert_eq!(vfs.host_path(path), None, "{path}");
            let who = own("app", "pub.os");
            let reply = body(
                &vfs,
                &who,
                path,
                json!({"OpenFile": {"create": true}}),
                None,
            );
            assert_eq!(reply, json!({"Err": "MalformedRequest"}), "{path}");
        }
        // `..` that stays inside the root is resolved lexically; caps follow the resolved path.
        let who = own("app", "pub.os");
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/pkg", json!("CreateDrive"), None),
            json!("Ok")
        );
        let path = "/other:pub.os/pkg/../../app:pub.os/pkg/f";
        assert_eq!(
            body(&vfs, &who, path, json!("Write"), Some(b"x")),
            json!("Ok")
        );
        assert_eq!(fs::read(vfs.root().join("app:pub.os/pkg/f")).unwrap(), b"x");
        // Nothing was written outside the root.
        let home = vfs.root().parent().unwrap();
        assert_eq!(fs::read_dir(home).unwrap().count(), 1);
    }

    #[test]
    fn bad_json_and_unknown_actions_are_malformed() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        for raw in [
            &b"not json"[..],
            br#"{"path":"/app:pub.os/pkg"}"#,
            br#"{"path":"/app:pub.os/pkg","action":"Frobnicate"}"#,
            br#"{"path":"/app:pub.os/pkg","action":{"ReadExact":5}}"#,
        ] {
            assert_eq!(
                call_raw(&vfs, &who, raw, None).0,
                json!({"Err": "MalformedRequest"})
            );
        }
    }

    #[test]
    fn own_package_drives_need_no_caps_and_create_drive_grants() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        let (reply, blob, grants) =
            call(&vfs, &who, "/app:pub.os/data", json!("CreateDrive"), None);
        assert_eq!(reply, json!("Ok"));
        assert_eq!(blob, None);
        assert_eq!(
            grants,
            [read_cap("/app:pub.os/data"), write_cap("/app:pub.os/data")]
        );
        assert!(vfs.root().join("app:pub.os/data").is_dir());

        let path = "/app:pub.os/data/hello.txt";
        let (reply, _, grants) = call(&vfs, &who, path, json!("Write"), Some(b"hello"));
        assert_eq!((reply, grants), (json!("Ok"), vec![]));
        let (reply, blob, _) = call(&vfs, &who, path, json!("Read"), None);
        assert_eq!(reply, json!("Read"));
        assert_eq!(blob.as_deref(), Some(&b"hello"[..]));
        // Another publisher's package of the same name is foreign.
        let impostor = own("app", "evil.os");
        assert_eq!(
            body(&vfs, &impostor, path, json!("Read"), None),
            json!({"Err": "NoReadCap"})
        );
    }

    #[test]
    fn foreign_drives_need_the_matching_cap_or_root() {
        let (_home, vfs) = new_vfs();
        let owner = own("app", "pub.os");
        let drive = "/app:pub.os/data";
        let path = "/app:pub.os/data/f";
        body(&vfs, &owner, drive, json!("CreateDrive"), None);
        body(&vfs, &owner, path, json!("Write"), Some(b"v1"));

        let nobody = foreign(vec![]);
        assert_eq!(
            body(&vfs, &nobody, path, json!("Read"), None),
            json!({"Err": "NoReadCap"})
        );
        assert_eq!(
            body(&vfs, &nobody, path, json!("Metadata"), None),
            json!({"Err": "NoReadCap"})
        );
        assert_eq!(
            body(&vfs, &nobody, drive, json!("ReadDir"), None),
            json!({"Err": "NoReadCap"})
        );
        assert_eq!(
            body(&vfs, &nobody, path, json!("Write"), Some(b"x")),
            json!({"Err": "NoWriteCap"})
        );
        assert_eq!(
            body(&vfs, &nobody, drive, json!("RemoveDirAll"), None),
            json!({"Err": "NoWriteCap"})
        );
        assert!(vfs.root().join("app:pub.os/data/f").is_file());

        // A cap on another drive of the same package does not help.
        let elsewhere = foreign(vec![
            read_cap("/app:pub.os/pkg"),
            write_cap("/app:pub.os/pkg"),
        ]);
        assert_eq!(
            body(&vfs, &elsewhere, path, json!("Read"), None),
            json!({"Err": "NoReadCap"})
        );

        let reader = foreign(vec![read_cap(drive)]);
        assert_eq!(
            call(&vfs, &reader, path, json!("Read"), None).1.unwrap(),
            b"v1"
        );
        assert_eq!(
            body(&vfs, &reader, path, json!("Write"), Some(b"x")),
            json!({"Err": "NoWriteCap"})
        );

        // Write does not imply read.
        let writer = foreign(vec![write_cap(drive)]);
        assert_eq!(
            body(&vfs, &writer, path, json!("Write"), Some(b"v2")),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &writer, path, json!("Read"), None),
            json!({"Err": "NoReadCap"})
        );

        let root = foreign(vec![root_cap()]);
        assert_eq!(
            call(&vfs, &root, path, json!("Read"), None).1.unwrap(),
            b"v2"
        );
        assert_eq!(
            body(&vfs, &root, path, json!("RemoveFile"), None),
            json!("Ok")
        );
        assert!(!vfs.root().join("app:pub.os/data/f").exists());
    }

    #[test]
    fn create_drive_for_another_package_needs_root() {
        let (_home, vfs) = new_vfs();
        let drive = "/app:pub.os/pkg";
        for caps in [vec![], vec![read_cap(drive), write_cap(drive)]] {
            let (reply, _, grants) = call(&vfs, &foreign(caps), drive, json!("CreateDrive"), None);
            assert_eq!(reply, json!({"Err": "NoWriteCap"}));
            assert!(grants.is_empty());
        }
        assert!(!vfs.root().join("app:pub.os").exists());

        let installer = foreign(vec![root_cap()]);
        // Only the drive is created, whatever follows it in the path.
        let (reply, _, grants) = call(
            &vfs,
            &installer,
            "/app:pub.os/pkg/ignored",
            json!("CreateDrive"),
            None,
        );
        assert_eq!(reply, json!("Ok"));
        assert_eq!(grants, [read_cap(drive), write_cap(drive)]);
        assert!(vfs.root().join("app:pub.os/pkg").is_dir());
        assert!(!vfs.root().join("app:pub.os/pkg/ignored").exists());
        // Creating an existing drive is fine.
        assert_eq!(
            body(&vfs, &installer, drive, json!("CreateDrive"), None),
            json!("Ok")
        );
    }

    #[test]
    fn listing_all_drives_needs_root() {
        let (_home, vfs) = new_vfs();
        body(
            &vfs,
            &own("b", "pub.os"),
            "/b:pub.os/pkg",
            json!("CreateDrive"),
            None,
        );
        body(
            &vfs,
            &own("a", "pub.os"),
            "/a:pub.os/pkg",
            json!("CreateDrive"),
            None,
        );
        // Not even a package's own caps or own-package status list "/".
        let plain = own("a", "pub.os");
        assert_eq!(
            body(&vfs, &plain, "/", json!("ReadDir"), None),
            json!({"Err": "NoReadCap"})
        );
        let root = foreign(vec![root_cap()]);
        assert_eq!(
            body(&vfs, &root, "/", json!("ReadDir"), None),
            json!({"ReadDir": [
                {"path": "a:pub.os", "file_type": "Directory"},
                {"path": "b:pub.os", "file_type": "Directory"},
            ]})
        );
    }

    #[test]
    fn read_dir_lists_paths_relative_to_the_root() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        body(&vfs, &who, "/app:pub.os/pkg", json!("CreateDrive"), None);
        body(
            &vfs,
            &who,
            "/app:pub.os/pkg/manifest.json",
            json!("Write"),
            Some(b"[]"),
        );
        body(&vfs, &who, "/app:pub.os/pkg/api", json!("CreateDir"), None);
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/pkg", json!("ReadDir"), None),
            json!({"ReadDir": [
                {"path": "app:pub.os/pkg/api", "file_type": "Directory"},
                {"path": "app:pub.os/pkg/manifest.json", "file_type": "File"},
            ]})
        );
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/pkg/api", json!("ReadDir"), None),
            json!({"ReadDir": []})
        );
        assert_eq!(
            body(
                &vfs,
                &who,
                "/app:pub.os/pkg/missing",
                json!("ReadDir"),
                None
            ),
            io_error(ENOENT)
        );
        assert_eq!(
            body(
                &vfs,
                &who,
                "/app:pub.os/pkg/manifest.json",
                json!("ReadDir"),
                None
            ),
            io_error("Not a directory (os error 20)")
        );
    }

    #[test]
    fn metadata_and_len() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        body(&vfs, &who, "/app:pub.os/pkg", json!("CreateDrive"), None);
        let path = "/app:pub.os/pkg/f.wasm";
        assert_eq!(
            body(&vfs, &who, path, json!("Metadata"), None),
            io_error(ENOENT)
        );
        body(&vfs, &who, path, json!("Write"), Some(b"12345"));
        assert_eq!(
            body(&vfs, &who, path, json!("Metadata"), None),
            json!({"Metadata": {"file_type": "File", "len": 5}})
        );
        let dir = body(&vfs, &who, "/app:pub.os/pkg", json!("Metadata"), None);
        assert_eq!(dir["Metadata"]["file_type"], json!("Directory"));
        assert_eq!(
            body(&vfs, &who, path, json!("Len"), None),
            json!({"Len": 5})
        );
        assert_eq!(
            body(&vfs, &who, path, json!({"SetLen": 2}), None),
            json!("Ok")
        );
        assert_eq!(fs::read(vfs.host_path(path).unwrap()).unwrap(), b"12");
    }

    #[test]
    fn write_needs_a_blob_and_an_existing_parent() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        let path = "/app:pub.os/pkg/f";
        // No drive yet: Write does not create parents.
        assert_eq!(
            body(&vfs, &who, path, json!("Write"), Some(b"x")),
            io_error(ENOENT)
        );
        body(&vfs, &who, "/app:pub.os/pkg", json!("CreateDrive"), None);
        for action in ["Write", "WriteAll", "Append", "AddZip"] {
            assert_eq!(
                body(&vfs, &who, path, json!(action), None),
                json!({"Err": "NoBlob"})
            );
        }
        assert_eq!(
            body(
                &vfs,
                &who,
                "/app:pub.os/pkg/a/b/f",
                json!("Write"),
                Some(b"x")
            ),
            io_error(ENOENT)
        );
        assert_eq!(
            body(&vfs, &who, path, json!("Write"), Some(b"long text")),
            json!("Ok")
        );
        // Write truncates.
        assert_eq!(
            body(&vfs, &who, path, json!("Write"), Some(b"short")),
            json!("Ok")
        );
        assert_eq!(fs::read(vfs.host_path(path).unwrap()).unwrap(), b"short");
        assert_eq!(
            body(&vfs, &who, path, json!("Append"), Some(b"!")),
            json!("Ok")
        );
        // Append leaves the cursor at the end, as the runtime's open handle does.
        assert_eq!(
            body(&vfs, &who, path, json!("ReadToString"), None),
            json!({"ReadToString": ""})
        );
        assert_eq!(fs::read(vfs.host_path(path).unwrap()).unwrap(), b"short!");
        // CreateDirAll creates parents, CreateDir does not.
        let deep = "/app:pub.os/pkg/x/y";
        assert_eq!(
            body(&vfs, &who, deep, json!("CreateDir"), None),
            io_error(ENOENT)
        );
        assert_eq!(
            body(&vfs, &who, deep, json!("CreateDirAll"), None),
            json!("Ok")
        );
        assert!(vfs.host_path(deep).unwrap().is_dir());
    }

    #[test]
    fn remove_actions() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        let drive = "/app:pub.os/pkg";
        assert_eq!(
            body(&vfs, &who, drive, json!("RemoveDirAll"), None),
            io_error(ENOENT)
        );
        body(&vfs, &who, drive, json!("CreateDrive"), None);
        body(
            &vfs,
            &who,
            "/app:pub.os/pkg/d/e",
            json!("CreateDirAll"),
            None,
        );
        body(
            &vfs,
            &who,
            "/app:pub.os/pkg/d/e/f",
            json!("Write"),
            Some(b"x"),
        );
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/pkg/d", json!("RemoveDir"), None),
            io_error("Directory not empty (os error 39)")
        );
        assert_eq!(
            body(
                &vfs,
                &who,
                "/app:pub.os/pkg/d/e/f",
                json!("RemoveFile"),
                None
            ),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/pkg/d/e", json!("RemoveDir"), None),
            json!("Ok")
        );
        body(&vfs, &who, "/app:pub.os/pkg/g", json!("Write"), Some(b"x"));
        assert_eq!(
            body(&vfs, &who, drive, json!("RemoveDirAll"), None),
            json!("Ok")
        );
        assert!(!vfs.root().join("app:pub.os/pkg").exists());
        assert!(vfs.root().join("app:pub.os").is_dir());
    }

    #[test]
    fn install_flow_create_drive_remove_add_zip_write_read() {
        let (_home, vfs) = new_vfs();
        let installer = Who {
            package: ("app-store", "sys"),
            caps: vec![root_cap()],
        };
        let drive = "/app:pub.os/pkg";
        // A kit-style zip: sorted, directory entries first.
        let zip = zip_of(&[
            ("api/", None),
            ("api/app:pub.os-v0.wit", Some(b"package app:pub;")),
            ("app.wasm", Some(b"\0asm")),
            ("manifest.json", Some(b"[]")),
            ("ui/", None),
            ("ui/assets/", None),
            ("ui/assets/index.js", Some(b"js")),
        ]);
        // A stale file from an earlier install disappears.
        let (reply, _, grants) = call(&vfs, &installer, drive, json!("CreateDrive"), None);
        assert_eq!(reply, json!("Ok"));
        assert_eq!(grants, [read_cap(drive), write_cap(drive)]);
        body(
            &vfs,
            &installer,
            "/app:pub.os/pkg/stale",
            json!("Write"),
            Some(b"old"),
        );
        assert_eq!(
            body(&vfs, &installer, drive, json!("RemoveDirAll"), None),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &installer, drive, json!("AddZip"), Some(&zip)),
            json!("Ok")
        );
        let zip_path = "/app:pub.os/pkg/app:pub.os.zip";
        assert_eq!(
            body(&vfs, &installer, zip_path, json!("Write"), Some(&zip)),
            json!("Ok")
        );

        let on_disk = vfs.root().join("app:pub.os/pkg");
        assert!(!on_disk.join("stale").exists());
        assert_eq!(fs::read(on_disk.join("app.wasm")).unwrap(), b"\0asm");
        assert_eq!(
            fs::read(on_disk.join("api/app:pub.os-v0.wit")).unwrap(),
            b"package app:pub;"
        );
        assert_eq!(fs::read(on_disk.join("ui/assets/index.js")).unwrap(), b"js");
        assert_eq!(fs::read(on_disk.join("app:pub.os.zip")).unwrap(), zip);

        let (reply, blob, _) = call(
            &vfs,
            &installer,
            "/app:pub.os/pkg/app.wasm",
            json!("Read"),
            None,
        );
        assert_eq!((reply, blob.unwrap()), (json!("Read"), b"\0asm".to_vec()));
        // The processes themselves get the drive caps, which are enough to read it.
        let process = foreign(vec![read_cap(drive)]);
        let (reply, blob, _) = call(
            &vfs,
            &process,
            "/app:pub.os/pkg/manifest.json",
            json!("Read"),
            None,
        );
        assert_eq!((reply, blob.unwrap()), (json!("Read"), b"[]".to_vec()));

        // AddZip into a directory that does not exist yet creates it (extract_api).
        let api = zip_of(&[
            ("app:pub.os-v0.wit", Some(b"wit")),
            ("app.wasm", Some(b"w")),
        ]);
        let (reply, _, _) = call(
            &vfs,
            &installer,
            "/app:pub.os/pkg/api2",
            json!("AddZip"),
            Some(&api),
        );
        assert_eq!(reply, json!("Ok"));
        assert_eq!(fs::read(on_disk.join("api2/app.wasm")).unwrap(), b"w");
    }

    #[test]
    fn add_zip_without_directory_entries_fails_midway() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        let zip = zip_of(&[("a.txt", Some(b"a")), ("ui/index.html", Some(b"<p>"))]);
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/pkg", json!("AddZip"), Some(&zip)),
            io_error(ENOENT)
        );
        // Entries before the failing one were written.
        let on_disk = vfs.root().join("app:pub.os/pkg");
        assert_eq!(fs::read(on_disk.join("a.txt")).unwrap(), b"a");
        assert!(!on_disk.join("ui").exists());
    }

    #[test]
    fn add_zip_refuses_bad_zips_foreign_callers_and_escaping_entries() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        let drive = "/app:pub.os/pkg";
        let reply = body(&vfs, &who, drive, json!("AddZip"), Some(b"not a zip"));
        let err = &reply["Err"]["ParseError"];
        assert_eq!(
            err["path"],
            json!(vfs.root().join("app:pub.os/pkg").display().to_string())
        );
        assert!(err["error"].as_str().unwrap().contains("EOCD"), "{reply}");

        let zip = zip_of(&[("a.txt", Some(b"a"))]);
        let nobody = foreign(vec![read_cap(drive)]);
        assert_eq!(
            body(&vfs, &nobody, drive, json!("AddZip"), Some(&zip)),
            json!({"Err": "NoWriteCap"})
        );
        assert!(!vfs.root().join("app:pub.os").exists());

        // Names with `..` are used as they are, as long as they stay inside the VFS root.
        let inside = zip_of(&[("../pkg2/", None), ("../pkg2/x", Some(b"x"))]);
        assert_eq!(
            body(&vfs, &who, drive, json!("AddZip"), Some(&inside)),
            json!("Ok")
        );
        assert_eq!(
            fs::read(vfs.root().join("app:pub.os/pkg2/x")).unwrap(),
            b"x"
        );
        let escaping = zip_of(&[("../../../evil", Some(b"x"))]);
        assert_eq!(
            body(&vfs, &who, drive, json!("AddZip"), Some(&escaping)),
            json!({"Err": "UnzipError"})
        );
        let home = vfs.root().parent().unwrap();
        assert!(!home.join("evil").exists());
        assert!(!home.parent().unwrap().join("evil").exists());
    }

    #[test]
    fn rename_and_copy_check_both_drives() {
        let (_home, vfs) = new_vfs();
        let owner = own("app", "pub.os");
        body(&vfs, &owner, "/app:pub.os/a", json!("CreateDrive"), None);
        body(&vfs, &owner, "/app:pub.os/b", json!("CreateDrive"), None);
        body(&vfs, &owner, "/app:pub.os/a/f", json!("Write"), Some(b"f"));
        // Within the own package: free.
        let copy = json!({"CopyFile": {"new_path": "/app:pub.os/b/g"}});
        assert_eq!(
            body(&vfs, &owner, "/app:pub.os/a/f", copy, None),
            json!("Ok")
        );
        assert_eq!(fs::read(vfs.root().join("app:pub.os/b/g")).unwrap(), b"f");

        let rename = json!({"Rename": {"new_path": "/app:pub.os/b/h"}});
        let one = foreign(vec![write_cap("/app:pub.os/a")]);
        assert_eq!(
            body(&vfs, &one, "/app:pub.os/a/f", rename.clone(), None),
            json!({"Err": "NoWriteCap"})
        );
        let other = foreign(vec![write_cap("/app:pub.os/b")]);
        assert_eq!(
            body(&vfs, &other, "/app:pub.os/a/f", rename.clone(), None),
            json!({"Err": "NoWriteCap"})
        );
        // Read caps do not count.
        let readers = foreign(vec![read_cap("/app:pub.os/a"), read_cap("/app:pub.os/b")]);
        assert_eq!(
            body(&vfs, &readers, "/app:pub.os/a/f", rename.clone(), None),
            json!({"Err": "NoWriteCap"})
        );
        let both = foreign(vec![write_cap("/app:pub.os/a"), write_cap("/app:pub.os/b")]);
        assert_eq!(
            body(&vfs, &both, "/app:pub.os/a/f", rename, None),
            json!("Ok")
        );
        assert!(!vfs.root().join("app:pub.os/a/f").exists());
        assert_eq!(fs::read(vfs.root().join("app:pub.os/b/h")).unwrap(), b"f");

        // Same drive: one write cap is enough.
        let same = json!({"Rename": {"new_path": "/app:pub.os/a/i"}});
        assert_eq!(
            body(&vfs, &one, "/app:pub.os/b/h", same.clone(), None),
            json!({"Err": "NoWriteCap"})
        );
        let root = foreign(vec![root_cap()]);
        assert_eq!(
            body(&vfs, &root, "/app:pub.os/b/h", same, None),
            json!("Ok")
        );

        // Moving out of the own package needs a write cap on the own drive too (runtime quirk).
        let out = json!({"CopyFile": {"new_path": "/other:pub.os/x/i"}});
        let owner_with = Who {
            package: ("app", "pub.os"),
            caps: vec![write_cap("/other:pub.os/x")],
        };
        assert_eq!(
            body(&vfs, &owner_with, "/app:pub.os/a/i", out, None),
            json!({"Err": "NoWriteCap"})
        );

        let bad = json!({"Rename": {"new_path": "/../x"}});
        assert_eq!(
            body(&vfs, &owner, "/app:pub.os/a/i", bad, None),
            json!({"Err": "MalformedRequest"})
        );
        let missing = json!({"CopyFile": {"new_path": "/app:pub.os/a/j"}});
        assert_eq!(
            body(&vfs, &owner, "/app:pub.os/a/none", missing, None),
            io_error(ENOENT)
        );
    }

    #[test]
    fn cursor_actions_share_the_cached_handle_of_a_path() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        body(&vfs, &who, "/app:pub.os/d", json!("CreateDrive"), None);
        let path = "/app:pub.os/d/f";
        let open = json!({"OpenFile": {"create": false}});
        assert_eq!(body(&vfs, &who, path, open, None), io_error(ENOENT));
        assert_eq!(
            body(&vfs, &who, path, json!("CreateFile"), None),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &who, path, json!("WriteAll"), Some(b"hello")),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &who, path, json!("WriteAll"), Some(b" world")),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &who, path, json!({"Seek": {"Start": 6}}), None),
            json!({"SeekFrom": {"new_offset": 6}})
        );
        let (reply, blob, _) = call(&vfs, &who, path, json!({"ReadExact": {"length": 3}}), None);
        assert_eq!((reply, blob.unwrap()), (json!("Read"), b"wor".to_vec()));
        let (reply, blob, _) = call(&vfs, &who, path, json!("ReadToEnd"), None);
        assert_eq!((reply, blob.unwrap()), (json!("Read"), b"ld".to_vec()));
        assert_eq!(
            body(&vfs, &who, path, json!({"Seek": {"End": -5}}), None),
            json!({"SeekFrom": {"new_offset": 6}})
        );
        assert_eq!(
            body(&vfs, &who, path, json!({"Seek": {"Current": -1}}), None),
            json!({"SeekFrom": {"new_offset": 5}})
        );
        assert_eq!(
            body(&vfs, &who, path, json!({"Seek": {"Current": -10}}), None),
            io_error("Invalid argument (os error 22)")
        );
        assert_eq!(
            body(
                &vfs,
                &who,
                path,
                json!({"ReadExact": {"length": 100}}),
                None
            ),
            io_error("failed to fill whole buffer")
        );
        // OpenFile rewinds; CloseFile forgets the cursor.
        body(
            &vfs,
            &who,
            path,
            json!({"OpenFile": {"create": false}}),
            None,
        );
        assert_eq!(
            body(&vfs, &who, path, json!("ReadToString"), None),
            json!({"ReadToString": "hello world"})
        );
        body(&vfs, &who, path, json!("CloseFile"), None);
        let (_, blob, _) = call(&vfs, &who, path, json!({"ReadExact": {"length": 5}}), None);
        assert_eq!(blob.unwrap(), b"hello");
        // Read ignores the cursor; CreateFile truncates.
        assert_eq!(
            call(&vfs, &who, path, json!("Read"), None).1.unwrap(),
            b"hello world"
        );
        assert_eq!(
            body(&vfs, &who, path, json!("CreateFile"), None),
            json!("Ok")
        );
        assert_eq!(
            body(&vfs, &who, path, json!("Len"), None),
            json!({"Len": 0})
        );
        let created = json!({"OpenFile": {"create": true}});
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/d/new", created, None),
            json!("Ok")
        );
        assert!(vfs.root().join("app:pub.os/d/new").is_file());
        assert_eq!(body(&vfs, &who, path, json!("SyncAll"), None), json!("Ok"));
    }

    #[test]
    fn hash_is_sha256_of_the_whole_file() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        body(&vfs, &who, "/app:pub.os/d", json!("CreateDrive"), None);
        let path = "/app:pub.os/d/f";
        body(&vfs, &who, path, json!("Write"), Some(b"abc"));
        // Whatever the cursor, the whole file is hashed.
        body(&vfs, &who, path, json!({"Seek": {"Start": 2}}), None);
        let expected: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            json!({"Hash": expected})
        );
        assert_eq!(
            body(&vfs, &who, "/app:pub.os/d/none", json!("Hash"), None),
            io_error(ENOENT)
        );
        assert_eq!(
            body(&vfs, &foreign(vec![]), path, json!("Hash"), None),
            json!({"Err": "NoReadCap"})
        );
    }

    fn hash_of(bytes: &[u8]) -> Value {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        json!({ "Hash": hash })
    }

    #[test]
    fn a_replaced_file_keeps_its_cached_handle_as_in_the_runtime() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        let drive = "/app:pub.os/pkg";
        let path = "/app:pub.os/pkg/app.zip";
        body(&vfs, &who, drive, json!("CreateDrive"), None);
        body(&vfs, &who, path, json!("Write"), Some(b"version one"));
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            hash_of(b"version one")
        );

        // The app store's install: RemoveDirAll, AddZip (here CreateDirAll), Write.
        body(&vfs, &who, drive, json!("RemoveDirAll"), None);
        body(&vfs, &who, drive, json!("CreateDirAll"), None);
        body(&vfs, &who, path, json!("Write"), Some(b"version 2"));
        // Direct actions see the new file; cached ones the old one.
        assert_eq!(
            call(&vfs, &who, path, json!("Read"), None).1.unwrap(),
            b"version 2"
        );
        assert_eq!(
            body(&vfs, &who, path, json!("Metadata"), None),
            json!({"Metadata": {"file_type": "File", "len": 9}})
        );
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            hash_of(b"version one")
        );
        assert_eq!(
            body(&vfs, &who, path, json!("Len"), None),
            json!({"Len": 11})
        );
        body(&vfs, &who, path, json!({"Seek": {"Start": 0}}), None);
        let (_, blob, _) = call(&vfs, &who, path, json!("ReadToEnd"), None);
        assert_eq!(blob.unwrap(), b"version one");

        // CloseFile drops the handle: the next cached action opens the file now at the path.
        body(&vfs, &who, path, json!("CloseFile"), None);
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            hash_of(b"version 2")
        );

        // Rename leaves the handle under the old path; RemoveFile drops it.
        let moved = "/app:pub.os/pkg/moved.zip";
        let rename = json!({"Rename": {"new_path": moved}});
        body(&vfs, &who, path, rename, None);
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            hash_of(b"version 2")
        );
        assert_eq!(
            call(&vfs, &who, path, json!("Read"), None).0,
            io_error(ENOENT)
        );
        body(&vfs, &who, path, json!("Write"), Some(b"three"));
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            hash_of(b"version 2")
        );
        body(&vfs, &who, path, json!("RemoveFile"), None);
        assert_eq!(
            body(&vfs, &who, path, json!("Hash"), None),
            io_error(ENOENT)
        );
        assert_eq!(vfs.open_handles(), 0);

        // A write in place (the path not removed first) goes to the same file, so it is seen.
        body(&vfs, &who, moved, json!("Hash"), None);
        body(&vfs, &who, moved, json!("Write"), Some(b"in place"));
        assert_eq!(
            body(&vfs, &who, moved, json!("Hash"), None),
            hash_of(b"in place")
        );
    }

    #[test]
    fn the_fd_limit_evicts_the_first_cached_half_and_saves_their_positions() {
        let (_home, vfs) = new_vfs();
        let who = own("app", "pub.os");
        body(&vfs, &who, "/app:pub.os/d", json!("CreateDrive"), None);
        vfs.set_fds_limit(4);
        let path = |n: usize| format!("/app:pub.os/d/{n}");
        for n in 0..3 {
            body(&vfs, &who, &path(n), json!("Write"), Some(b"0123456789"));
            body(
                &vfs,
                &who,
                &path(n),
                json!({"Seek": {"Start": 2 + n}}),
                None,
            );
        }
        assert_eq!(vfs.open_handles(), 3);
        // The 0th is used again: the runtime does not move it to the back.
        body(&vfs, &who, &path(0), json!("Len"), None);
        // The 4th handle reaches the limit: the first two cached (0 and 1) are closed.
        body(&vfs, &who, &path(3), json!("Write"), Some(b"0123456789"));
        body(&vfs, &who, &path(3), json!("Len"), None);
        assert_eq!(vfs.open_handles(), 2);
        // Replace 0 and 2: the evicted 0 is seen anew, the cached 2 is not.
        for n in [0, 2] {
            body(&vfs, &who, &path(n), json!("RemoveFile"), None);
            body(&vfs, &who, &path(n), json!("Write"), Some(b"abcdefghij"));
        }
        // Evicted handles come back at their saved positions.
        let (_, blob, _) = call(
            &vfs,
            &who,
            &path(0),
            json!({"ReadExact": {"length": 2}}),
            None,
        );
        assert_eq!(blob.unwrap(), b"cd");
        body(&vfs, &who, &path(1), json!("Len"), None);
        let (_, blob, _) = call(
            &vfs,
            &who,
            &path(1),
            json!({"ReadExact": {"length": 1}}),
            None,
        );
        assert_eq!(blob.unwrap(), b"3");
        // 2 was dropped by RemoveFile, so it is fresh at 0; fd-manager raised the limit.
        let (_, blob, _) = call(
            &vfs,
            &who,
            &path(2),
            json!({"ReadExact": {"length": 1}}),
            None,
        );
        assert_eq!(blob.unwrap(), b"a");
        assert_eq!(vfs.open_handles(), 4);
    }
}
