//! A process on the test node: its store data, its message handling and its task.
//!
//! Mirrors the kinode repo's `kinode/src/kernel/process.rs` (`ProcessState`, `ProcessWasiV1`,
//! `make_process_loop`, the WASI context of `make_table_and_wasi`) and the message half of
//! `standard_host_v1.rs` (`send_request_v1`, `send_response_v1`, `ingest_message_v1`,
//! `kernel_message_to_process_receive_v1`, `get_specific_message_for_process_v1`): request ids and
//! `inherit` (an inheriting request reuses the prompting message's id and blob and passes its
//! rsvp on), rsvp, per-request timeout tasks that deliver a `Timeout` `SendError` with the
//! request's context, responses dropped unless a request is outstanding for them, and
//! `send-and-await-response` queueing everything else meanwhile.
//!
//! Simplified: capabilities attached to messages are not signed, so none is pruned on receipt.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::pipe::MemoryOutputPipe;
use wasmtime_wasi::{DirPerms, FilePerms, WasiCtx, WasiCtxBuilder, WasiView};

use crate::bindings::kinode::process::standard::{
    Address, LazyLoadBlob, Message, OnExit, ProcessId, Request, Response, SendError,
};
use crate::bindings::ProcessV1;
use crate::caps::{self, KERNEL};
use crate::kernel::{Delivery, Kernel, KernelMessage, ProcessStatus, WrappedSendError};
use crate::runtime::{compile, error_message, missing_import, STDERR_CAPACITY};

/// One `print-to-terminal` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Print {
    /// The verbosity level the process asked for (0 is always shown by a real terminal).
    pub verbosity: u8,
    /// The text, as the process sent it.
    pub message: String,
}

/// What the kernel tells a process about itself (the runtime's `ProcessMetadata`).
#[derive(Clone, Debug)]
pub(crate) struct ProcessMetadata {
    pub our: Address,
    pub wasm_bytes_handle: String,
    pub wit_version: Option<u32>,
    pub on_exit: OnExit,
    pub public: bool,
}

/// What a process kept when it sent a request expecting a response.
pub(crate) struct ProcessContext {
    /// The message that prompted the request, restored when the response arrives.
    prompting_message: Option<KernelMessage>,
    /// The context given with the request.
    context: Option<Vec<u8>>,
}

/// The kinode side of a process's store data.
pub struct ProcessState {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) metadata: ProcessMetadata,
    /// The process id as a string.
    pub(crate) pid: String,
    recv: UnboundedReceiver<Delivery>,
    self_sender: UnboundedSender<Delivery>,
    /// The request being handled (only one that someone awaits an answer to), or, while a
    /// response is handled, the message that prompted its request.
    prompting_message: Option<KernelMessage>,
    /// The blob of the last message received (kept until a message with a blob arrives).
    pub(crate) last_blob: Option<LazyLoadBlob>,
    /// Whether the last message received had a blob: `get-blob` and `has-blob` answer for that
    /// message only, `last-blob` for any (the runtime's `last_message_blobbed`).
    pub(crate) last_message_blobbed: bool,
    contexts: HashMap<u64, (ProcessContext, JoinHandle<()>)>,
    message_queue: VecDeque<Delivery>,
}

/// The store data of a process, as in the runtime: process state, resource table and WASI context.
pub struct ProcessWasiV1 {
    /// The kinode side.
    pub process: ProcessState,
    /// WASI resources.
    pub table: ResourceTable,
    /// The WASI context.
    pub wasi: WasiCtx,
    /// Records the process's memory size (test instrumentation; the runtime sets no limiter).
    memory: MemoryPeak,
}

/// A resource limiter that limits nothing, as the runtime sets none, and records the largest
/// size any of the process's linear memories reached: its peak guest memory, since a linear
/// memory never shrinks.
#[derive(Clone, Default)]
pub(crate) struct MemoryPeak(Arc<AtomicUsize>);

