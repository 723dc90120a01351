//! The kernel of a test node: the process map, the capabilities oracle, message routing with the
//! kernel-level capability checks, the `kernel:distro:sys` commands, and the glue that serves
//! `vfs:distro:sys` ([`crate::vfs`]), `timer:distro:sys` and process state.
//!
//! Mirrors the kinode repo's `kinode/src/kernel/mod.rs` (event loop, `handle_kernel_request`,
//! `start_process`, `throw_timeout`, the `CapMessage` oracle) as of wit v1.0.0. Faithful:
//! - routing checks in the event loop's order: a local source sending off-node needs the
//!   `"network"` cap; a message from another node needs its target to exist and hold `"network"`;
//!   between local processes the source and target must exist and the target be `public` or the
//!   source hold `messaging(target)` (kernel, vfs and state may message anyone). A refused or
//!   undeliverable message is dropped with the kernel's printout, and if it was a request
//!   expecting a response its sender gets an immediate `SendError` **Timeout** (`throw_timeout`;
//!   the real kernel never answers `Offline` for a local target);
//! - kernel commands with the runtime's responses and printouts, including `InitializeProcess`
//!   filtering initial caps to the sender's and granting mutual messaging, `KillProcess` revoking
//!   through a reverse index of caps added via the oracle (`RevokeAll`), and `FilterCaps`
//!   allowing caps the sender issued itself.
//!
//! Simplified (say so when it matters):
//! - Routing is synchronous: whoever sends runs the checks and the kernel/VFS handling on its own
//!   thread under one lock, instead of one event-loop task. Per-sender order is kept.
//! - Other nodes are those on the node's [`crate::Network`]. A message to another node goes to a
//!   test mailbox registered at that address, else to that node's kernel if it is on the network
//!   and online (queued for its inbound task, which routes it with its checks for networked
//!   messages), else (if it is a request expecting a response) the sender gets `Offline`, which is
//!   what `net:distro:sys` reports for an unreachable peer.
//! - Caps are not signed; `state:distro:sys` is not a process: get/set/clear-state go straight to
//!   an in-memory store that survives [`crate::Node::reboot`]. The process map is not persisted
//!   to disk; `reboot` keeps it in memory and applies the runtime's boot rules to it.
//! - `KernelCommand::Debug` is not served (the kernel prints that it ignored it).
//! - Injected faults ([`Fault`]) answer as the real service answers a failure, or kill the sender
//!   as a trap does.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::task::JoinHandle;
use wasmtime::component::Linker;
use wasmtime::{Engine, Trap};

use crate::bindings::kinode::process::standard::{
    Address, Capability, LazyLoadBlob, Message, OnExit, ProcessId, Request, Response, SendError,
    SendErrorKind,
};
use crate::caps::{self, KERNEL, STATE, TIMER, VFS};
use crate::network::Network;
use crate::process::{format_address, ProcessMetadata, ProcessWasiV1};
use crate::vfs::{Vfs, VfsCaller};
use crate::Print;

/// A message in flight, as the kernel sees it (the runtime's `KernelMessage`).
#[derive(Clone, Debug)]
pub(crate) struct KernelMessage {
    pub id: u64,
    pub source: Address,
    pub target: Address,
    pub rsvp: Option<Address>,
    pub message: Message,
    pub blob: Option<LazyLoadBlob>,
}

/// A send error on its way back to the sender (the runtime's `WrappedSendError`).
#[derive(Clone, Debug)]
pub(crate) struct WrappedSendError {
    pub id: u64,
    /// Who reports the error (kept as in the runtime; processes do not see it).
    #[allow(dead_code)]
    pub source: Address,
    pub error: SendError,
}

/// What a process or mailbox receives.
pub(crate) type Delivery = Result<KernelMessage, WrappedSendError>;

/// Where deliveries for a process id or remote address go.
#[derive(Clone)]
pub(crate) enum Inbox {
    /// A wasm process task.
    Process(UnboundedSender<Delivery>),
    /// A test mailbox.
    Mailbox(std::sync::mpsc::Sender<Delivery>),
}

impl Inbox {
    fn send(&self, delivery: Delivery) -> bool {
        match self {
            Inbox::Process(sender) => sender.send(delivery).is_ok(),
            Inbox::Mailbox(sender) => sender.send(delivery).is_ok(),
        }
    }
}

/// A process map entry (the runtime's `PersistedProcess`).
#[derive(Clone, Debug)]
pub(crate) struct PersistedProcess {
    pub wasm_bytes_handle: String,
    pub wit_version: Option<u32>,
    pub on_exit: OnExit,
    pub capabilities: Vec<Capability>,
    pub public: bool,
}

/// Where a process is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessStatus {
    /// Initialized, waiting for `RunProcess`.
    Initialized,
    /// Told to run; instantiated or about to be, `init` not returned.
    Running,
    /// `init` returned.
    Exited,
    /// `Component::new` failed on the bytes (the runtime's `.expect` panics the process task
    /// there).
    FailedToCompile {
        /// The error chain.
        message: String,
    },
    /// `instantiate_async` failed; the kernel printed "kernel: process X failed to instantiate"
    /// and skipped on-exit.
    FailedToInstantiate {
        /// The first import wasmtime reported missing or mismatched.
        import: Option<String>,
        /// The error chain.
        message: String,
    },
    /// `init` trapped.
    Trapped {
        /// The error chain without the wasm backtrace.
        message: String,
        /// What the process wrote to stderr.
        stderr: String,
        /// The wasm trap code, if it was a wasm trap.
        trap: Option<Trap>,
        /// The whole error chain including the backtrace.
        details: String,
    },
    /// Removed by `KillProcess` while initialized or running.
    Killed,
}

