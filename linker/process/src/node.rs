//! Talking to the node: VFS actions and kernel commands, each awaited, each failure a
//! [`StepFailure`] naming the step (`AddZip /app:pub/pkg`) and what the service answered.

use kinode_process_lib::kernel_types::{KernelCommand, KernelResponse};
use kinode_process_lib::vfs::{DirEntry, FileType, VfsAction, VfsRequest, VfsResponse};
use kinode_process_lib::{get_blob, Address, Message, Request};

use crate::api::StepFailure;

/// Seconds to wait for the VFS or the kernel (the app store waits 10 s; large zips need longer).
const TIMEOUT: u64 = 30;

fn failure(step: String, reason: impl std::fmt::Display) -> StepFailure {
    StepFailure {
        step,
        reason: reason.to_string(),
    }
}

/// A short name for an action in step names, e.g. `AddZip`.
fn action_name(action: &VfsAction) -> String {
    match serde_json::to_value(action) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Sends one VFS request and returns its response and blob; an `Err` response is a failure.
pub fn vfs(
    path: &str,
    action: VfsAction,
    blob: Option<Vec<u8>>,
) -> Result<(VfsResponse, Option<Vec<u8>>), StepFailure> {
    let step = format!("{} {path}", action_name(&action));
    let body = serde_json::to_vec(&VfsRequest {
        path: path.to_owned(),
        action,
    })
    .map_err(|e| failure(step.clone(), e))?;
    let mut request = Request::to(("our", "vfs", "distro", "sys")).body(body);
    if let Some(bytes) = blob {
        request = request.blob_bytes(bytes);
    }
    let message = await_response(request, &step)?;
    match serde_json::from_slice::<VfsResponse>(message.body()) {
        Ok(VfsResponse::Err(error)) => Err(failure(step, error)),
        Ok(response) => Ok((response, get_blob().map(|blob| blob.bytes))),
        Err(error) => Err(failure(step, format!("unreadable VFS response: {error}"))),
    }
}

fn await_response(request: Request, step: &str) -> Result<Message, StepFailure> {
    crate::mailbox::await_response(request, TIMEOUT)
        .map_err(|error| failure(step.to_owned(), error))
}

/// Reads a whole file.
pub fn read(path: &str) -> Result<Vec<u8>, StepFailure> {
    match vfs(path, VfsAction::Read, None)? {
        (VfsResponse::Read, Some(bytes)) => Ok(bytes),
        (VfsResponse::Read, None) => Ok(Vec::new()),
        (other, _) => Err(failure(format!("Read {path}"), unexpected(&other))),
    }
}

/// Reads a file if it exists: `None` when the VFS answers that it is not there.
pub fn read_if_exists(path: &str) -> Result<Option<Vec<u8>>, StepFailure> {
    if !is_file(path)? {
        return Ok(None);
    }
    read(path).map(Some)
}

/// Whether a file exists at `path` (an IO error from `Metadata` means it does not).
pub fn is_file(path: &str) -> Result<bool, StepFailure> {
    Ok(metadata(path)? == Some(FileType::File))
}

/// The type of what is at `path`, if anything.
pub fn metadata(path: &str) -> Result<Option<FileType>, StepFailure> {
    match vfs(path, VfsAction::Metadata, None) {
        Ok((VfsResponse::Metadata(meta), _)) => Ok(Some(meta.file_type)),
        Ok((other, _)) => Err(failure(format!("Metadata {path}"), unexpected(&other))),
        Err(failure) if failure.reason.starts_with("IO error") => Ok(None),
        Err(failure) => Err(failure),
    }
}

/// The bytes of an installed package's zip, `/{package}/pkg/{package}.zip`, as they are now.
///
/// There is deliberately no `Hash` here. The runtime's VFS answers `Hash` (and `Len`,
/// `ReadToEnd`, `ReadExact`, `ReadToString`, `Seek`, ...) through an open-file cache keyed by
/// path (`Files::open_file` in `kinode/src/vfs.rs` v1.0.0) that only `RemoveFile`, `CloseFile`,
/// `CreateFile` and fd-limit eviction invalidate, while the app store replaces a package's drive
/// with `RemoveDirAll`, `AddZip` and `Write`, which do not: after an update, `Hash` keeps
/// answering the old zip's hash. `Read` (like `Metadata`, `ReadDir`, `Write`, `AddZip` and
/// `RemoveDirAll`, the only other actions the linker sends) goes to the file system each time, so
/// every decision about what is installed rests on bytes read with it.
pub fn installed_zip(package: &str) -> Result<Vec<u8>, StepFailure> {
    read(&format!("/{package}/pkg/{package}.zip"))
}

/// Writes a whole file (create or truncate); the parent directory must exist.
pub fn write(path: &str, bytes: Vec<u8>) -> Result<(), StepFailure> {
    expect_ok(path, VfsAction::Write, Some(bytes))
}

/// Runs an action whose success answer is `Ok`.
pub fn expect_ok(path: &str, action: VfsAction, blob: Option<Vec<u8>>) -> Result<(), StepFailure> {
    let step = format!("{} {path}", action_name(&action));
    match vfs(path, action, blob)? {
        (VfsResponse::Ok, _) => Ok(()),
        (other, _) => Err(failure(step, unexpected(&other))),
    }
}

/// The entries of a directory, as `(name, type)` with names relative to `path`.
pub fn read_dir(path: &str) -> Result<Vec<(String, FileType)>, StepFailure> {
    match vfs(path, VfsAction::ReadDir, None)? {
        (VfsResponse::ReadDir(entries), _) => Ok(entries
            .into_iter()
            .filter_map(
                |DirEntry {
                     path: entry,
                     file_type,
                 }| {
                    let name = entry.trim_end_matches('/').rsplit('/').next()?.to_owned();
                    (!name.is_empty()).then_some((name, file_type))
                },
            )
            .collect()),
        (other, _) => Err(failure(format!("ReadDir {path}"), unexpected(&other))),
    }
}

fn unexpected(response: &VfsResponse) -> String {
    format!("unexpected answer {response:?}")
}

/// Sends a kernel command. With `await_answer`, waits for the kernel's response and returns it;
/// otherwise fires it (the kernel answers `GrantCapabilities` and `KillProcess` only when asked).
pub fn kernel(
    our: &Address,
    command: &KernelCommand,
    blob: Option<Vec<u8>>,
    await_answer: bool,
) -> Result<Option<KernelResponse>, StepFailure> {
    let step = kernel_step(command);
    let body = serde_json::to_vec(command).map_err(|e| failure(step.clone(), e))?;
    let mut request = Request::to((our.node(), "kernel", "distro", "sys")).body(body);
    if let Some(bytes) = blob {
        request = request.blob_bytes(bytes);
    }
    if !await_answer {
        return request.send().map(|()| None).map_err(|e| failure(step, e));
    }
    let message = await_response(request, &step)?;
    serde_json::from_slice::<KernelResponse>(message.body())
        .map(Some)
        .map_err(|e| failure(step, format!("unreadable kernel response: {e}")))
}

/// `InitializeProcess app:app:pub` and the like.
fn kernel_step(command: &KernelCommand) -> String {
    match command {
        KernelCommand::InitializeProcess { id, .. } => format!("InitializeProcess {id}"),
        KernelCommand::GrantCapabilities { target, .. } => format!("GrantCapabilities {target}"),
        KernelCommand::DropCapabilities { target, .. } => format!("DropCapabilities {target}"),
        KernelCommand::RunProcess(id) => format!("RunProcess {id}"),
        KernelCommand::KillProcess(id) => format!("KillProcess {id}"),
        other => format!("{other:?}"),
    }
}