impl MemoryPeak {
    /// The largest size reached so far, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl ResourceLimiter for MemoryPeak {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> anyhow::Result<bool> {
        self.0.fetch_max(desired, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> anyhow::Result<bool> {
        Ok(true)
    }
}

impl WasiView for ProcessWasiV1 {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn ctx(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

/// What `receive` returns (the WIT's shape, large error and all).
pub(crate) type Received = Result<(Address, Message), (SendError, Option<Vec<u8>>)>;

impl ProcessState {
    /// `receive`: the next queued message, else the next one to arrive.
    pub(crate) async fn next_message(&mut self) -> Received {
        let delivery = match self.message_queue.pop_front() {
            Some(delivery) => delivery,
            None => self.ingest().await,
        };
        self.take_delivery(delivery)
    }

    /// Waits for the message with id `awaited`, queueing all others.
    async fn specific_message(&mut self, awaited: u64) -> Received {
        let id_of = |delivery: &Delivery| match delivery {
            Ok(km) => km.id,
            Err(e) => e.id,
        };
        if let Some(index) = self
            .message_queue
            .iter()
            .position(|d| matches!(d, Ok(km) if km.id == awaited))
        {
            if let Some(delivery) = self.message_queue.remove(index) {
                return self.take_delivery(delivery);
            }
        }
        loop {
            let delivery = self.ingest().await;
            if id_of(&delivery) == awaited {
                return self.take_delivery(delivery);
            }
            self.message_queue.push_back(delivery);
        }
    }

    /// The next valid delivery: requests always; responses and errors only for an outstanding
    /// request (whose timeout task is then cancelled).
    async fn ingest(&mut self) -> Delivery {
        loop {
            let Some(delivery) = self.recv.recv().await else {
                // Cannot happen: we hold a sender ourselves.
                return std::future::pending().await;
            };
            let id = match &delivery {
                Ok(km) if matches!(km.message, Message::Request(_)) => return delivery,
                Ok(km) => km.id,
                Err(e) => e.id,
            };
            if let Some((_, timeout)) = self.contexts.get(&id) {
                timeout.abort();
                return delivery;
            }
        }
    }

    #[allow(clippy::result_large_err)] // the WIT's result type
    /// Turns a delivery into what `receive` returns, updating the prompting message and blob.
    fn take_delivery(&mut self, delivery: Delivery) -> Received {
        let mut km = match delivery {
            Ok(km) => km,
            Err(e) => {
                self.last_message_blobbed = false;
                let context = match self.contexts.remove(&e.id) {
                    Some((context, _)) => {
                        self.prompting_message = context.prompting_message;
                        context.context
                    }
                    None => None,
                };
                return Err((e.error, context));
            }
        };
        self.last_message_blobbed = km.blob.is_some();
        if let Some(blob) = km.blob.take() {
            self.last_blob = Some(blob);
        }
        let context = match &km.message {
            Message::Request(request) => {
                // Only a request someone can be answered becomes the prompting message.
                if request.expects_response.is_some() || km.rsvp.is_some() {
                    self.prompting_message = Some(km.clone());
                }
                None
            }
            Message::Response(_) => match self.contexts.remove(&km.id) {
                Some((context, _)) => {
                    self.prompting_message = context.prompting_message;
                    context.context
                }
                None => {
                    self.prompting_message = Some(km.clone());
                    None
                }
            },
        };
        let message = match km.message {
            // The sender's context is not ours: replace it with the one we kept.
            Message::Response((response, _)) => Message::Response((response, context)),
            request => request,
        };
        Ok((km.source, message))
    }

    /// `send-request`: returns the request's id, or the trap of an injected [`Fault::Crash`]
    /// (after the request went out).
    ///
    /// [`Fault::Crash`]: crate::kernel::Fault::Crash
    pub(crate) fn send_request(
        &mut self,
        fake_source: Option<Address>,
        target: Address,
        mut request: Request,
        context: Option<Vec<u8>>,
        blob: Option<LazyLoadBlob>,
    ) -> anyhow::Result<u64> {
        let crash = fake_source.is_none()
            && (target.node == self.metadata.our.node || target.node == "our")
            && self.kernel.take_crash_fault(
                &self.pid,
                &caps::format_process_id(&target.process),
                &request.body,
            );
        let source = fake_source.unwrap_or_else(|| self.metadata.our.clone());
        let id = match (&self.prompting_message, request.inherit) {
            (Some(prompt), true) => prompt.id,
            _ => loop {
                let id = self.kernel.new_id();
                if !self.contexts.contains_key(&id) {
                    break id;
                }
            },
        };
        let blob = match blob {
            Some(blob) => Some(blob),
            None if request.inherit => self.last_blob.clone(),
            None => None,
        };
        if !request.capabilities.is_empty() {
            let st = self.kernel.lock();
            request.capabilities =
                Kernel::filter_caps(&st, &self.pid, std::mem::take(&mut request.capabilities));
        }
        if let Some(seconds) = request.expects_response {
            let sender = self.self_sender.clone();
            let error = WrappedSendError {
                id,
                source: target.clone(),
                error: SendError {
                    kind: crate::bindings::kinode::process::standard::SendErrorKind::Timeout,
                    target: target.clone(),
                    message: Message::Request(request.clone()),
                    lazy_load_blob: blob.clone(),
                },
            };
            let timeout = self.kernel.runtime.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                let _ = sender.send(Err(error));
            });
            let previous = self.contexts.insert(
                id,
                (
                    ProcessContext {
                        prompting_message: self.prompting_message.clone(),
                        context,
                    },
                    timeout,
                ),
            );
            if let Some((_, old)) = previous {
                old.abort();
            }
        }
        let rsvp = match (
            request.expects_response,
            request.inherit,
            &self.prompting_message,
        ) {
            (Some(_), _, _) => Some(self.metadata.our.clone()),
            (None, true, Some(prompt)) => prompt.rsvp.clone(),
            _ => None,
        };
        self.kernel.route(KernelMessage {
            id,
            source,
            target,
            rsvp,
            message: Message::Request(request),
            blob,
        });
        if crash {
            anyhow::bail!("injected crash of {} after it sent a request", self.pid);
        }
        Ok(id)
    }