impl ProcessStatus {
    /// Whether the process task has ended (anything but `Initialized` and `Running`).
    pub fn is_final(&self) -> bool {
        !matches!(self, ProcessStatus::Initialized | ProcessStatus::Running)
    }
}

/// A failure the node injects instead of serving a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The VFS answers `{"Err":{"IOError":"injected fault"}}` to the next `times` requests whose
    /// action is `action` (e.g. `"AddZip"`, `"Write"`, `"OpenFile"`) and whose path starts with
    /// `path_prefix`.
    Vfs {
        /// The action name.
        action: String,
        /// A path prefix, e.g. `/app:test.os/pkg`.
        path_prefix: String,
        /// How many requests fail.
        times: u32,
    },
    /// The VFS answers the next `times` requests whose action is `action` and whose path starts
    /// with `path_prefix` `millis` milliseconds late, as a slow disk would: the request is served
    /// then, and the sender meanwhile receives other messages as usual.
    SlowVfs {
        /// The action name.
        action: String,
        /// A path prefix.
        path_prefix: String,
        /// How late each answer is.
        millis: u64,
        /// How many requests are slow.
        times: u32,
    },
    /// The kernel fails the next `times` commands named `command` (`"InitializeProcess"`,
    /// `"RunProcess"`, `"KillProcess"`, `"GrantCapabilities"`, ...) for `target` (any if `None`).
    /// `InitializeProcess` answers `"InitializeProcessError"` and `RunProcess` answers
    /// `"RunProcessError"`; commands that have no error response are ignored, as the kernel
    /// ignores a kill of an unknown process.
    Kernel {
        /// The command name.
        command: String,
        /// The process id the command is about.
        target: Option<String>,
        /// How many commands fail.
        times: u32,
    },
    /// `process` dies as a trap would kill it right after sending its `nth` (from 1, counted from
    /// when the fault is added) request that is the VFS action `action` on a path starting with
    /// `target`, or the kernel command `action` about a process id starting with `target`. The
    /// request is served; the sender never sees the answer, and its on-exit runs, unless `halt`:
    /// then its task just ends, as when the node shuts down, for a [`crate::Node::reboot`] next.
    Crash {
        /// The sender, `process:package:publisher`.
        process: String,
        /// The VFS action or kernel command name.
        action: String,
        /// A VFS path prefix or process id prefix.
        target: String,
        /// Which matching request kills the sender; 0 once spent.
        nth: u32,
        /// Whether the sender's on-exit is skipped.
        halt: bool,
    },
}

/// Restart backoff of one process (the runtime's `RestartBackoff`).
#[derive(Clone, Copy, Debug)]
struct Backoff {
    next_soonest: tokio::time::Instant,
    attempts: u32,
}

/// Everything behind the kernel lock.
#[derive(Default)]
pub(crate) struct KernelState {
    pub process_map: BTreeMap<String, PersistedProcess>,
    pub senders: HashMap<String, Inbox>,
    /// Test mailboxes standing in for processes on other nodes, by `node@process`.
    pub remote: HashMap<String, Inbox>,
    pub handles: HashMap<String, JoinHandle<()>>,
    pub statuses: BTreeMap<String, ProcessStatus>,
    /// issuer process -> grantee process -> caps added through the oracle.
    reverse_caps: HashMap<String, HashMap<String, Vec<Capability>>>,
    pub prints: Vec<(String, Print)>,
    pub process_state: HashMap<String, Vec<u8>>,
    /// Processes a halting [`Fault::Crash`] killed, whose on-exit is not run.
    pub halted: std::collections::HashSet<String>,
    /// The on-exit each process had and its stderr when its `init` returned or trapped.
    pub exits: HashMap<String, (OnExit, String)>,
    /// The peak guest memory of each process's latest run.
    pub memory: HashMap<String, crate::process::MemoryPeak>,
    faults: Vec<Fault>,
    backoffs: HashMap<String, Backoff>,
    /// Every VFS request served, in order, for tests and benchmarks that count them.
    pub vfs_log: Vec<VfsCall>,
    /// Every messaging call a process made into the host, timed, for profiles.
    pub host_calls: Vec<HostCall>,
}

/// One messaging call a process made into the host, timed: what a profile of a process's time
/// subtracts from its wall time to leave the time it ran its own code.
#[derive(Debug, Clone)]
pub struct HostCall {
    /// `process:package:publisher` of the caller.
    pub process: String,
    /// What was called: `VFS Read /p:pub/pkg/x.zip`, `kernel InitializeProcess`, `receive`,
    /// `get-blob`, `send-response`, ...
    pub call: String,
    /// When the host took the call.
    pub start: Instant,
    /// How long the host took to return, an awaited answer included.
    pub elapsed: Duration,
    /// Bytes of the blob the process sent with the call.
    pub sent: usize,
    /// Bytes of the blob the call returned to the process (the answer's, for an awaited request).
    pub received: usize,
}

