//! Test-controlled processes: a [`Mailbox`] is an address on (or off) the node whose messages the
//! test sends and receives synchronously, with no wasm behind it.
//!
//! A local mailbox is a process-map entry like a runtime module's (empty `wasm_bytes_handle`): it
//! holds capabilities, is subject to the same messaging checks as a process, and its attached
//! capabilities are filtered with `FilterCaps`. A mailbox at another node's address stands in for a
//! process on that node: messages to it are what `net:distro:sys` would carry, and messages from
//! it arrive with that node as their source (the target then needs the `"network"` capability, as
//! in the runtime). Its attached capabilities are not filtered (that is the remote kernel's job).
//!
//! There is no runtime counterpart; the timeout of [`Mailbox::request`] is kept by the mailbox,
//! where a process's is kept by a task of its own (`send_request_v1`).

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::bindings::kinode::process::standard::{
    Address, Capability, LazyLoadBlob, Message, Request, Response, SendErrorKind,
};
use crate::caps;
use crate::kernel::{Delivery, Kernel, KernelMessage};
use crate::process::format_address;

/// A test-controlled process.
pub struct Mailbox {
    kernel: Arc<Kernel>,
    address: Address,
    local: bool,
    receiver: Mutex<Receiver<Delivery>>,
    /// Deliveries taken while waiting for a particular response.
    queue: Mutex<VecDeque<Delivery>>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("address", &format_address(&self.address))
            .finish_non_exhaustive()
    }
}

/// A response a mailbox got.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Who answered: `node@process:package:publisher`.
    pub source: String,
    /// The response body.
    pub body: Vec<u8>,
    /// The blob's bytes.
    pub blob: Option<Vec<u8>>,
    /// The response metadata.
    pub metadata: Option<String>,
    /// Capabilities attached to the response.
    pub capabilities: Vec<Capability>,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// What kind of message a mailbox received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingKind {
    /// A request; `expects_response` as sent.
    Request {
        /// Seconds the sender waits, if it waits.
        expects_response: Option<u64>,
    },
    /// A response.
    Response,
    /// A request of ours failed; `source` is its target, `body` its body.
    SendError(SendErrorKind),
}

/// A message a mailbox received.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message id (a response carries its request's).
    pub id: u64,
    /// The sender: `node@process:package:publisher`.
    pub source: String,
    /// Where a response should go, if not to `source`.
    pub rsvp: Option<String>,
    /// Request, response or send error.
    pub kind: IncomingKind,
    /// The body.
    pub body: Vec<u8>,
    /// The blob's bytes.
    pub blob: Option<Vec<u8>>,
    /// The blob's MIME type, if it has one.
    pub mime: Option<String>,
    /// The metadata.
    pub metadata: Option<String>,
    /// Attached capabilities.
    pub capabilities: Vec<Capability>,
    /// Whether the request has `inherit` set.
    pub inherit: bool,
}

impl Incoming {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn from_delivery(delivery: Delivery) -> Self {
        match delivery {
            Ok(km) => {
                let (kind, body, metadata, capabilities, inherit) = match km.message {
                    Message::Request(r) => (
                        IncomingKind::Request {
                            expects_response: r.expects_response,
                        },
                        r.body,
                        r.metadata,
                        r.capabilities,
                        r.inherit,
                    ),
                    Message::Response((r, _)) => (
                        IncomingKind::Response,
                        r.body,
                        r.metadata,
                        r.capabilities,
                        r.inherit,
                    ),
                };
                Incoming {
                    id: km.id,
                    source: format_address(&km.source),
                    rsvp: km.rsvp.as_ref().map(format_address),
                    kind,
                    body,
                    mime: km.blob.as_ref().and_then(|b| b.mime.clone()),
                    blob: km.blob.map(|b| b.bytes),
                    metadata,
                    capabilities,
                    inherit,
                }
            }
            Err(e) => {
                let (body, metadata) = match e.error.message {
                    Message::Request(r) => (r.body, r.metadata),
                    Message::Response((r, _)) => (r.body, r.metadata),
                };
                Incoming {
                    id: e.id,
                    source: format_address(&e.error.target),
                    rsvp: None,
                    kind: IncomingKind::SendError(e.error.kind),
                    body,
                    mime: e.error.lazy_load_blob.as_ref().and_then(|b| b.mime.clone()),
                    blob: e.error.lazy_load_blob.map(|b| b.bytes),
                    metadata,
                    capabilities: Vec::new(),
                    inherit: false,
                }
            }
        }
    }
}

