//! The VFS of a test node: `vfs:distro:sys` served synchronously over `{home}/vfs`.
//!
//! This module owns the VFS wire format (KINODE.md 4.3), path parsing, the capability rules
//! (KINODE.md 4.5) and every action's effect on disk. It mirrors the Kinode runtime's
//! `kinode/src/vfs.rs` (kinode repo, the version whose errors are `NoReadCap`/`NoWriteCap`/...),
//! including its quirks: writes never create parent directories, `AddZip` relies on explicit
//! directory entries, and `ReadDir` lists paths relative to the VFS root without a leading `/`.
//!
//! The node owns everything around a request: it checks that the source is local, lets the
//! kernel bypass the capability check, answers only when a response is expected, and adds
//! [`VfsReply::grants`] to the caller.
//!
//! Deviations from the runtime, all of them only visible in corner cases:
//! - File cursors (`OpenFile`, `WriteAll`, `Seek`, `ReadExact`, ...) are kept per path, not per
//!   open OS handle: each request reopens the file and seeks to the stored cursor. Removing or
//!   renaming a path forgets the cursors at and under it.
//! - `ReadDir` entries are sorted by path (the runtime returns them in the OS's order).
//! - `AddZip` refuses, with `UnzipError`, an entry whose name would leave the VFS root (the
//!   runtime writes it wherever `path.join(name)` points).

use std::collections::HashMap;
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
    /// Cursor of every file a cursor-based action has opened, by host path.
    cursors: Mutex<HashMap<PathBuf, u64>>,
}

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
    action: Action,
}

