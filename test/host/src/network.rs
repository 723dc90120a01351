//! A network between test nodes: what `net:distro:sys` carries between kernels (the kinode repo's
//! `kinode/src/net/`), as far as a process sees it.
//!
//! A [`Network`] is a set of nodes by name. [`crate::Node::on`] makes a node that joins one;
//! [`crate::Node::new`] makes one on a network of its own. A message a local process sends to
//! another node's address passes the sending kernel's checks (the source needs the `"network"`
//! capability), then goes to a test mailbox registered at that address if there is one, else, if
//! the network has that node and it is online, to that node's kernel, which applies its checks for
//! messages from the network (the target must exist and hold `"network"`). A request expecting a
//! response to an unknown or offline node gets `SendErrorKind::Offline` at once, as net reports an
//! unreachable peer. Each node's inbound messages are routed in arrival order by one task on its
//! runtime, so per-sender order is kept and no two kernel locks are ever held at once.
//!
//! The network also holds the on-chain app listings every node sees ([`Network::chain`]).
//!
//! Simplified: no handshakes, routers, keys or signatures; delivery is instant and lossless while
//! both ends are online; a node's name is not checked against any on-chain identity. The network
//! holds only weak references to kernels: a dropped node is gone (offline).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use anyhow::{bail, Result};

use crate::chain::Chain;
use crate::kernel::Kernel;

/// A network of test nodes. Cheap to clone: clones share the network.
#[derive(Clone, Default)]
pub struct Network {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    nodes: Mutex<BTreeMap<String, Member>>,
    chain: Chain,
}

/// A node on the network.
struct Member {
    kernel: Weak<Kernel>,
    online: bool,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nodes())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// An empty network with no listings.
    pub fn new() -> Network {
        Network::default()
    }

    fn nodes_lock(&self) -> MutexGuard<'_, BTreeMap<String, Member>> {
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The on-chain app listings, shared by every node on this network.
    pub fn chain(&self) -> &Chain {
        &self.inner.chain
    }

    /// The names of the nodes on the network that are still alive, online or not.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes_lock()
            .iter()
            .filter(|(_, member)| member.kernel.strong_count() > 0)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Takes `node` off the network (`false`) or brings it back (`true`). Returns false if there
    /// is no such node.
    pub fn set_online(&self, node: &str, online: bool) -> bool {
        match self.nodes_lock().get_mut(node) {
            Some(member) => {
                member.online = online;
                true
            }
            None => false,
        }
    }

    /// Whether `node` is on the network, alive and online.
    pub fn is_online(&self, node: &str) -> bool {
        self.peer(node).is_some()
    }

    /// Adds a node's kernel (online). A name already taken by a live node is an error.
    pub(crate) fn join(&self, name: &str, kernel: &Arc<Kernel>) -> Result<()> {
        let mut nodes = self.nodes_lock();
        if nodes
            .get(name)
            .is_some_and(|member| member.kernel.strong_count() > 0)
        {
            bail!("a node named {name} is already on the network");
        }
        nodes.insert(
            name.to_owned(),
            Member {
                kernel: Arc::downgrade(kernel),
                online: true,
            },
        );
        Ok(())
    }

    /// Removes a node's kernel, if it is the one registered under `name`.
    pub(crate) fn leave(&self, name: &str, kernel: &Arc<Kernel>) {
        let mut nodes = self.nodes_lock();
        if nodes
            .get(name)
            .is_some_and(|member| std::ptr::eq(member.kernel.as_ptr(), Arc::as_ptr(kernel)))
        {
            nodes.remove(name);
        }
    }

    /// The kernel of `node` if it is alive and online.
    pub(crate) fn peer(&self, node: &str) -> Option<Arc<Kernel>> {
        let nodes = self.nodes_lock();
        let member = nodes.get(node).filter(|member| member.online)?;
        member.kernel.upgrade()
    }
}
