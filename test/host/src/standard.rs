//! The kinode standard host, `kinode:process/standard@1.0.0`.
//!
//! The runtime's counterpart is `StandardHost for ProcessWasiV1` in the kinode repo's
//! `kinode/src/kernel/standard_host_v1.rs`. Messaging is in [`crate::process`]; this module maps
//! each import onto it and onto the kernel's capabilities oracle. `spawn` follows the runtime step
//! by step (VFS `Read` as the caller, name in the caller's package, `FilterCaps` on the requested
//! caps, `InitializeProcess` with the caller's `wit_version` from the kernel, the grants,
//! `RunProcess`, mutual messaging caps), including its quirk that only a failure to get *any*
//! kernel response counts as `name-taken`.
//!
//! Simplified: `print-to-terminal` records the raw message under the process id (the runtime
//! prefixes it with `package:publisher: `); get/set/clear-state go straight to the kernel's store
//! instead of a request to `state:distro:sys` (the blob the process sees is unaffected either
//! way).

use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::bindings::kinode::process::standard::{
    Address, Capability, Host as StandardHost, LazyLoadBlob, Message, OnExit, ProcessId, Request,
    Response, SendError, SpawnError,
};
use crate::caps::{self, KERNEL, VFS};
use crate::kernel::{HostCall, Kernel};
use crate::process::ProcessWasiV1;

impl ProcessWasiV1 {
    /// Records a messaging call that began at `start` (see [`HostCall`]).
    fn record(&self, call: String, start: Instant, sent: usize, received: usize) {
        let elapsed = start.elapsed();
        self.process.kernel.lock().host_calls.push(HostCall {
            process: self.process.pid.clone(),
            call,
            start,
            elapsed,
            sent,
            received,
        });
    }

    /// The size of the blob the last message received carried, if it carried one.
    fn received_blob(&self) -> usize {
        match &self.process.last_blob {
            Some(blob) if self.process.last_message_blobbed => blob.bytes.len(),
            _ => 0,
        }
    }

    fn kernel_address(&self) -> Address {
        self.process.kernel.address(KERNEL)
    }

    /// A request from the kernel on this process's behalf, awaiting the answer. `Ok(None)` if
    /// there was a `SendError`.
    async fn ask(
        &mut self,
        fake_source: Option<Address>,
        target: &str,
        body: Value,
        blob: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        let target = self.process.kernel.address(target);
        let request = Request {
            inherit: false,
            expects_response: Some(5),
            body: body.to_string().into_bytes(),
            metadata: None,
            capabilities: Vec::new(),
        };
        let blob = blob.map(|bytes| LazyLoadBlob { mime: None, bytes });
        match self
            .process
            .send_and_await_response(fake_source, target, request, blob)
            .await?
        {
            Ok((_, Message::Response((response, _)))) => Ok(Some(response.body)),
            _ => Ok(None),
        }
    }