/// `VfsAction`, as serde spells it on the wire.
#[derive(Deserialize, PartialEq)]
enum Action {
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
enum Response {
    Ok,
    Err(Error),
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
enum Error {
    NoWriteCap,
    NoReadCap,
    MalformedRequest,
    NoBlob,
    ParseError { error: String, path: String },
    IOError(String),
    UnzipError,
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::IOError(err.to_string())
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
            cursors: Mutex::new(HashMap::new()),
        }
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
            Err(err) => (Response::Err(err), None),
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
    ) -> Result<(Response, Option<Vec<u8>>), Error> {
        let request: Request = serde_json::from_slice(body).map_err(|_| Error::MalformedRequest)?;

        // Listing every drive is the one request not inside a drive; it needs root.
        if request.action == Action::ReadDir && request.path == "/" {
            if !(caller.has_cap)(&json!({ "root": true })) {
                return Err(Error::NoReadCap);
            }
            return Ok((Response::ReadDir(self.list(&self.root)?), None));
        }

        let target = self.parse(&request.path).ok_or(Error::MalformedRequest)?;
        self.check_caps(caller, &request.action, &target, grants)?;
        let path = target.host.as_path();
        let ok = Ok((Response::Ok, None));

        match request.action {
            Action::CreateDrive => {
                fs::create_dir_all(&target.drive_dir)?;
                ok
            }
            Action::CreateDir => {
                fs::create_dir(path)?;
                ok
            }
            Action::CreateDirAll => {
                fs::create_dir_all(path)?;
                ok
            }
            Action::CreateFile => {
                self.forget(path);
                self.with_file(path, true, true, |_| Ok(()))?;
                ok
            }
            Action::OpenFile { create } => {
                self.with_file(path, create, false, |file| file.rewind())?;
                ok
            }
            Action::CloseFile => {
                self.forget(path);
                ok
            }
            Action::Write => {
                fs::write(path, blob.ok_or(Error::NoBlob)?)?;
                ok
            }
            Action::WriteAll => {
                let blob = blob.ok_or(Error::NoBlob)?;
                self.with_file(path, false, false, |file| file.write_all(blob))?;
                ok
            }
            Action::Append => {
                let blob = blob.ok_or(Error::NoBlob)?;
                self.with_file(path, false, false, |file| {
                    file.seek(SeekFrom::End(0))?;
                    file.write_all(blob)
                })?;
                ok
            }
            Action::SyncAll => {
                self.with_file(path, false, false, |file| file.sync_all())?;
                ok
            }
            Action::Read => Ok((Response::Read, Some(fs::read(path)?))),
            Action::ReadToEnd => {
                let bytes = self.with_file(path, false, false, |file| {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes).map(|_| bytes)
                })?;
                Ok((Response::Read, Some(bytes)))
            }
            Action::ReadExact { length } => {
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
                Ok((Response::Read, Some(bytes)))
            }
            Action::ReadToString => {
                let text = self.with_file(path, false, false, |file| {
                    let mut text = String::new();
                    file.read_to_string(&mut text).map(|_| text)
                })?;
                Ok((Response::ReadToString(text), None))
            }
            Action::ReadDir => Ok((Response::ReadDir(self.list(path)?), None)),
            Action::Seek(seek) => {
                let seek = match seek {
                    WireSeek::Start(offset) => SeekFrom::Start(offset),
                    WireSeek::End(offset) => SeekFrom::End(offset),
                    WireSeek::Current(offset) => SeekFrom::Current(offset),
                };
                let new_offset = self.with_file(path, false, false, |file| file.seek(seek))?;
                Ok((Response::SeekFrom { new_offset }, None))
            }
            Action::RemoveFile => {
                fs::remove_file(path)?;
                self.forget(path);
                ok
            }
            Action::RemoveDir => {
                fs::remove_dir(path)?;
                self.forget(path);
                ok
            }
            Action::RemoveDirAll => {
                fs::remove_dir_all(path)?;
                self.forget(path);
                ok
            }
            Action::Rename { new_path } => {
                let new = self.parse(&new_path).ok_or(Error::MalformedRequest)?;
                fs::rename(path, new.host)?;
                self.forget(path);
                ok
            }
            Action::CopyFile { new_path } => {
                let new = self.parse(&new_path).ok_or(Error::MalformedRequest)?;
                fs::copy(path, new.host)?;
                ok
            }
            Action::Metadata => {
                let metadata = fs::metadata(path)?;
                let meta = FileMetadata {
                    file_type: file_type(&metadata),
                    len: metadata.len(),
                };
                Ok((Response::Metadata(meta), None))
            }
            Action::Len => {
                let len = self
                    .with_file(path, false, false, |file| file.metadata())?
                    .len();
                Ok((Response::Len(len), None))
            }
            Action::SetLen(len) => {
                self.with_file(path, false, false, |file| file.set_len(len))?;
                ok
            }
            Action::Hash => {
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
                Ok((Response::Hash(hash), None))
            }
            Action::AddZip => {
                self.add_zip(path, blob.ok_or(Error::NoBlob)?)?;
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
        action: &Action,
        target: &Target,
        grants: &mut Vec<Value>,
    ) -> Result<(), Error> {
        let own = |t: &Target| {
            t.package_name == caller.package_name && t.publisher == caller.publisher_node
        };
        let has =
            |kind: &str, drive: &str| (caller.has_cap)(&json!({ "kind": kind, "drive": drive }));
        let root = || (caller.has_cap)(&json!({ "root": true }));
        let allowed = |kind: &str, drive: &str| has(kind, drive) || root();

        match action {
            Action::CreateDir
            | Action::CreateDirAll
            | Action::CreateFile
            | Action::OpenFile { .. }
            | Action::CloseFile
            | Action::Write
            | Action::WriteAll
            | Action::Append
            | Action::SyncAll
            | Action::RemoveFile
            | Action::RemoveDir
            | Action::RemoveDirAll
            | Action::AddZip
            | Action::SetLen(_) => {
                if own(target) || allowed("write", &target.drive) {
                    Ok(())
                } else {
                    Err(Error::NoWriteCap)
                }
            }
            Action::Read
            | Action::ReadDir
            | Action::ReadExact { .. }
            | Action::ReadToEnd
            | Action::ReadToString
            | Action::Seek(_)
            | Action::Hash
            | Action::Metadata
            | Action::Len => {
                if own(target) || allowed("read", &target.drive) {
                    Ok(())
                } else {
                    Err(Error::NoReadCap)
                }
            }
            Action::CopyFile { new_path } | Action::Rename { new_path } => {
                let new = self.parse(new_path).ok_or(Error::MalformedRequest)?;
                if own(target) && own(&new) {
                    return Ok(());
                }
                // Otherwise both drives need write (one check if they are the same drive), even
                // the caller's own; root covers both.
                if !allowed("write", &target.drive) {
                    return Err(Error::NoWriteCap);
                }
                if new.drive != target.drive && !allowed("write", &new.drive) {
                    return Err(Error::NoWriteCap);
                }
                Ok(())
            }
            Action::CreateDrive => {
                if !own(target) && !root() {
                    return Err(Error::NoWriteCap);
                }
                grants.push(json!({ "kind": "read", "drive": target.drive }));
                grants.push(json!({ "kind": "write", "drive": target.drive }));
                Ok(())
            }
        }
    }

    /// The entries of `dir`, named relative to the root (`pkg:pub/drive/x`), sorted by path.
    fn list(&self, dir: &Path) -> Result<Vec<DirEntry>, Error> {
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
    fn add_zip(&self, dir: &Path, zip: &[u8]) -> Result<(), Error> {
        let mut archive =
            zip::ZipArchive::new(Cursor::new(zip)).map_err(|err| Error::ParseError {
                error: err.to_string(),
                path: dir.display().to_string(),
            })?;
        fs::create_dir_all(dir)?;
        for index in 0..archive.len() {
            let mut entry = archive.by_index(index).map_err(|_| Error::UnzipError)?;
            let name = entry.name().map_err(|_| Error::UnzipError)?;
            let local = dir.join(name.as_ref());
            if !normalize(&local).starts_with(&self.root) {
                return Err(Error::UnzipError);
            }
            if entry.is_file() {
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents)?;
                fs::write(&local, contents)?;
            } else if entry.is_dir() {
                fs::create_dir_all(&local)?;
            } else {
                return Err(Error::UnzipError);
            }
        }
        Ok(())
    }

    /// Opens `path` read-write as the runtime does, at its stored cursor, runs `op`, and stores
    /// where the cursor ended (also when `op` failed).
    fn with_file<T>(
        &self,
        path: &Path,
        create: bool,
        truncate: bool,
        op: impl FnOnce(&mut File) -> io::Result<T>,
    ) -> Result<T, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(truncate)
            .open(path)?;
        let mut cursors = self.cursors();
        let start = cursors.get(path).copied().unwrap_or(0);
        file.seek(SeekFrom::Start(start))?;
        let result = op(&mut file);
        if let Ok(position) = file.stream_position() {
            cursors.insert(path.to_path_buf(), position);
        }
        Ok(result?)
    }

    /// Forgets the cursors at and under `path`.
    fn forget(&self, path: &Path) {
        self.cursors().retain(|open, _| !open.starts_with(path));
    }

    fn cursors(&self) -> MutexGuard<'_, HashMap<PathBuf, u64>> {
        self.cursors.lock().unwrap_or_else(PoisonError::into_inner)
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
