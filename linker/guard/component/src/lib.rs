//! The linker's guard: a component composed between one linked library and the Kinode runtime,
//! exporting `kinode:process/standard@1.0.0` to the library and importing the runtime's.
//!
//! Every call passes straight through, except those that make a message leave the process, now or
//! later, or hand its authority on (README "Every way out"):
//! - a request (sent, sent in a batch, or sent and awaited) goes out only if its target is one the
//!   package's `library-bounds.json` lets this library message;
//! - an on-exit (the process's own, or one given to a process the library spawns) keeps only the
//!   requests to such targets;
//! - a capability (attached to a request or a response, given to a spawned process, or saved into
//!   the process) is kept only if it was issued by such a target or by the process itself.
//!
//! A denied request fails the way the runtime fails a request to a process the sender has no
//! capability for: it is not delivered, a request expecting a response gets a `timeout` send
//! error. A denied on-exit request or capability is left out, as the kernel leaves out on-exit
//! requests and capabilities a process may not send. Each denial prints one line naming the
//! library and what it tried. The guard remembers the processes the library spawned, for the
//! `spawned` target.
//!
//! The policy is not known when the guard is built: the linker writes it into [`POLICY`], a
//! fixed-size placeholder, when it composes the guard (see the `linker-guard` crate).

use std::sync::{Mutex, OnceLock, PoisonError};

wit_bindgen::generate!({
    path: "target/wit",
    world: "linker-guard",
});

mod convert;

use exports::kinode::process::standard as ex;
use kinode::process::standard as rt;

/// The size of the policy placeholder, marker included (the `linker-guard` crate's `CAPACITY`).
const CAPACITY: usize = 4096;
/// The placeholder's first bytes, which the linker finds to write the policy after them.
const MARKER: &[u8; 24] = b"\0linker-guard-policy-v1\0";

/// The policy placeholder: the marker, then (once the linker wrote it) a little-endian `u32`
/// length and that many bytes of policy text.
static POLICY: [u8; CAPACITY] = placeholder();

const fn placeholder() -> [u8; CAPACITY] {
    let mut bytes = [0u8; CAPACITY];
    let mut index = 0;
    while index < MARKER.len() {
        bytes[index] = MARKER[index];
        index += 1;
    }
    bytes
}

/// Whom the library may send requests to.
enum Target {
    /// The processes of the library's own package, on this node.
    LibraryPackage,
    /// The processes the library spawned.
    Spawned,
    /// A process pattern: `None` parts match anything; a `None` node is this node.
    Process {
        node: Option<Option<String>>,
        process: Option<String>,
        package: Option<String>,
        publisher: Option<String>,
    },
}

/// The policy the linker wrote, and who the guard runs as.
struct Policy {
    /// The library, as the linker names it: `courier-api.wasm (courier:test.os)`.
    library: String,
    /// The library's package: name and publisher.
    package: (String, String),
    /// Whom it may send requests to.
    targets: Vec<Target>,
    /// The process the library is linked into.
    our: rt::Address,
}

/// The policy, read once. The placeholder is read with a volatile load: its contents as built are
/// not the contents at run time, so the compiler must not assume them.
fn policy() -> &'static Policy {
    static POLICY_READ: OnceLock<Policy> = OnceLock::new();
    POLICY_READ.get_or_init(|| {
        // SAFETY: `POLICY` is a valid, initialised static; the read only stops constant folding.
        #[allow(unsafe_code)]
        let bytes = unsafe { std::ptr::read_volatile(&POLICY) };
        parse(&bytes)
    })
}

/// Parses the policy text. A policy the linker did not write (or wrote wrongly) allows no
/// request: the guard fails closed.
fn parse(bytes: &[u8; CAPACITY]) -> Policy {
    let mut policy = Policy {
        library: "a linked library".to_owned(),
        package: (String::new(), String::new()),
        targets: Vec::new(),
        our: rt::our(),
    };
    let body = &bytes[MARKER.len()..];
    let Some((length, text)) = body.split_first_chunk::<4>() else {
        return policy;
    };
    let length = u32::from_le_bytes(*length) as usize;
    let Some(text) = text.get(..length).and_then(|t| std::str::from_utf8(t).ok()) else {
        return policy;
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        match key {
            "library" => policy.library = value.to_owned(),
            "package" => {
                if let Some((name, publisher)) = value.split_once(':') {
                    policy.package = (name.to_owned(), publisher.to_owned());
                }
            }
            "allow" => policy.targets.extend(target(value)),
            _ => {}
        }
    }
    policy
}