/// One VFS request as served: when, from which process, the action and the path.
#[derive(Debug, Clone)]
pub struct VfsCall {
    /// When the VFS served it.
    pub at: Instant,
    /// `process:package:publisher` of the sender.
    pub source: String,
    /// The action's name, e.g. `ReadDir` or `Write`.
    pub action: String,
    /// The request's path.
    pub path: String,
}

/// The kernel of one node.
pub(crate) struct Kernel {
    pub our: String,
    pub home: PathBuf,
    pub engine: Engine,
    pub linker: Arc<Linker<ProcessWasiV1>>,
    pub vfs: Vfs,
    pub runtime: tokio::runtime::Handle,
    /// The network this node is on.
    pub network: Network,
    /// Messages from other nodes, routed in order by a task on this node's runtime.
    net_inbox: UnboundedSender<KernelMessage>,
    state: Mutex<KernelState>,
    changed: Condvar,
    next_id: AtomicU64,
}

impl Kernel {
    /// A kernel with `kernel`, `vfs` and `state` in its process map (non-public runtime modules,
    /// as the runtime registers them).
    pub fn new(
        our: &str,
        home: PathBuf,
        engine: Engine,
        linker: Arc<Linker<ProcessWasiV1>>,
        runtime: tokio::runtime::Handle,
        network: Network,
    ) -> Arc<Self> {
        let vfs = Vfs::new(home.join("vfs"));
        let (net_inbox, mut from_network) = unbounded_channel::<KernelMessage>();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let kernel = Arc::new(Self {
            our: our.to_owned(),
            home,
            engine,
            linker,
            vfs,
            runtime,
            network,
            net_inbox,
            state: Mutex::new(KernelState::default()),
            changed: Condvar::new(),
            next_id: AtomicU64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        });
        {
            let mut st = kernel.lock();
            for runtime_module in [KERNEL, VFS, STATE, TIMER] {
                st.process_map.insert(
                    runtime_module.to_owned(),
                    PersistedProcess {
                        wasm_bytes_handle: String::new(),
                        wit_version: None,
                        on_exit: OnExit::Restart,
                        capabilities: Vec::new(),
                        public: runtime_module == TIMER,
                    },
                );
            }
        }
        let weak = Arc::downgrade(&kernel);
        kernel.runtime.spawn(async move {
            while let Some(km) = from_network.recv().await {
                let Some(kernel) = weak.upgrade() else {
                    break;
                };
                kernel.route(km);
            }
        });
        kernel
    }

    /// The kernel lock (a poisoned lock is taken over: a panicking test thread must not hide
    /// later failures).
    pub fn lock(&self) -> MutexGuard<'_, KernelState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `check` returns `Some` or `timeout` passes.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&KernelState) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(found) = check(&st) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wakes everyone in [`Kernel::wait_until`].
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// A fresh message id.
    pub fn new_id(&self) -> u64 {
        // A 64-bit LCG step: distinct ids without a random number generator.
        self.next_id
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }

    /// `our@process`.
    pub fn address(&self, process: &str) -> Address {
        let id = caps::parse_process_id(process).unwrap_or(ProcessId {
            process_name: process.to_owned(),
            package_name: String::new(),
            publisher_node: String::new(),
        });
        caps::address(&self.our, &id)
    }

    /// Records a printout from `process` (the kernel prints as `kernel:distro:sys`).
    pub fn print(&self, process: &str, verbosity: u8, message: impl Into<String>) {
        self.lock().prints.push((
            process.to_owned(),
            Print {
                verbosity,
                message: message.into(),
            },
        ));
        self.notify();
    }

    /// Sets a process's status.
    pub fn set_status(&self, process: &str, status: ProcessStatus) {
        self.lock().statuses.insert(process.to_owned(), status);
        self.notify();
    }

    /// Adds a fault to inject.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    // ---------------------------------------------------------------------------------------------
    // The capabilities oracle.

    /// `CapMessage::Add`: adds `caps` to `on` (if it is in the process map) and indexes them under
    /// their issuers for `RevokeAll`.
    pub fn add_caps(st: &mut KernelState, on: &str, caps: Vec<Capability>) {
        let Some(entry) = st.process_map.get_mut(on) else {
            return;
        };
        for cap in caps {
            if !caps::holds(&entry.capabilities, &cap) {
                entry.capabilities.push(cap.clone());
            }
            st.reverse_caps
                .entry(caps::format_process_id(&cap.issuer.process))
                .or_default()
                .entry(on.to_owned())
                .or_default()
                .push(cap);
        }
    }

    /// `CapMessage::Drop`.
    pub fn drop_caps(st: &mut KernelState, on: &str, caps: &[Capability]) {
        if let Some(entry) = st.process_map.get_mut(on) {
            entry.capabilities.retain(|held| !caps::holds(caps, held));
        }
    }

    /// `CapMessage::RevokeAll`: removes every indexed cap `on` issued from its grantees.
    fn revoke_all(st: &mut KernelState, on: &str) {
        let Some(grantees) = st.reverse_caps.get(on).cloned() else {
            return;
        };
        for (grantee, caps) in grantees {
            Self::drop_caps(st, &grantee, &caps);
        }
    }

    /// `CapMessage::FilterCaps`: keeps the caps `on` issued itself and those it holds.
    pub fn filter_caps(st: &KernelState, on: &str, caps: Vec<Capability>) -> Vec<Capability> {
        let Some(entry) = st.process_map.get(on) else {
            return Vec::new();
        };
        caps.into_iter()
            .filter(|cap| {
                caps::format_process_id(&cap.issuer.process) == on
                    || caps::holds(&entry.capabilities, cap)
            })
            .collect()
    }