    /// The body of `spawn` after the blob has been saved; the caller restores it.
    async fn spawn_inner(
        &mut self,
        name: Option<String>,
        wasm_path: String,
        on_exit: OnExit,
        request_capabilities: Vec<Capability>,
        grant_capabilities: Vec<(ProcessId, String)>,
        public: bool,
    ) -> Result<Result<ProcessId, SpawnError>> {
        let read = json!({ "path": wasm_path, "action": "Read" });
        let Some(body) = self.ask(None, VFS, read, None).await? else {
            return Ok(Err(SpawnError::NoFileAtPath));
        };
        if serde_json::from_slice::<Value>(&body).ok() != Some(json!("Read")) {
            return Ok(Err(SpawnError::NoFileAtPath));
        }
        let Some(LazyLoadBlob { bytes, .. }) = self.process.last_blob.clone() else {
            return Ok(Err(SpawnError::NoFileAtPath));
        };
        let our = self.process.metadata.our.clone();
        let name = name.unwrap_or_else(|| self.process.kernel.new_id().to_string());
        let child = ProcessId {
            process_name: name,
            package_name: our.process.package_name.clone(),
            publisher_node: our.process.publisher_node.clone(),
        };
        let child_id = caps::format_process_id(&child);
        if !caps::kimap_safe(&child) {
            bail!("spawn: {child_id} is not a valid process id");
        }
        let requested = {
            let st = self.process.kernel.lock();
            Kernel::filter_caps(&st, &self.process.pid, request_capabilities)
        };
        let init = json!({ "InitializeProcess": {
            "id": child_id,
            "wasm_bytes_handle": wasm_path,
            "wit_version": self.process.metadata.wit_version,
            "on_exit": on_exit_json(&on_exit),
            "initial_capabilities": requested.iter().map(caps::cap_to_json).collect::<Vec<_>>(),
            "public": public,
        }});
        let kernel = Some(self.kernel_address());
        if self
            .ask(kernel.clone(), KERNEL, init, Some(bytes))
            .await?
            .is_none()
        {
            return Ok(Err(SpawnError::NameTaken));
        }
        {
            let mut st = self.process.kernel.lock();
            for (process, params) in grant_capabilities {
                let cap = Capability {
                    issuer: our.clone(),
                    params,
                };
                Kernel::add_caps(&mut st, &caps::format_process_id(&process), vec![cap]);
            }
        }
        let run = json!({ "RunProcess": child_id });
        let Some(body) = self.ask(kernel, KERNEL, run, None).await? else {
            return Ok(Err(SpawnError::NameTaken));
        };
        if serde_json::from_slice::<Value>(&body).ok() != Some(json!("StartedProcess")) {
            return Ok(Err(SpawnError::NoFileAtPath));
        }
        let mut st = self.process.kernel.lock();
        let parent = caps::messaging(&crate::process::format_address(&our));
        Kernel::add_caps(&mut st, &child_id, vec![parent]);
        let child_cap = caps::messaging(&format!("{}@{child_id}", our.node));
        Kernel::add_caps(&mut st, &self.process.pid, vec![child_cap]);
        Ok(Ok(child))
    }
}

