//! Who may ask: only processes on this node, and for `install` only those that attach the
//! linker's messaging capability (which the kernel checks they hold before delivering it). A VFS
//! path is read for a sender only if it could read it itself.

use kinode_process_lib::{Address, Capability};

use crate::api::LinkerError;

/// Refuses a sender from another node, and an install without the linker's capability among
/// those the request carries.
pub fn check(
    our: &Address,
    source: &Address,
    capabilities: &[Capability],
    install: bool,
) -> Result<(), LinkerError> {
    if source.node() != our.node() {
        return Err(LinkerError::RemoteSender(source.to_string()));
    }
    if install && !holds_messaging(our, capabilities) {
        return Err(LinkerError::NotAuthorised(format!(
            "{source} may not install packages: attach the linker's messaging capability"
        )));
    }
    Ok(())
}

/// Whether `capabilities` hold `{issuer: our, params: "messaging"}`; params compare as JSON.
fn holds_messaging(our: &Address, capabilities: &[Capability]) -> bool {
    capabilities.iter().any(|cap| {
        cap.issuer() == our
            && cap
                .params_json()
                .is_ok_and(|params| params == serde_json::json!("messaging"))
    })
}

/// Whether the sender may have the linker read `path` for it: a path in the sender's own
/// package, or one it attached a VFS read (or root) capability for. The linker holds the VFS root
/// capability, so without this check any local process could read any drive through it.
pub fn may_read(
    our: &Address,
    source: &Address,
    capabilities: &[Capability],
    path: &str,
) -> Result<(), LinkerError> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (package, drive) = (parts.next().unwrap_or_default(), parts.next());
    if package == source.package_id().to_string() {
        return Ok(());
    }
    let vfs = Address::new(our.node(), ("vfs", "distro", "sys"));
    let drive_path = format!("/{package}/{}", drive.unwrap_or_default());
    let allowed = capabilities.iter().any(|cap| {
        cap.issuer() == &vfs
            && cap.params_json().is_ok_and(|params| {
                params == serde_json::json!({ "root": true })
                    || params == serde_json::json!({ "kind": "read", "drive": drive_path })
            })
    });
    if allowed {
        Ok(())
    } else {
        Err(LinkerError::NotAuthorised(format!(
            "{source} may not have the linker read `{path}`: attach a VFS read capability for \
             `{drive_path}`"
        )))
    }
}
