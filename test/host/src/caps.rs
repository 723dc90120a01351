//! Capabilities and ids: constructors for the capabilities tests hand out, capability equality,
//! and the JSON wire forms of capabilities, process ids and `OnExit` used by kernel commands.
//!
//! Mirrors the runtime's `Capability`, `ProcessId` and `OnExit` (the kinode repo's
//! `lib/src/core.rs`, process_lib's `src/types/*.rs`): a capability is `{issuer: Address, params:
//! String}`; two capabilities are equal when the issuers are equal and the params parse to equal
//! JSON (so key order and whitespace do not matter; params that are not JSON compare as text).

use serde_json::{json, Value};

use crate::bindings::kinode::process::standard::{
    Address, Capability, LazyLoadBlob, OnExit, ProcessId, Request,
};
use crate::process::{format_address, parse_address};

/// `kernel:distro:sys`.
pub const KERNEL: &str = "kernel:distro:sys";
/// `vfs:distro:sys`.
pub const VFS: &str = "vfs:distro:sys";
/// `state:distro:sys`.
pub const STATE: &str = "state:distro:sys";
/// `timer:distro:sys`, the one public runtime module.
pub const TIMER: &str = "timer:distro:sys";

/// A capability issued by `issuer` (`node@process:package:publisher`) with JSON `params`.
///
/// # Panics
/// If `issuer` is not an address; these helpers are for literal test input.
pub fn capability(issuer: &str, params: &str) -> Capability {
    Capability {
        issuer: parse_address(issuer)
            .unwrap_or_else(|| panic!("`{issuer}` is not node@process:package:publisher")),
        params: params.to_owned(),
    }
}

/// The messaging capability for `address` (`node@process:package:publisher`): issuer `address`,
/// params `"messaging"`.
///
/// # Panics
/// If `address` is not an address.
pub fn messaging(address: &str) -> Capability {
    capability(address, "\"messaging\"")
}

/// `{issuer: node@kernel:distro:sys, params: "network"}`: may send to and receive from other nodes.
pub fn network(node: &str) -> Capability {
    capability(&format!("{node}@{KERNEL}"), "\"network\"")
}

/// VFS read access to `drive` (`/package:publisher/drive`) on `node`.
pub fn vfs_read(node: &str, drive: &str) -> Capability {
    capability(
        &format!("{node}@{VFS}"),
        &json!({"kind": "read", "drive": drive}).to_string(),
    )
}

/// VFS write access to `drive` (`/package:publisher/drive`) on `node`.
pub fn vfs_write(node: &str, drive: &str) -> Capability {
    capability(
        &format!("{node}@{VFS}"),
        &json!({"kind": "write", "drive": drive}).to_string(),
    )
}

/// The VFS root capability on `node` (`{"root":true}`): every drive, and `CreateDrive` for any
/// package.
pub fn vfs_root(node: &str) -> Capability {
    capability(&format!("{node}@{VFS}"), "{\"root\":true}")
}

/// Capability equality as the runtime defines it: same issuer, params equal as parsed JSON.
pub fn same(a: &Capability, b: &Capability) -> bool {
    format_address(&a.issuer) == format_address(&b.issuer) && same_params(&a.params, &b.params)
}

