//! The kinode standard host, `kinode:process/standard@1.0.0`, as far as the test host serves it
//! today.
//!
//! The runtime's counterpart is `StandardHost for ProcessWasiV1` in the kinode repo's
//! `kinode/src/kernel/standard_host_v1.rs`. Served: `print-to-terminal`, `our`,
//! `get-/set-/clear-state` (in memory), `get-/set-on-exit`, `our-capabilities`, and the blob
//! getters (no message has arrived yet, so there is no blob). Everything that sends, receives,
//! spawns or changes capabilities traps with "test host: `<fn>` is not supported yet"; routing will
//! replace those.

use anyhow::{anyhow, Result};

use crate::bindings::kinode::process::standard::{
    Address, Capability, Host as StandardHost, LazyLoadBlob, Message, OnExit, ProcessId, Request,
    Response, SendError, SpawnError,
};
use crate::process::ProcessWasiV1;

/// The error that traps a process calling a function the test host does not serve yet.
fn unsupported(function: &str) -> anyhow::Error {
    anyhow!("test host: `{function}` is not supported yet")
}

#[async_trait::async_trait]
impl StandardHost for ProcessWasiV1 {
    async fn print_to_terminal(&mut self, verbosity: u8, message: String) -> Result<()> {
        self.process
            .prints
            .push(crate::Print { verbosity, message });
        Ok(())
    }

    async fn our(&mut self) -> Result<Address> {
        Ok(self.process.our.clone())
    }

    async fn get_on_exit(&mut self) -> Result<OnExit> {
        Ok(self.process.on_exit.clone())
    }

    async fn set_on_exit(&mut self, on_exit: OnExit) -> Result<()> {
        self.process.on_exit = on_exit;
        Ok(())
    }

    async fn get_state(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.process.state.clone())
    }

    async fn set_state(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.process.state = Some(bytes);
        Ok(())
    }

    async fn clear_state(&mut self) -> Result<()> {
        self.process.state = None;
        Ok(())
    }

    async fn spawn(
        &mut self,
        _name: Option<String>,
        _wasm_path: String,
        _on_exit: OnExit,
        _request_capabilities: Vec<Capability>,
        _grant_capabilities: Vec<(ProcessId, String)>,
        _public: bool,
    ) -> Result<Result<ProcessId, SpawnError>> {
        Err(unsupported("spawn"))
    }

    async fn save_capabilities(&mut self, _caps: Vec<Capability>) -> Result<()> {
        Err(unsupported("save-capabilities"))
    }

    async fn drop_capabilities(&mut self, _caps: Vec<Capability>) -> Result<()> {
        Err(unsupported("drop-capabilities"))
    }

    async fn our_capabilities(&mut self) -> Result<Vec<Capability>> {
        Ok(self.process.capabilities.clone())
    }

    async fn receive(
        &mut self,
    ) -> Result<Result<(Address, Message), (SendError, Option<Vec<u8>>)>> {
        Err(unsupported("receive"))
    }

    async fn has_blob(&mut self) -> Result<bool> {
        Ok(self.process.last_blob.is_some())
    }

    async fn get_blob(&mut self) -> Result<Option<LazyLoadBlob>> {
        Ok(self.process.last_blob.clone())
    }

    async fn last_blob(&mut self) -> Result<Option<LazyLoadBlob>> {
        Ok(self.process.last_blob.clone())
    }

    async fn send_request(
        &mut self,
        _target: Address,
        _request: Request,
        _context: Option<Vec<u8>>,
        _lazy_load_blob: Option<LazyLoadBlob>,
    ) -> Result<()> {
        Err(unsupported("send-request"))
    }

    async fn send_requests(
        &mut self,
        _requests: Vec<(Address, Request, Option<Vec<u8>>, Option<LazyLoadBlob>)>,
    ) -> Result<()> {
        Err(unsupported("send-requests"))
    }

    async fn send_response(
        &mut self,
        _response: Response,
        _lazy_load_blob: Option<LazyLoadBlob>,
    ) -> Result<()> {
        Err(unsupported("send-response"))
    }

    async fn send_and_await_response(
        &mut self,
        _target: Address,
        _request: Request,
        _lazy_load_blob: Option<LazyLoadBlob>,
    ) -> Result<Result<(Address, Message), SendError>> {
        Err(unsupported("send-and-await-response"))
    }
}