    /// `CapMessage::GetAll`.
    pub fn capabilities(&self, on: &str) -> Vec<Capability> {
        self.lock()
            .process_map
            .get(on)
            .map(|p| p.capabilities.clone())
            .unwrap_or_default()
    }

    // ---------------------------------------------------------------------------------------------
    // Routing.

    /// Sends `km` through the kernel's checks to its target. As in the runtime, the node name
    /// `our` (process_lib's `vfs_request` and friends use it) stands for this node.
    pub fn route(self: &Arc<Self>, mut km: KernelMessage) {
        for node in [&mut km.source.node, &mut km.target.node] {
            if node == "our" {
                node.clone_from(&self.our);
            }
        }
        enum Destination {
            Kernel,
            Vfs,
            Timer,
            Inbox(Inbox),
            /// Another node's kernel, through `net:distro:sys`.
            Network,
        }
        let destination = {
            let mut st = self.lock();
            let our = self.our.as_str();
            let source = caps::format_process_id(&km.source.process);
            let target = caps::format_process_id(&km.target.process);
            let network = caps::network(our);
            if km.source.node == our && km.target.node != our {
                let Some(process) = st.process_map.get(&source) else {
                    return;
                };
                if !caps::holds(&process.capabilities, &network) {
                    self.printout(
                        &mut st,
                        0,
                        format!(
                            "event loop: process {source} doesn't have capability to send networked messages"
                        ),
                    );
                    Self::throw(&st, &km, SendErrorKind::Timeout, &self.address(KERNEL));
                    return;
                }
                match st.remote.get(&format_address(&km.target)) {
                    Some(inbox) => Destination::Inbox(inbox.clone()),
                    None => Destination::Network,
                }
            } else if km.source.node != our {
                let Some(process) = st.process_map.get(&target) else {
                    let kind = match km.message {
                        Message::Request(_) => "Request",
                        Message::Response(_) => "Response",
                    };
                    self.printout(
                        &mut st,
                        2,
                        format!("event loop: got {kind} from network for {target}, but process does not exist"),
                    );
                    return;
                };
                if !caps::holds(&process.capabilities, &network) {
                    self.printout(
                        &mut st,
                        0,
                        format!(
                            "event loop: process {target} got a message from over the network, but doesn't have capability to receive networked messages"
                        ),
                    );
                    return;
                }
                match st.senders.get(&target) {
                    Some(inbox) => Destination::Inbox(inbox.clone()),
                    None => return,
                }
            } else {
                if ![KERNEL, STATE, VFS].contains(&source.as_str()) {
                    let Some(source_process) = st.process_map.get(&source) else {
                        Self::throw(&st, &km, SendErrorKind::Timeout, &self.address(KERNEL));
                        return;
                    };
                    let Some(target_process) = st.process_map.get(&target) else {
                        self.printout(
                            &mut st,
                            2,
                            format!(
                                "event loop: process {source} sent message to non-existing {target}; dropping message"
                            ),
                        );
                        Self::throw(&st, &km, SendErrorKind::Timeout, &self.address(KERNEL));
                        return;
                    };
                    let allowed = target_process.public
                        || caps::holds(
                            &source_process.capabilities,
                            &caps::messaging(&format!("{our}@{target}")),
                        );
                    if !allowed {
                        self.printout(
                            &mut st,
                            0,
                            format!(
                                "event loop: process {source} doesn't have capability to message process {target}"
                            ),
                        );
                        Self::throw(&st, &km, SendErrorKind::Timeout, &self.address(KERNEL));
                        return;
                    }
                }
                if target == KERNEL {
                    Destination::Kernel
                } else if target == VFS {
                    Destination::Vfs
                } else if target == TIMER {
                    Destination::Timer
                } else if let Some(inbox) = st.senders.get(&target) {
                    Destination::Inbox(inbox.clone())
                } else {
                    let kind = match km.message {
                        Message::Request(_) => "Request",
                        Message::Response(_) => "Response",
                    };
                    self.printout(
                        &mut st,
                        0,
                        format!(
                            "event loop: got {kind} from {source} for {target}, but target doesn't exist (perhaps it terminated)"
                        ),
                    );
                    Self::throw(&st, &km, SendErrorKind::Timeout, &self.address(KERNEL));
                    return;
                }
            }
        };
        match destination {
            Destination::Kernel => self.handle_kernel_request(km),
            Destination::Vfs => match self.take_slow_vfs(&km) {
                Some(millis) => {
                    let kernel = Arc::clone(self);
                    self.runtime.spawn(async move {
                        tokio::time::sleep(Duration::from_millis(millis)).await;
                        kernel.handle_vfs_request(km);
                    });
                }
                None => self.handle_vfs_request(km),
            },
            Destination::Timer => self.handle_timer_request(km),
            Destination::Inbox(inbox) => {
                // A task that has ended drops its receiver; the message is lost, as in the runtime.
                inbox.send(Ok(km));
            }
            Destination::Network => match self.network.peer(&km.target.node) {
                // The peer's inbound task routes it, in order, with the peer's checks.
                Some(peer) => {
                    let _ = peer.net_inbox.send(km);
                }
                None => {
                    // net:distro:sys cannot reach the peer.
                    let net = km.target.clone();
                    Self::throw(&self.lock(), &km, SendErrorKind::Offline, &net);
                }
            },
        }
    }