/// How a profile names a request: the VFS action and path, the kernel command, or the target.
fn describe(target: &Address, body: &[u8]) -> String {
    let process = caps::format_process_id(&target.process);
    let name = |value: &Value| match value {
        Value::String(name) => name.clone(),
        Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    match (process.as_str(), serde_json::from_slice::<Value>(body)) {
        (VFS, Ok(call)) => format!(
            "VFS {} {}",
            name(&call["action"]),
            call["path"].as_str().unwrap_or_default()
        ),
        (KERNEL, Ok(command)) => format!("kernel {}", name(&command)),
        _ => format!("request to {process}"),
    }
}

fn blob_len(blob: &Option<LazyLoadBlob>) -> usize {
    blob.as_ref().map_or(0, |blob| blob.bytes.len())
}

/// `OnExit` in serde form, for an `InitializeProcess` body.
fn on_exit_json(on_exit: &OnExit) -> Value {
    match on_exit {
        OnExit::None => json!("None"),
        OnExit::Restart => json!("Restart"),
        OnExit::Requests(requests) => {
            let requests: Vec<Value> = requests
                .iter()
                .map(|(address, request, blob)| {
                    json!([
                        crate::process::format_address(address),
                        {
                            "inherit": request.inherit,
                            "expects_response": request.expects_response,
                            "body": request.body,
                            "metadata": request.metadata,
                            "capabilities": request.capabilities.iter().map(caps::cap_to_json).collect::<Vec<_>>(),
                        },
                        blob.as_ref().map(|b| json!({"mime": b.mime, "bytes": b.bytes})),
                    ])
                })
                .collect();
            json!({ "Requests": requests })
        }
    }
}

#[async_trait::async_trait]
impl StandardHost for ProcessWasiV1 {
    async fn print_to_terminal(&mut self, verbosity: u8, message: String) -> Result<()> {
        self.process
            .kernel
            .print(&self.process.pid, verbosity, message);
        Ok(())
    }

    async fn our(&mut self) -> Result<Address> {
        Ok(self.process.metadata.our.clone())
    }

    async fn get_on_exit(&mut self) -> Result<OnExit> {
        Ok(self.process.metadata.on_exit.clone())
    }

    async fn set_on_exit(&mut self, on_exit: OnExit) -> Result<()> {
        // As in the runtime, only the running instance's copy changes (not the process map).
        self.process.metadata.on_exit = on_exit;
        Ok(())
    }

    async fn get_state(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.process.kernel.get_state(&self.process.pid))
    }

    async fn set_state(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.process
            .kernel
            .set_state(&self.process.pid, Some(bytes));
        Ok(())
    }

    async fn clear_state(&mut self) -> Result<()> {
        self.process.kernel.set_state(&self.process.pid, None);
        Ok(())
    }

    async fn spawn(
        &mut self,
        name: Option<String>,
        wasm_path: String,
        on_exit: OnExit,
        request_capabilities: Vec<Capability>,
        grant_capabilities: Vec<(ProcessId, String)>,
        public: bool,
    ) -> Result<Result<ProcessId, SpawnError>> {
        let saved_blob = self.process.last_blob.clone();
        let result = self
            .spawn_inner(
                name,
                wasm_path,
                on_exit,
                request_capabilities,
                grant_capabilities,
                public,
            )
            .await;
        self.process.last_blob = saved_blob;
        result
    }

    async fn save_capabilities(&mut self, caps: Vec<Capability>) -> Result<()> {
        let mut st = self.process.kernel.lock();
        Kernel::add_caps(&mut st, &self.process.pid, caps);
        Ok(())
    }

    async fn drop_capabilities(&mut self, caps: Vec<Capability>) -> Result<()> {
        let mut st = self.process.kernel.lock();
        Kernel::drop_caps(&mut st, &self.process.pid, &caps);
        Ok(())
    }

    async fn our_capabilities(&mut self) -> Result<Vec<Capability>> {
        Ok(self.process.kernel.capabilities(&self.process.pid))
    }

    async fn receive(
        &mut self,
    ) -> Result<Result<(Address, Message), (SendError, Option<Vec<u8>>)>> {
        let start = Instant::now();
        let received = self.process.next_message().await;
        self.record("receive".to_owned(), start, 0, self.received_blob());
        Ok(received)
    }

    async fn has_blob(&mut self) -> Result<bool> {
        Ok(self.process.last_message_blobbed)
    }

    async fn get_blob(&mut self) -> Result<Option<LazyLoadBlob>> {
        let start = Instant::now();
        let blob = self
            .process
            .last_blob
            .clone()
            .filter(|_| self.process.last_message_blobbed);
        self.record("get-blob".to_owned(), start, 0, blob_len(&blob));
        Ok(blob)
    }

    async fn last_blob(&mut self) -> Result<Option<LazyLoadBlob>> {
        let start = Instant::now();
        let blob = self.process.last_blob.clone();
        self.record("last-blob".to_owned(), start, 0, blob_len(&blob));
        Ok(blob)
    }

    async fn send_request(
        &mut self,
        target: Address,
        request: Request,
        context: Option<Vec<u8>>,
        lazy_load_blob: Option<LazyLoadBlob>,
    ) -> Result<()> {
        let (start, call) = (Instant::now(), describe(&target, &request.body));
        let sent = blob_len(&lazy_load_blob);
        self.process
            .send_request(None, target, request, context, lazy_load_blob)?;
        self.record(call, start, sent, 0);
        Ok(())
    }

    async fn send_requests(
        &mut self,
        requests: Vec<(Address, Request, Option<Vec<u8>>, Option<LazyLoadBlob>)>,
    ) -> Result<()> {
        for (target, request, context, blob) in requests {
            self.send_request(target, request, context, blob).await?;
        }
        Ok(())
    }

    async fn send_response(
        &mut self,
        response: Response,
        lazy_load_blob: Option<LazyLoadBlob>,
    ) -> Result<()> {
        let (start, sent) = (Instant::now(), blob_len(&lazy_load_blob));
        self.process.send_response(response, lazy_load_blob);
        self.record("send-response".to_owned(), start, sent, 0);
        Ok(())
    }

    async fn send_and_await_response(
        &mut self,
        target: Address,
        request: Request,
        lazy_load_blob: Option<LazyLoadBlob>,
    ) -> Result<Result<(Address, Message), SendError>> {
        let (start, call) = (Instant::now(), describe(&target, &request.body));
        let sent = blob_len(&lazy_load_blob);
        let answer = self
            .process
            .send_and_await_response(None, target, request, lazy_load_blob)
            .await;
        self.record(call, start, sent, self.received_blob());
        answer
    }
}