/// One `allow` value: `library-package`, `spawned` or `[node]@process:package:publisher`.
fn target(value: &str) -> Option<Target> {
    let part = |text: &str| (text != "*").then(|| text.to_owned());
    match value {
        "library-package" => Some(Target::LibraryPackage),
        "spawned" => Some(Target::Spawned),
        _ => {
            let (node, process) = value.split_once('@')?;
            let mut parts = process.splitn(3, ':');
            let (process, package, publisher) = (parts.next()?, parts.next()?, parts.next()?);
            let node = match node {
                "*" => None,
                "" => Some(None),
                node => Some(Some(node.to_owned())),
            };
            Some(Target::Process {
                node,
                process: part(process),
                package: part(package),
                publisher: part(publisher),
            })
        }
    }
}

/// The processes the library spawned, for [`Target::Spawned`].
static SPAWNED: Mutex<Vec<rt::ProcessId>> = Mutex::new(Vec::new());

fn same_process(a: &rt::ProcessId, b: &rt::ProcessId) -> bool {
    a.process_name == b.process_name
        && a.package_name == b.package_name
        && a.publisher_node == b.publisher_node
}

/// The node an address names: the kernel reads the node `our` as this node.
fn node_of<'a>(policy: &'a Policy, address: &'a rt::Address) -> &'a str {
    if address.node == "our" {
        &policy.our.node
    } else {
        &address.node
    }
}

/// Whether the library may send a request to `target`.
fn allowed(policy: &Policy, target: &rt::Address) -> bool {
    let node = node_of(policy, target);
    let local = node == policy.our.node;
    let process = &target.process;
    policy.targets.iter().any(|allowed| match allowed {
        Target::LibraryPackage => {
            local
                && process.package_name == policy.package.0
                && process.publisher_node == policy.package.1
        }
        Target::Spawned => {
            local
                && SPAWNED
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .any(|spawned| same_process(spawned, process))
        }
        Target::Process {
            node: pattern,
            process: name,
            package,
            publisher,
        } => {
            let node_matches = match pattern {
                None => true,
                Some(None) => local,
                Some(Some(pattern)) => pattern == node,
            };
            let matches = |pattern: &Option<String>, value: &str| {
                pattern.as_deref().is_none_or(|pattern| pattern == value)
            };
            node_matches
                && matches(name, &process.process_name)
                && matches(package, &process.package_name)
                && matches(publisher, &process.publisher_node)
        }
    })
}

/// Whether the library may hand on `capability`: one issued by a target it may message, or by the
/// process itself (which lets the holder reach the process, not anything beyond it).
fn may_hand_on(policy: &Policy, capability: &rt::Capability) -> bool {
    let issuer = &capability.issuer;
    (node_of(policy, issuer) == policy.our.node
        && same_process(&issuer.process, &policy.our.process))
        || allowed(policy, issuer)
}

fn display(address: &rt::Address) -> String {
    format!("{}@{}", address.node, process_id(address))
}

fn process_id(address: &rt::Address) -> String {
    let process = &address.process;
    format!(
        "{}:{}:{}",
        process.process_name, process.package_name, process.publisher_node
    )
}

/// Prints the one line a denial gets: what the library `tried`, and what became of it.
fn report_denial(policy: &Policy, tried: &str, outcome: &str) {
    rt::print_to_terminal(
        0,
        &format!(
            "linker guard: {}, linked into {}, tried to {tried}, which the package's \
             library-bounds.json does not allow; {outcome}",
            policy.library,
            process_id(&policy.our),
        ),
    );
}

/// The capabilities of `capabilities` the library may hand on; each other one is reported as
/// `tried(issuer)` and left out.
fn screen_capabilities(
    policy: &Policy,
    capabilities: Vec<rt::Capability>,
    tried: impl Fn(&str) -> String,
) -> Vec<rt::Capability> {
    capabilities
        .into_iter()
        .filter(|capability| {
            let kept = may_hand_on(policy, capability);
            if !kept {
                let issuer = format!("{} ({})", display(&capability.issuer), capability.params);
                report_denial(policy, &tried(&issuer), "it was left out");
            }
            kept
        })
        .collect()
}