    fn printout(&self, st: &mut KernelState, verbosity: u8, message: String) {
        st.prints
            .push((KERNEL.to_owned(), Print { verbosity, message }));
        self.notify();
    }

    /// `throw_timeout` (and net's `Offline`): if `km` is a request expecting a response, its local
    /// sender gets a `SendError` of `kind`.
    fn throw(st: &KernelState, km: &KernelMessage, kind: SendErrorKind, from: &Address) {
        let Message::Request(request) = &km.message else {
            return;
        };
        if request.expects_response.is_none() {
            return;
        }
        if let Some(inbox) = st.senders.get(&caps::format_process_id(&km.source.process)) {
            inbox.send(Err(WrappedSendError {
                id: km.id,
                source: from.clone(),
                error: SendError {
                    kind,
                    target: km.target.clone(),
                    message: km.message.clone(),
                    lazy_load_blob: km.blob.clone(),
                },
            }));
        }
    }

    /// Sends a response from `from` to the requester of `km` (its rsvp, else its source).
    fn respond(
        self: &Arc<Self>,
        from: &str,
        km: &KernelMessage,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    ) {
        self.route(KernelMessage {
            id: km.id,
            source: self.address(from),
            target: km.rsvp.clone().unwrap_or_else(|| km.source.clone()),
            rsvp: None,
            message: Message::Response((
                Response {
                    inherit: false,
                    body,
                    metadata: None,
                    capabilities: Vec::new(),
                },
                None,
            )),
            blob: blob.map(|bytes| LazyLoadBlob { mime: None, bytes }),
        });
    }

    /// A request from `our@kernel:distro:sys` to `target`, as the kernel sends `run` and its own
    /// commands.
    pub fn kernel_request(
        &self,
        target: &str,
        body: Vec<u8>,
        metadata: Option<String>,
    ) -> KernelMessage {
        KernelMessage {
            id: self.new_id(),
            source: self.address(KERNEL),
            target: self.address(target),
            rsvp: None,
            message: Message::Request(Request {
                inherit: false,
                expects_response: None,
                body,
                metadata,
                capabilities: Vec::new(),
            }),
            blob: None,
        }
    }

    // ---------------------------------------------------------------------------------------------
    // kernel:distro:sys