/// Whether two params strings are equal as parsed JSON (as text if either is not JSON).
pub fn same_params(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Whether `caps` holds a capability equal to `cap`.
pub fn holds(caps: &[Capability], cap: &Capability) -> bool {
    caps.iter().any(|held| same(held, cap))
}

/// The runtime's `Display` of a capability: `issuer(params)`.
pub fn display(cap: &Capability) -> String {
    format!("{}({})", format_address(&cap.issuer), cap.params)
}

/// `process:package:publisher`.
pub fn format_process_id(id: &ProcessId) -> String {
    format!(
        "{}:{}:{}",
        id.process_name, id.package_name, id.publisher_node
    )
}

/// Parses `process:package:publisher` (exactly three non-empty parts).
pub fn parse_process_id(id: &str) -> Option<ProcessId> {
    parse_address(&format!("n@{id}")).map(|address| address.process)
}

/// The kernel's `check_process_id_kimap_safe`: process and package names `[a-z0-9-]`, publisher
/// `[a-z0-9-.]`.
pub fn kimap_safe(id: &ProcessId) -> bool {
    let name_ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    name_ok(&id.process_name)
        && name_ok(&id.package_name)
        && id
            .publisher_node
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// A capability as the wire carries it: `{"issuer": "node@p:p:p", "params": "<json>"}`.
pub fn cap_to_json(cap: &Capability) -> Value {
    json!({"issuer": format_address(&cap.issuer), "params": cap.params})
}

/// Reads a capability in wire form. Also accepts the runtime's signed pair `[cap, signature]`.
pub fn cap_from_json(value: &Value) -> Option<Capability> {
    if let Some([cap, _signature]) = value.as_array().map(Vec::as_slice) {
        return cap_from_json(cap);
    }
    Some(Capability {
        issuer: parse_address(value.get("issuer")?.as_str()?)?,
        params: value.get("params")?.as_str()?.to_owned(),
    })
}

/// Reads a list of capabilities; `None` if any entry is malformed.
pub fn caps_from_json(value: &Value) -> Option<Vec<Capability>> {
    value.as_array()?.iter().map(cap_from_json).collect()
}

/// Reads `OnExit` in serde form: `"None"`, `"Restart"` or `{"Requests": [[address, request,
/// blob|null], ...]}`.
pub fn on_exit_from_json(value: &Value) -> Option<OnExit> {
    match value {
        Value::String(s) if s == "None" => Some(OnExit::None),
        Value::String(s) if s == "Restart" => Some(OnExit::Restart),
        Value::Object(map) => {
            let requests = map.get("Requests")?.as_array()?;
            let mut out = Vec::new();
            for entry in requests {
                let [address, request, blob] = entry.as_array()?.as_slice() else {
                    return None;
                };
                let address = parse_address(address.as_str()?)?;
                let request = request_from_json(request)?;
                let blob = match blob {
                    Value::Null => None,
                    blob => Some(LazyLoadBlob {
                        mime: blob.get("mime").and_then(Value::as_str).map(str::to_owned),
                        bytes: bytes_from_json(blob.get("bytes")?)?,
                    }),
                };
                out.push((address, request, blob));
            }
            Some(OnExit::Requests(out))
        }
        _ => None,
    }
}

/// A short name of an `OnExit`, as the runtime's `Display` starts it.
pub fn on_exit_name(on_exit: &OnExit) -> &'static str {
    match on_exit {
        OnExit::None => "None",
        OnExit::Restart => "Restart",
        OnExit::Requests(_) => "Requests",
    }
}

fn request_from_json(value: &Value) -> Option<Request> {
    Some(Request {
        inherit: value.get("inherit")?.as_bool()?,
        expects_response: value.get("expects_response").and_then(Value::as_u64),
        body: bytes_from_json(value.get("body")?)?,
        metadata: value
            .get("metadata")
            .and_then(Value::as_str)
            .map(str::to_owned),
        capabilities: match value.get("capabilities") {
            None | Some(Value::Null) => Vec::new(),
            Some(caps) => caps_from_json(caps)?,
        },
    })
}

fn bytes_from_json(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}

/// `node@process:package:publisher` of a process on `node`.
pub(crate) fn address(node: &str, process: &ProcessId) -> Address {
    Address {
        node: node.to_owned(),
        process: process.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_parses_params() {
        let a = capability(
            "n.os@vfs:distro:sys",
            r#"{"kind":"read","drive":"/a:b/pkg"}"#,
        );
        let b = capability(
            "n.os@vfs:distro:sys",
            r#"{ "drive": "/a:b/pkg", "kind": "read" }"#,
        );
        assert!(same(&a, &b));
        assert!(same(&a, &vfs_read("n.os", "/a:b/pkg")));
        assert!(!same(&a, &vfs_write("n.os", "/a:b/pkg")));
        assert!(!same(&a, &vfs_read("m.os", "/a:b/pkg")));
    }

    #[test]
    fn wire_forms_round_trip() {
        let cap = messaging("n.os@p:q:r.os");
        assert!(same(&cap_from_json(&cap_to_json(&cap)).unwrap(), &cap));
        let pair = json!([cap_to_json(&cap), [1, 2, 3]]);
        assert!(same(&cap_from_json(&pair).unwrap(), &cap));
        assert!(matches!(
            on_exit_from_json(&json!("Restart")),
            Some(OnExit::Restart)
        ));
        let requests = json!({"Requests": [["n.os@a:b:c", {"inherit": false, "expects_response": null,
            "body": [104, 105], "metadata": null, "capabilities": []}, null]]});
        let Some(OnExit::Requests(requests)) = on_exit_from_json(&requests) else {
            panic!("not parsed")
        };
        assert_eq!(requests[0].1.body, b"hi");
    }

    #[test]
    fn kimap_safety() {
        assert!(kimap_safe(&parse_process_id("a-1:pkg:test.os").unwrap()));
        assert!(!kimap_safe(&parse_process_id("A:pkg:test.os").unwrap()));
        assert!(!kimap_safe(&parse_process_id("a:p_k:test.os").unwrap()));
    }
}