/// A request with the capabilities it carries screened.
fn screen_attached(policy: &Policy, target: &rt::Address, mut request: rt::Request) -> rt::Request {
    let to = display(target);
    request.capabilities = screen_capabilities(policy, request.capabilities, |issuer| {
        format!("attach a capability issued by {issuer} to a request to {to}")
    });
    request
}

/// An on-exit with the requests the library may not send left out, and the capabilities of the
/// rest screened. `whose` names the process that would send them: the library's own or a child.
fn screen_on_exit(policy: &Policy, on_exit: rt::OnExit, whose: &str) -> rt::OnExit {
    let rt::OnExit::Requests(requests) = on_exit else {
        return on_exit;
    };
    let requests = requests
        .into_iter()
        .filter_map(|(target, request, blob)| {
            if allowed(policy, &target) {
                let request = screen_attached(policy, &target, request);
                return Some((target, request, blob));
            }
            report_denial(
                policy,
                &format!(
                    "make {whose} send a request to {} on exit",
                    display(&target)
                ),
                "it was left out of the on-exit",
            );
            None
        })
        .collect();
    rt::OnExit::Requests(requests)
}

/// Where a denied request that expects a response goes instead: a process that never exists, so
/// the kernel answers it, as it answers a request the sender may not make, with a `timeout` send
/// error carrying the request and its context.
fn nowhere(policy: &Policy) -> rt::Address {
    rt::Address {
        node: policy.our.node.clone(),
        process: rt::ProcessId {
            process_name: "guard-denied".to_owned(),
            package_name: "linker".to_owned(),
            publisher_node: "sys".to_owned(),
        },
    }
}

/// A request the library asked to send, to forward as it is, redirect, or drop.
type Outgoing = (
    rt::Address,
    rt::Request,
    Option<Vec<u8>>,
    Option<rt::LazyLoadBlob>,
);

/// Applies the policy to one request: `None` drops it (denied, no response expected).
fn screen(policy: &Policy, outgoing: Outgoing) -> Option<Outgoing> {
    let (target, request, context, blob) = outgoing;
    if allowed(policy, &target) {
        let request = screen_attached(policy, &target, request);
        return Some((target, request, context, blob));
    }
    report_denial(
        policy,
        &format!("send a request to {}", display(&target)),
        "it was not sent",
    );
    request
        .expects_response
        .is_some()
        .then(|| (nowhere(policy), request, context, blob))
}

struct Guard;

impl ex::Guest for Guard {
    fn print_to_terminal(verbosity: u8, message: String) {
        rt::print_to_terminal(verbosity, &message);
    }

    fn our() -> ex::Address {
        rt::our().into()
    }

    fn get_on_exit() -> ex::OnExit {
        rt::get_on_exit().into()
    }

    fn set_on_exit(on_exit: ex::OnExit) {
        let on_exit = screen_on_exit(policy(), on_exit.into(), "its process");
        rt::set_on_exit(&on_exit);
    }

    fn get_state() -> Option<Vec<u8>> {
        rt::get_state()
    }

    fn set_state(bytes: Vec<u8>) {
        rt::set_state(&bytes);
    }

    fn clear_state() {
        rt::clear_state();
    }

    fn spawn(
        name: Option<String>,
        wasm_path: String,
        on_exit: ex::OnExit,
        request_capabilities: Vec<ex::Capability>,
        grant_capabilities: Vec<(ex::ProcessId, String)>,
        public: bool,
    ) -> Result<ex::ProcessId, ex::SpawnError> {
        let policy = policy();
        let child = match &name {
            Some(name) => format!("the process `{name}` it spawns"),
            None => "a process it spawns".to_owned(),
        };
        let on_exit = screen_on_exit(policy, on_exit.into(), &child);
        let request_capabilities = screen_capabilities(
            policy,
            request_capabilities.into_iter().map(Into::into).collect(),
            |issuer| format!("give {child} a capability issued by {issuer}"),
        );
        let grant_capabilities: Vec<(rt::ProcessId, String)> = grant_capabilities
            .into_iter()
            .map(|(process, params)| (process.into(), params))
            .collect();
        let spawned = rt::spawn(
            name.as_deref(),
            &wasm_path,
            &on_exit,
            &request_capabilities,
            &grant_capabilities,
            public,
        );
        if let Ok(process) = &spawned {
            SPAWNED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(process.clone());
        }
        spawned.map(Into::into).map_err(Into::into)
    }