    /// Takes one matching kernel fault, if any.
    fn take_kernel_fault(&self, command: &str, target: &str) -> bool {
        let mut st = self.lock();
        let found = st.faults.iter_mut().find(|fault| match fault {
            Fault::Kernel {
                command: c,
                target: t,
                times,
            } => *times > 0 && c == command && t.as_deref().is_none_or(|t| t == target),
            Fault::Vfs { .. } | Fault::SlowVfs { .. } | Fault::Crash { .. } => false,
        });
        match found {
            Some(Fault::Kernel { times, .. }) => {
                *times -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether `source` sending `body` to `target` is the request a [`Fault::Crash`] waits for
    /// (counting it down if it is one of the matching requests before); a halting crash marks
    /// `source` as halted.
    pub(crate) fn take_crash_fault(&self, source: &str, target: &str, body: &[u8]) -> bool {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let name = |value: &Value| match value {
            Value::String(name) => Some(name.clone()),
            Value::Object(map) if map.len() == 1 => map.keys().next().cloned(),
            _ => None,
        };
        let (action, about) = if target == VFS {
            let action = request.get("action").and_then(name);
            let path = request
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (action, path)
        } else if target == KERNEL {
            let args = request.as_object().and_then(|map| map.values().next());
            let about = args.and_then(|args| match args {
                Value::String(id) => Some(id.clone()),
                Value::Object(map) => map
                    .get("id")
                    .or_else(|| map.get("target"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            });
            (name(&request), about)
        } else {
            return false;
        };
        let (Some(action), Some(about)) = (action, about) else {
            return false;
        };
        let mut st = self.lock();
        let found = st.faults.iter_mut().find_map(|fault| match fault {
            Fault::Crash {
                process,
                action: a,
                target: t,
                nth,
                halt,
            } if *nth > 0 && process == source && *a == action && about.starts_with(t.as_str()) => {
                *nth -= 1;
                Some((*nth == 0, *halt))
            }
            _ => None,
        });
        match found {
            Some((true, halt)) => {
                if halt {
                    st.halted.insert(source.to_owned());
                }
                true
            }
            _ => false,
        }
    }

    /// `handle_kernel_request`.
    fn handle_kernel_request(self: &Arc<Self>, km: KernelMessage) {
        let Message::Request(request) = &km.message else {
            return;
        };
        let command: Value = match serde_json::from_slice(&request.body) {
            Ok(command) => command,
            Err(e) => {
                self.print(KERNEL, 0, format!("kernel: couldn't parse command: {e}"));
                return;
            }
        };
        let (name, args) = match &command {
            Value::String(name) => (name.as_str(), Value::Null),
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((name, args)) => (name.as_str(), args.clone()),
                None => return,
            },
            _ => {
                self.print(
                    KERNEL,
                    0,
                    format!("kernel: couldn't parse command: {command}"),
                );
                return;
            }
        };
        let bad = |what: &str| {
            self.print(
                KERNEL,
                0,
                format!("kernel: couldn't parse command: malformed {what}: {command}"),
            );
        };
        match name {
            "InitializeProcess" => {
                let id = args
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(caps::parse_process_id);
                let on_exit = args.get("on_exit").and_then(caps::on_exit_from_json);
                let initial = args
                    .get("initial_capabilities")
                    .and_then(caps::caps_from_json);
                let (Some(id), Some(on_exit), Some(initial), Some(handle), Some(public)) = (
                    id,
                    on_exit,
                    initial,
                    args.get("wasm_bytes_handle").and_then(Value::as_str),
                    args.get("public").and_then(Value::as_bool),
                ) else {
                    return bad("InitializeProcess");
                };
                let wit_version = args
                    .get("wit_version")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok());
                self.initialize_process(&km, id, handle, wit_version, on_exit, initial, public);
            }
            "GrantCapabilities" | "DropCapabilities" => {
                let target = args.get("target").and_then(Value::as_str);
                let capabilities = args.get("capabilities").and_then(caps::caps_from_json);
                let (Some(target), Some(capabilities)) = (target, capabilities) else {
                    return bad(name);
                };
                if self.take_kernel_fault(name, target) {
                    self.print(
                        KERNEL,
                        0,
                        format!("kernel: injected fault: ignoring {name} for {target}"),
                    );
                    return;
                }
                let mut st = self.lock();
                if name == "GrantCapabilities" {
                    Self::add_caps(&mut st, target, capabilities);
                } else {
                    Self::drop_caps(&mut st, target, &capabilities);
                }
            }
            "SetOnExit" => {
                let target = args.get("target").and_then(Value::as_str);
                let on_exit = args.get("on_exit").and_then(caps::on_exit_from_json);
                let (Some(target), Some(on_exit)) = (target, on_exit) else {
                    return bad("SetOnExit");
                };
                if let Some(process) = self.lock().process_map.get_mut(target) {
                    process.on_exit = on_exit;
                }
            }
            "RunProcess" => {
                let Some(target) = args.as_str() else {
                    return bad("RunProcess");
                };
                let response = if self.take_kernel_fault(name, target) {
                    self.print(
                        KERNEL,
                        0,
                        format!("kernel: injected fault: RunProcess {target}"),
                    );
                    "RunProcessError"
                } else if self.run(target) {
                    "StartedProcess"
                } else {
                    "RunProcessError"
                };
                self.respond(KERNEL, &km, json!(response).to_string().into_bytes(), None);
            }
            "KillProcess" => {
                let Some(target) = args.as_str() else {
                    return bad("KillProcess");
                };
                if self.take_kernel_fault(name, target) {
                    self.print(
                        KERNEL,
                        0,
                        format!("kernel: injected fault: ignoring KillProcess {target}"),
                    );
                    return;
                }
                let revoke = request.metadata.as_deref() != Some("no-revoke");
                if !self.kill(target, revoke) {
                    self.print(
                        KERNEL,
                        2,
                        format!("kernel: no such process {target} to kill"),
                    );
                    return;
                }
                if request.expects_response.is_none() {
                    self.print(KERNEL, 2, format!("kernel: killing process {target}"));
                    return;
                }
                self.print(KERNEL, 0, format!("kernel: killing process {target}"));
                let body = json!({ "KilledProcess": target }).to_string().into_bytes();
                self.respond(KERNEL, &km, body, None);
            }
            "Debug" => self.print(
                KERNEL,
                0,
                "kernel: the test host does not serve Debug commands",
            ),
            "Booted" | "Shutdown" => {
                self.print(
                    KERNEL,
                    0,
                    format!("kernel: {name} is for the runtime only; ignored"),
                );
            }
            _ => self.print(
                KERNEL,
                0,
                format!("kernel: couldn't parse command: {command}"),
            ),
        }
    }

    /// `KernelCommand::InitializeProcess`.
    #[allow(clippy::too_many_arguments)]
    fn initialize_process(
        self: &Arc<Self>,
        km: &KernelMessage,
        id: ProcessId,
        wasm_bytes_handle: &str,
        wit_version: Option<u32>,
        on_exit: OnExit,
        initial: Vec<Capability>,
        public: bool,
    ) {
        let error = || json!("InitializeProcessError").to_string().into_bytes();
        let pid = caps::format_process_id(&id);
        let Some(blob) = &km.blob else {
            self.print(KERNEL, 0, "kernel: process startup requires bytes");
            return self.respond(KERNEL, km, error(), None);
        };
        if !caps::kimap_safe(&id) {
            self.print(
                KERNEL,
                0,
                format!("kernel: process id {pid} is not Kimap-safe"),
            );
            return self.respond(KERNEL, km, error(), None);
        }
        if self.take_kernel_fault("InitializeProcess", &pid) {
            self.print(
                KERNEL,
                0,
                format!("kernel: injected fault: InitializeProcess {pid}"),
            );
            return self.respond(KERNEL, km, error(), None);
        }
        let source = caps::format_process_id(&km.source.process);
        let response = {
            let mut st = self.lock();
            let parent_caps = st
                .process_map
                .get(&source)
                .map(|p| p.capabilities.clone())
                .unwrap_or_default();
            let mut valid = Vec::new();
            for cap in initial {
                if source == KERNEL || caps::holds(&parent_caps, &cap) {
                    if !caps::holds(&valid, &cap) {
                        valid.push(cap);
                    }
                } else {
                    let message = format!(
                        "kernel: InitializeProcess caller {source} doesn't have capability {}",
                        caps::display(&cap)
                    );
                    self.printout(&mut st, 0, message);
                }
            }
            let message_cap = caps::messaging(&format!("{}@{pid}", self.our));
            if !caps::holds(&valid, &message_cap) {
                valid.push(message_cap.clone());
            }
            Self::add_caps(&mut st, &source, vec![message_cap]);
            let persisted = PersistedProcess {
                wasm_bytes_handle: wasm_bytes_handle.to_owned(),
                wit_version,
                on_exit,
                capabilities: valid,
                public,
            };
            match self.start_process(&mut st, &pid, &persisted, blob.bytes.clone()) {
                Ok(()) => {
                    st.process_map.insert(pid, persisted);
                    "InitializedProcess"
                }
                Err(e) => {
                    self.printout(
                        &mut st,
                        0,
                        format!("kernel: error initializing process: {e}"),
                    );
                    "InitializeProcessError"
                }
            }
        };
        self.respond(KERNEL, km, json!(response).to_string().into_bytes(), None);
    }

    /// `start_process`: registers the process's inbox and spawns its task, which waits for `run`.
    pub fn start_process(
        self: &Arc<Self>,
        st: &mut KernelState,
        pid: &str,
        persisted: &PersistedProcess,
        wasm: Vec<u8>,
    ) -> Result<(), String> {
        if st.senders.contains_key(pid) {
            return Err(format!("process with ID {pid} already exists"));
        }
        let id = caps::parse_process_id(pid).ok_or_else(|| format!("bad process id {pid}"))?;
        let (sender, receiver) = unbounded_channel();
        st.senders
            .insert(pid.to_owned(), Inbox::Process(sender.clone()));
        let metadata = ProcessMetadata {
            our: caps::address(&self.our, &id),
            wasm_bytes_handle: persisted.wasm_bytes_handle.clone(),
            wit_version: persisted.wit_version,
            on_exit: persisted.on_exit.clone(),
            public: persisted.public,
        };
        let task =
            crate::process::make_process_loop(Arc::clone(self), metadata, receiver, sender, wasm);
        st.handles.insert(pid.to_owned(), self.runtime.spawn(task));
        st.statuses
            .insert(pid.to_owned(), ProcessStatus::Initialized);
        self.notify();
        Ok(())
    }

    /// Sends `run` to a process task; false if there is no such task or it has ended.
    pub fn run(&self, pid: &str) -> bool {
        let run = self.kernel_request(pid, b"run".to_vec(), None);
        let st = self.lock();
        match st.senders.get(pid) {
            Some(inbox @ Inbox::Process(_)) => inbox.send(Ok(run)),
            Some(Inbox::Mailbox(_)) => false,
            None => {
                drop(st);
                self.print(KERNEL, 0, format!("kernel: no such process {pid} to run"));
                false
            }
        }
    }

    /// Kills a process task: aborts it, removes it from the process map and, if `revoke`, revokes
    /// every cap it issued. False if there was no such task.
    pub fn kill(&self, pid: &str, revoke: bool) -> bool {
        let mut st = self.lock();
        let Some(handle) = st.handles.remove(pid) else {
            return false;
        };
        st.senders.remove(pid);
        handle.abort();
        st.process_map.remove(pid);
        if revoke {
            Self::revoke_all(&mut st, pid);
        }
        if let Some(status) = st.statuses.get_mut(pid) {
            if !status.is_final() {
                *status = ProcessStatus::Killed;
            }
        }
        self.notify();
        true
    }

    /// Removes a test mailbox (or other host-side process without a task) from the process map,
    /// as an `OnExit::None` process leaves it when it ends. False if there was none.
    pub fn remove_mailbox(&self, pid: &str) -> bool {
        let mut st = self.lock();
        if st.handles.contains_key(pid) || !matches!(st.senders.get(pid), Some(Inbox::Mailbox(_))) {
            return false;
        }
        st.senders.remove(pid);
        st.process_map.remove(pid);
        self.notify();
        true
    }

    /// The restart backoff: how long to wait before restarting `pid` now (`None`: at once).
    pub fn restart_delay(&self, pid: &str) -> Option<tokio::time::Instant> {
        let mut st = self.lock();
        let now = tokio::time::Instant::now();
        let (wait, backoff) = match st.backoffs.get(pid) {
            Some(b) if b.next_soonest > now => (
                Some(b.next_soonest),
                Backoff {
                    next_soonest: b.next_soonest + Duration::from_secs(2u64.pow(b.attempts)),
                    attempts: b.attempts + 1,
                },
            ),
            _ => (
                None,
                Backoff {
                    next_soonest: now + Duration::from_secs(1),
                    attempts: 0,
                },
            ),
        };
        st.backoffs.insert(pid.to_owned(), backoff);
        wait
    }

    // ---------------------------------------------------------------------------------------------
    // vfs:distro:sys

    /// Takes one matching VFS fault for this request body, if any.
    fn take_vfs_fault(&self, body: &[u8]) -> bool {
        let Some((action, path)) = vfs_action_and_path(body) else {
            return false;
        };
        let mut st = self.lock();
        let found = st.faults.iter_mut().find(|fault| match fault {
            Fault::Vfs {
                action: a,
                path_prefix,
                times,
            } => *times > 0 && *a == action && path.starts_with(path_prefix.as_str()),
            Fault::Kernel { .. } | Fault::SlowVfs { .. } | Fault::Crash { .. } => false,
        });
        match found {
            Some(Fault::Vfs { times, .. }) => {
                *times -= 1;
                true
            }
            _ => false,
        }
    }

    /// How late the VFS answers `km`, if a [`Fault::SlowVfs`] matches it.
    fn take_slow_vfs(&self, km: &KernelMessage) -> Option<u64> {
        let Message::Request(request) = &km.message else {
            return None;
        };
        let (action, path) = vfs_action_and_path(&request.body)?;
        let mut st = self.lock();
        st.faults.iter_mut().find_map(|fault| match fault {
            Fault::SlowVfs {
                action: a,
                path_prefix,
                millis,
                times,
            } if *times > 0 && *a == action && path.starts_with(path_prefix.as_str()) => {
                *times -= 1;
                Some(*millis)
            }
            _ => None,
        })
    }

    /// Serves one VFS request: local sources only, the kernel bypasses the cap check, grants go
    /// to the caller, and the answer goes to the rsvp or (if a response is expected) the source.
    fn handle_vfs_request(self: &Arc<Self>, km: KernelMessage) {
        let Message::Request(request) = &km.message else {
            return;
        };
        if km.source.node != self.our {
            self.print(
                VFS,
                0,
                format!(
                    "vfs: got request from {}, but requests must come from our node",
                    format_address(&km.source)
                ),
            );
            return;
        }
        let source = caps::format_process_id(&km.source.process);
        if let Ok(call) = serde_json::from_slice::<Value>(&request.body) {
            let action = match &call["action"] {
                Value::String(name) => name.clone(),
                Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
                _ => String::new(),
            };
            self.lock().vfs_log.push(VfsCall {
                at: Instant::now(),
                source: source.clone(),
                action,
                path: call["path"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let (body, blob) = if self.take_vfs_fault(&request.body) {
            (
                json!({"Err": {"IOError": "injected fault"}})
                    .to_string()
                    .into_bytes(),
                None,
            )
        } else {
            let held = self.capabilities(&source);
            let vfs = self.address(VFS);
            let is_kernel = source == KERNEL;
            let has_cap = |params: &Value| {
                is_kernel
                    || held.iter().any(|cap| {
                        format_address(&cap.issuer) == format_address(&vfs)
                            && serde_json::from_str::<Value>(&cap.params)
                                .is_ok_and(|p| p == *params)
                    })
            };
            let caller = VfsCaller {
                package_name: &km.source.process.package_name,
                publisher_node: &km.source.process.publisher_node,
                has_cap: &has_cap,
            };
            let reply = self.vfs.handle(
                &caller,
                &request.body,
                km.blob.as_ref().map(|b| b.bytes.as_slice()),
            );
            if !reply.grants.is_empty() {
                let grants = reply
                    .grants
                    .iter()
                    .map(|params| Capability {
                        issuer: vfs.clone(),
                        params: params.to_string(),
                    })
                    .collect();
                Self::add_caps(&mut self.lock(), &source, grants);
            }
            (reply.body, reply.blob)
        };
        if km.rsvp.is_some() || request.expects_response.is_some() {
            self.respond(VFS, &km, body, blob);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // timer:distro:sys

    /// Serves one timer request as the runtime's `timer_service` does (`kinode/src/timer.rs`):
    /// `{"SetTimer": ms}` from a local process is answered with an empty response after `ms`
    /// milliseconds (at once for 0), to the rsvp or the source; a bad body is printed and dropped.
    /// Timers do not survive a reboot: the runtime keeps them in memory too.
    fn handle_timer_request(self: &Arc<Self>, km: KernelMessage) {
        let Message::Request(request) = &km.message else {
            return;
        };
        if km.source.node != self.our {
            return;
        }
        let millis = match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::String(debug)) if debug == "Debug" => return,
            Ok(body) => body.get("SetTimer").and_then(Value::as_u64),
            Err(_) => None,
        };
        let Some(millis) = millis else {
            self.print(
                TIMER,
                1,
                "timer service received a request with an invalid body",
            );
            return;
        };
        let kernel = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            kernel.respond(TIMER, &km, Vec::new(), None);
        });
    }

    // ---------------------------------------------------------------------------------------------
    // Process state (`state:distro:sys`).

    /// `get-state`.
    pub fn get_state(&self, pid: &str) -> Option<Vec<u8>> {
        self.lock().process_state.get(pid).cloned()
    }

    /// `set-state` / `clear-state` (`None`).
    pub fn set_state(&self, pid: &str, bytes: Option<Vec<u8>>) {
        let mut st = self.lock();
        match bytes {
            Some(bytes) => st.process_state.insert(pid.to_owned(), bytes),
            None => st.process_state.remove(pid),
        };
    }
}

/// The action (`"Write"`, or the key of `{"CreateDrive": ...}`-style actions) and path of a VFS
/// request body, as faults match them; `None` if the body is not JSON.
fn vfs_action_and_path(body: &[u8]) -> Option<(String, String)> {
    let request = serde_json::from_slice::<Value>(body).ok()?;
    let path = request.get("path").and_then(Value::as_str).unwrap_or("");
    let action = match request.get("action") {
        Some(Value::String(action)) => action.clone(),
        Some(Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    Some((action, path.to_owned()))
}