    /// `send-response`: answers the prompting message (to its rsvp, else its source).
    pub(crate) fn send_response(&mut self, mut response: Response, blob: Option<LazyLoadBlob>) {
        let Some(prompt) = &self.prompting_message else {
            self.kernel.print(
                KERNEL,
                0,
                "kernel: need non-None prompting_message to handle Response",
            );
            return;
        };
        let (id, target) = (
            prompt.id,
            prompt.rsvp.clone().unwrap_or_else(|| prompt.source.clone()),
        );
        let blob = if response.inherit {
            self.last_blob.clone()
        } else {
            blob
        };
        if !response.capabilities.is_empty() {
            let st = self.kernel.lock();
            response.capabilities =
                Kernel::filter_caps(&st, &self.pid, std::mem::take(&mut response.capabilities));
        }
        self.kernel.route(KernelMessage {
            id,
            source: self.metadata.our.clone(),
            target,
            rsvp: None,
            message: Message::Response((response, None)),
            blob,
        });
    }

    /// `send-and-await-response` (also used by the host itself with the kernel as fake source).
    pub(crate) async fn send_and_await_response(
        &mut self,
        fake_source: Option<Address>,
        target: Address,
        request: Request,
        blob: Option<LazyLoadBlob>,
    ) -> anyhow::Result<Result<(Address, Message), SendError>> {
        if request.expects_response.is_none() {
            anyhow::bail!(
                "kernel: got invalid send_and_await_response() Request from {}: must expect response",
                self.pid
            );
        }
        if format_address(&target) == format_address(&self.metadata.our) {
            anyhow::bail!(
                "kernel: got invalid send_and_await_response() Request from and to {}: cannot await a Request to `our`: will deadlock",
                format_address(&self.metadata.our)
            );
        }
        let id = self.send_request(fake_source, target, request, None, blob)?;
        match self.specific_message(id).await {
            Ok((address, Message::Response(response))) => {
                Ok(Ok((address, Message::Response(response))))
            }
            Ok((_, Message::Request(_))) => {
                anyhow::bail!("fatal: received Request instead of Response")
            }
            Err((error, _context)) => Ok(Err(error)),
        }
    }
}

/// `make_table_and_wasi`: stderr in a 5000-byte pipe, `{home}/vfs/{package}:{publisher}/tmp`
/// preopened under its own absolute path and named by `TEMP_DIR`. (Like the runtime, a tmp
/// directory that cannot be made or preopened is silently left out.)
pub(crate) fn make_wasi(home: &Path, process: &ProcessId) -> (WasiCtx, MemoryOutputPipe) {
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let tmp = home
        .join("vfs")
        .join(format!(
            "{}:{}",
            process.package_name, process.publisher_node
        ))
        .join("tmp");
    let mut builder = WasiCtxBuilder::new();
    if std::fs::create_dir_all(&tmp).is_ok() {
        let tmp = tmp.to_string_lossy().into_owned();
        if builder
            .preopened_dir(&tmp, &tmp, DirPerms::all(), FilePerms::all())
            .is_ok()
        {
            builder.env("TEMP_DIR", &tmp);
        }
    }
    builder.stderr(stderr.clone());
    (builder.build(), stderr)
}

fn is_run(km: &KernelMessage, our_node: &str) -> bool {
    km.source.node == our_node
        && caps::format_process_id(&km.source.process) == KERNEL
        && matches!(&km.message, Message::Request(r)
            if !r.inherit && r.expects_response.is_none() && r.body == b"run"
                && r.metadata.is_none() && r.capabilities.is_empty())
}

/// `make_process_loop`: waits for `run`, compiles and instantiates the component, calls `init`,
/// records how it ended, then carries out the on-exit behaviour (none after a halting
/// [`crate::Fault::Crash`]).
pub(crate) async fn make_process_loop(
    kernel: Arc<Kernel>,
    metadata: ProcessMetadata,
    mut recv: UnboundedReceiver<Delivery>,
    self_sender: UnboundedSender<Delivery>,
    wasm: Vec<u8>,
) {
    let pid = caps::format_process_id(&metadata.our.process);
    let mut pre_boot = Vec::new();
    loop {
        match recv.recv().await {
            None => return,
            Some(Ok(km)) if is_run(&km, &metadata.our.node) => break,
            Some(other) => pre_boot.push(other),
        }
    }
    for delivery in pre_boot {
        let _ = self_sender.send(delivery);
    }
    kernel.set_status(&pid, ProcessStatus::Running);
    let our = format_address(&metadata.our);

    let component = match compile(&kernel.engine, &wasm) {
        Ok(component) => component,
        Err(e) => {
            let message = format!("{e:#}");
            kernel.print(
                KERNEL,
                0,
                format!("kernel: process {pid} failed to compile: {message}"),
            );
            kernel.set_status(&pid, ProcessStatus::FailedToCompile { message });
            return;
        }
    };
    let (wasi, stderr) = make_wasi(&kernel.home, &metadata.our.process);
    let state = ProcessState {
        kernel: Arc::clone(&kernel),
        metadata,
        pid: pid.clone(),
        recv,
        self_sender,
        prompting_message: None,
        last_blob: None,
        last_message_blobbed: false,
        contexts: HashMap::new(),
        message_queue: VecDeque::new(),
    };
    let memory = MemoryPeak::default();
    kernel.lock().memory.insert(pid.clone(), memory.clone());
    let mut store = Store::new(
        &kernel.engine,
        ProcessWasiV1 {
            process: state,
            table: ResourceTable::new(),
            wasi,
            memory,
        },
    );
    store.limiter(|data| &mut data.memory);
    let process = match ProcessV1::instantiate_async(&mut store, &component, &kernel.linker).await {
        Ok(process) => process,
        Err(e) => {
            kernel.print(
                KERNEL,
                0,
                format!("kernel: process {pid} failed to instantiate: {e:?}"),
            );
            kernel.set_status(
                &pid,
                ProcessStatus::FailedToInstantiate {
                    import: missing_import(&e),
                    message: format!("{e:#}"),
                },
            );
            return;
        }
    };
    let result = process.call_init(&mut store, &our).await;
    let metadata = store.data().process.metadata.clone();
    let stderr = String::from_utf8_lossy(&stderr.contents()).into_owned();
    kernel
        .lock()
        .exits
        .insert(pid.clone(), (metadata.on_exit.clone(), stderr.clone()));
    match result {
        Ok(()) => {
            kernel.print(KERNEL, 1, format!("process {our} returned without error"));
            kernel.set_status(&pid, ProcessStatus::Exited);
        }
        Err(e) => {
            let output = if stderr.is_empty() {
                e.root_cause().to_string()
            } else {
                stderr.clone()
            };
            kernel.print(
                KERNEL,
                0,
                format!("\x1b[38;5;196mprocess {our} ended with error:\x1b[0m\n{output}"),
            );
            kernel.set_status(
                &pid,
                ProcessStatus::Trapped {
                    message: error_message(&e),
                    stderr,
                    trap: e.downcast_ref::<Trap>().copied(),
                    details: format!("{e:#}"),
                },
            );
        }
    }
    drop(store);
    kernel.print(
        KERNEL,
        1,
        format!(
            "process {pid} has OnExit behavior {}",
            caps::on_exit_name(&metadata.on_exit)
        ),
    );
    if kernel.lock().halted.remove(&pid) {
        return;
    }
    on_exit(&kernel, &pid, metadata, wasm).await;
}

/// Carries out a process's on-exit behaviour after `init` returned or trapped.
async fn on_exit(kernel: &Arc<Kernel>, pid: &str, metadata: ProcessMetadata, wasm: Vec<u8>) {
    let kill = |no_revoke: bool| {
        let body = serde_json::json!({ "KillProcess": pid })
            .to_string()
            .into_bytes();
        kernel.kernel_request(KERNEL, body, no_revoke.then(|| "no-revoke".to_owned()))
    };
    match metadata.on_exit {
        OnExit::None => kernel.route(kill(false)),
        OnExit::Restart => {
            let wait = kernel.restart_delay(pid);
            let initial: Vec<serde_json::Value> = kernel
                .capabilities(pid)
                .iter()
                .map(caps::cap_to_json)
                .collect();
            kernel.route(kill(true));
            let init = serde_json::json!({ "InitializeProcess": {
                "id": pid,
                "wasm_bytes_handle": metadata.wasm_bytes_handle,
                "wit_version": metadata.wit_version,
                "on_exit": "Restart",
                "initial_capabilities": initial,
                "public": metadata.public,
            }});
            let mut init = kernel.kernel_request(KERNEL, init.to_string().into_bytes(), None);
            init.blob = Some(LazyLoadBlob {
                mime: None,
                bytes: wasm,
            });
            let run = serde_json::json!({ "RunProcess": pid })
                .to_string()
                .into_bytes();
            let run = kernel.kernel_request(KERNEL, run, None);
            let restart = {
                let kernel = Arc::clone(kernel);
                async move {
                    kernel.route(init);
                    kernel.route(run);
                }
            };
            match wait {
                None => restart.await,
                Some(at) => {
                    kernel.runtime.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        restart.await;
                    });
                }
            }
        }
        OnExit::Requests(requests) => {
            for (target, mut request, blob) in requests {
                request.expects_response = None;
                kernel.route(KernelMessage {
                    id: kernel.new_id(),
                    source: metadata.our.clone(),
                    target,
                    rsvp: None,
                    message: Message::Request(request),
                    blob,
                });
            }
            kernel.route(kill(false));
        }
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