    fn save_capabilities(caps: Vec<ex::Capability>) {
        // The kernel signs whatever a process saves, so an unscreened save could forge any
        // capability for the process.
        let caps = screen_capabilities(
            policy(),
            caps.into_iter().map(Into::into).collect(),
            |issuer| format!("save a capability issued by {issuer}"),
        );
        if !caps.is_empty() {
            rt::save_capabilities(&caps);
        }
    }

    fn drop_capabilities(caps: Vec<ex::Capability>) {
        let caps: Vec<rt::Capability> = caps.into_iter().map(Into::into).collect();
        rt::drop_capabilities(&caps);
    }

    fn our_capabilities() -> Vec<ex::Capability> {
        rt::our_capabilities().into_iter().map(Into::into).collect()
    }

    fn receive() -> Result<(ex::Address, ex::Message), (ex::SendError, Option<Vec<u8>>)> {
        rt::receive()
            .map(|(source, message)| (source.into(), message.into()))
            .map_err(|(error, context)| (error.into(), context))
    }

    fn has_blob() -> bool {
        rt::has_blob()
    }

    fn get_blob() -> Option<ex::LazyLoadBlob> {
        rt::get_blob().map(Into::into)
    }

    fn last_blob() -> Option<ex::LazyLoadBlob> {
        rt::last_blob().map(Into::into)
    }

    fn send_request(
        target: ex::Address,
        request: ex::Request,
        context: Option<Vec<u8>>,
        lazy_load_blob: Option<ex::LazyLoadBlob>,
    ) {
        let outgoing = (
            target.into(),
            request.into(),
            context,
            lazy_load_blob.map(Into::into),
        );
        if let Some((target, request, context, blob)) = screen(policy(), outgoing) {
            rt::send_request(&target, &request, context.as_ref(), blob.as_ref());
        }
    }

    fn send_requests(
        requests: Vec<(
            ex::Address,
            ex::Request,
            Option<Vec<u8>>,
            Option<ex::LazyLoadBlob>,
        )>,
    ) {
        let policy = policy();
        let screened: Vec<Outgoing> = requests
            .into_iter()
            .filter_map(|(target, request, context, blob)| {
                screen(
                    policy,
                    (target.into(), request.into(), context, blob.map(Into::into)),
                )
            })
            .collect();
        if !screened.is_empty() {
            rt::send_requests(&screened);
        }
    }

    fn send_response(response: ex::Response, lazy_load_blob: Option<ex::LazyLoadBlob>) {
        let blob: Option<rt::LazyLoadBlob> = lazy_load_blob.map(Into::into);
        let mut response: rt::Response = response.into();
        response.capabilities = screen_capabilities(policy(), response.capabilities, |issuer| {
            format!("attach a capability issued by {issuer} to a response")
        });
        rt::send_response(&response, blob.as_ref());
    }

    fn send_and_await_response(
        target: ex::Address,
        request: ex::Request,
        lazy_load_blob: Option<ex::LazyLoadBlob>,
    ) -> Result<(ex::Address, ex::Message), ex::SendError> {
        let target: rt::Address = target.into();
        let blob: Option<rt::LazyLoadBlob> = lazy_load_blob.map(Into::into);
        let request: rt::Request = request.into();
        let policy = policy();
        if !allowed(policy, &target) {
            report_denial(
                policy,
                &format!("send a request to {}", display(&target)),
                "it was not sent",
            );
            return Err(ex::SendError {
                kind: ex::SendErrorKind::Timeout,
                target: target.into(),
                message: rt::Message::Request(request).into(),
                lazy_load_blob: blob.map(Into::into),
            });
        }
        let request = screen_attached(policy, &target, request);
        rt::send_and_await_response(&target, &request, blob.as_ref())
            .map(|(source, message)| (source.into(), message.into()))
            .map_err(Into::into)
    }
}

export!(Guard);
