//! A process's state on the test host: the store data of one running process.
//!
//! Mirrors the runtime's `ProcessWasiV1 { process: ProcessState, table, wasi }` (the kinode repo's
//! `kinode/src/kernel/process.rs`). [`ProcessState`] is what the standard host reads and writes;
//! message queues and capabilities grow here.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiView};

use crate::bindings::kinode::process::standard::{
    Address, Capability, LazyLoadBlob, OnExit, ProcessId,
};

/// One `print-to-terminal` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Print {
    /// The verbosity level the process asked for (0 is always shown by a real terminal).
    pub verbosity: u8,
    /// The text, as the process sent it.
    pub message: String,
}

/// What the kinode standard host keeps for one process.
#[derive(Debug)]
pub struct ProcessState {
    /// The process's own address, as `our()` returns it.
    pub our: Address,
    /// Everything the process printed, in order.
    pub prints: Vec<Print>,
    /// The bytes of `set-state`, if any (the runtime persists them through the `state` process).
    pub state: Option<Vec<u8>>,
    /// What the kernel should do when the process exits.
    pub on_exit: OnExit,
    /// The capabilities the process holds.
    pub capabilities: Vec<Capability>,
    /// The blob of the message being handled; none until messages are routed.
    pub last_blob: Option<LazyLoadBlob>,
}

impl ProcessState {
    /// A fresh process at `our`: no prints, no state, `on_exit` none, no capabilities.
    pub fn new(our: Address) -> Self {
        Self {
            our,
            prints: Vec::new(),
            state: None,
            on_exit: OnExit::None,
            capabilities: Vec::new(),
            last_blob: None,
        }
    }
}

/// The store data of a process, as in the runtime: process state, resource table and WASI context.
pub struct ProcessWasiV1 {
    /// The kinode side.
    pub process: ProcessState,
    /// WASI resources.
    pub table: ResourceTable,
    /// The WASI context.
    pub wasi: WasiCtx,
}

impl WasiView for ProcessWasiV1 {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn ctx(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

/// Parses `node@process:package:publisher` (the form the kernel passes to `init`) into an
/// [`Address`].
///
/// Returns `None` unless there is exactly one `@` and the process id has exactly three non-empty
/// `:`-separated parts and the node is not empty. (The runtime's `ProcessId` parser is as strict
/// about the number of parts.)
pub fn parse_address(our: &str) -> Option<Address> {
    let (node, process) = our.split_once('@')?;
    if node.is_empty() || process.contains('@') {
        return None;
    }
    let mut parts = process.split(':');
    let (process_name, package_name, publisher_node) =
        (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || [process_name, package_name, publisher_node]
            .iter()
            .any(|p| p.is_empty())
    {
        return None;
    }
    Some(Address {
        node: node.to_owned(),
        process: ProcessId {
            process_name: process_name.to_owned(),
            package_name: package_name.to_owned(),
            publisher_node: publisher_node.to_owned(),
        },
    })
}

/// Formats an [`Address`] the way the kernel does: `node@process:package:publisher`.
pub fn format_address(address: &Address) -> String {
    let p = &address.process;
    format!(
        "{}@{}:{}:{}",
        address.node, p.process_name, p.package_name, p.publisher_node
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let address = parse_address("fake.os@app:my-pkg:sys").unwrap();
        assert_eq!(address.node, "fake.os");
        assert_eq!(address.process.process_name, "app");
        assert_eq!(address.process.package_name, "my-pkg");
        assert_eq!(address.process.publisher_node, "sys");
        assert_eq!(format_address(&address), "fake.os@app:my-pkg:sys");
    }

    #[test]
    fn bad_addresses_are_rejected() {
        for bad in [
            "",
            "node",
            "node@a:b",
            "node@a:b:c:d",
            "@a:b:c",
            "n@a::c",
            "n@a@b:c:d",
        ] {
            assert!(parse_address(bad).is_none(), "{bad}");
        }
    }
}