impl Mailbox {
    pub(crate) fn new(
        kernel: Arc<Kernel>,
        address: Address,
        local: bool,
        receiver: Receiver<Delivery>,
    ) -> Self {
        Self {
            kernel,
            address,
            local,
            receiver: Mutex::new(receiver),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Registers a mailbox at `address` on `kernel`'s node (see [`crate::Node::mailbox`]).
    pub(crate) fn register(
        kernel: &Arc<Kernel>,
        address: &str,
        public: bool,
    ) -> Result<Mailbox, String> {
        let parsed = crate::process::parse_address(address)
            .ok_or_else(|| format!("`{address}` is not node@process:package:publisher"))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let inbox = crate::kernel::Inbox::Mailbox(sender);
        let local = parsed.node == kernel.our;
        let mut st = kernel.lock();
        if local {
            let pid = caps::format_process_id(&parsed.process);
            if st.senders.contains_key(&pid) {
                return Err(format!("process {pid} already exists on {}", kernel.our));
            }
            st.senders.insert(pid.clone(), inbox);
            st.process_map.insert(
                pid,
                crate::kernel::PersistedProcess {
                    wasm_bytes_handle: String::new(),
                    wit_version: None,
                    on_exit: crate::bindings::kinode::process::standard::OnExit::None,
                    capabilities: Vec::new(),
                    public,
                },
            );
        } else {
            st.remote.insert(address.to_owned(), inbox);
        }
        drop(st);
        Ok(Mailbox::new(Arc::clone(kernel), parsed, local, receiver))
    }

    /// `node@process:package:publisher`.
    pub fn address(&self) -> String {
        format_address(&self.address)
    }

    /// The process id part.
    pub fn process_id(&self) -> String {
        caps::format_process_id(&self.address.process)
    }

    /// The capabilities this mailbox's process holds (none for a remote mailbox).
    pub fn capabilities(&self) -> Vec<Capability> {
        self.kernel.capabilities(&self.process_id())
    }

    /// Sends a request to `target` (`node@process:package:publisher`) and returns its id.
    /// `expects_response: Some(secs)` makes the kernel report refusals as a `SendError` to this
    /// mailbox; [`Mailbox::await_response`] waits for the answer.
    ///
    /// # Panics
    /// If `target` is not an address.
    pub fn send_request(&self, target: &str, request: Request, blob: Option<Vec<u8>>) -> u64 {
        let target = crate::process::parse_address(target)
            .unwrap_or_else(|| panic!("`{target}` is not node@process:package:publisher"));
        let mut request = request;
        if self.local && !request.capabilities.is_empty() {
            let st = self.kernel.lock();
            request.capabilities = Kernel::filter_caps(
                &st,
                &self.process_id(),
                std::mem::take(&mut request.capabilities),
            );
        }
        let id = self.kernel.new_id();
        let rsvp = request.expects_response.map(|_| self.address.clone());
        self.kernel.route(KernelMessage {
            id,
            source: self.address.clone(),
            target,
            rsvp,
            message: Message::Request(request),
            blob: blob.map(|bytes| LazyLoadBlob { mime: None, bytes }),
        });
        id
    }

    /// Sends a request that expects no response.
    pub fn send(
        &self,
        target: &str,
        body: impl Into<Vec<u8>>,
        blob: Option<Vec<u8>>,
        capabilities: Vec<Capability>,
    ) -> u64 {
        self.send_request(target, request(body, None, capabilities), blob)
    }

    /// Sends a request expecting a response within `timeout_s` seconds and waits for it. Other
    /// messages that arrive meanwhile stay queued for [`Mailbox::recv`].
    pub fn request(
        &self,
        target: &str,
        body: impl Into<Vec<u8>>,
        blob: Option<Vec<u8>>,
        capabilities: Vec<Capability>,
        timeout_s: u64,
    ) -> Result<Reply, SendErrorKind> {
        let id = self.send_request(target, request(body, Some(timeout_s), capabilities), blob);
        self.await_response(id, Duration::from_secs(timeout_s))
    }

    /// Sends a kernel command (JSON) to this node's kernel without awaiting an answer, as
    /// installers fire `KillProcess` and `GrantCapabilities`.
    pub fn kernel_command(&self, command: &serde_json::Value) {
        let kernel = format!("{}@{}", self.address.node, caps::KERNEL);
        self.send(&kernel, command.to_string(), None, Vec::new());
    }

    /// Sends a kernel command with `blob` and requires the kernel's answer to be the JSON string
    /// `expected` (e.g. `InitializedProcess`) within `timeout_s` seconds.
    pub fn await_kernel_command(
        &self,
        command: &serde_json::Value,
        blob: Option<Vec<u8>>,
        expected: &str,
        timeout_s: u64,
    ) -> anyhow::Result<()> {
        let kernel = format!("{}@{}", self.address.node, caps::KERNEL);
        let reply = self
            .request(&kernel, command.to_string(), blob, Vec::new(), timeout_s)
            .map_err(|e| anyhow::anyhow!("kernel {command}: {e:?}"))?;
        if reply.json() != serde_json::json!(expected) {
            anyhow::bail!("kernel answered {} to {command}", reply.text());
        }
        Ok(())
    }

    /// Waits up to `timeout` for the response to request `id` (or its `SendError`); nothing within
    /// the time is `Timeout`.
    pub fn await_response(&self, id: u64, timeout: Duration) -> Result<Reply, SendErrorKind> {
        let matches = |d: &Delivery| match d {
            Ok(km) => km.id == id && matches!(km.message, Message::Response(_)),
            Err(e) => e.id == id,
        };
        let to_reply = |d: Delivery| match d {
            Ok(km) => match km.message {
                Message::Response((response, _)) => Ok(Reply {
                    source: format_address(&km.source),
                    body: response.body,
                    blob: km.blob.map(|b| b.bytes),
                    metadata: response.metadata,
                    capabilities: response.capabilities,
                }),
                Message::Request(_) => Err(SendErrorKind::Timeout),
            },
            Err(e) => Err(e.error.kind),
        };
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(index) = queue.iter().position(matches) {
                if let Some(found) = queue.remove(index) {
                    return to_reply(found);
                }
            }
        }
        let deadline = Instant::now() + timeout;
        let receiver = self.receiver.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(delivery) if matches(&delivery) => return to_reply(delivery),
                Ok(delivery) => self
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_back(delivery),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(SendErrorKind::Timeout)
                }
            }
        }
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Incoming> {
        if let Some(delivery) = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
        {
            return Some(Incoming::from_delivery(delivery));
        }
        let receiver = self.receiver.lock().unwrap_or_else(PoisonError::into_inner);
        receiver
            .recv_timeout(timeout)
            .ok()
            .map(Incoming::from_delivery)
    }

    /// Answers `to` (a request this mailbox received): to its rsvp, else its source, with its id.
    ///
    /// # Panics
    /// If `to` names no address (it came from [`Mailbox::recv`], so it does).
    pub fn respond(
        &self,
        to: &Incoming,
        body: impl Into<Vec<u8>>,
        blob: Option<Vec<u8>>,
        capabilities: Vec<Capability>,
    ) {
        let target = to.rsvp.as_deref().unwrap_or(&to.source);
        let target = crate::process::parse_address(target)
            .unwrap_or_else(|| panic!("`{target}` is not an address"));
        let capabilities = if self.local && !capabilities.is_empty() {
            let st = self.kernel.lock();
            Kernel::filter_caps(&st, &self.process_id(), capabilities)
        } else {
            capabilities
        };
        self.kernel.route(KernelMessage {
            id: to.id,
            source: self.address.clone(),
            target,
            rsvp: None,
            message: Message::Response((
                Response {
                    inherit: false,
                    body: body.into(),
                    metadata: None,
                    capabilities,
                },
                None,
            )),
            blob: blob.map(|bytes| LazyLoadBlob { mime: None, bytes }),
        });
    }
}

/// A plain request: no inherit, no metadata.
pub fn request(
    body: impl Into<Vec<u8>>,
    expects_response: Option<u64>,
    capabilities: Vec<Capability>,
) -> Request {
    Request {
        inherit: false,
        expects_response,
        body: body.into(),
        metadata: None,
        capabilities,
    }
}
