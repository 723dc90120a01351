//! Hashing beside the work. Natively, one second thread, started by the first input large
//! enough to repay it, hashes what it is handed, in the order handed, while the calling thread
//! goes on; the thread lives as long as the link, so no hash waits for a thread to start. In a
//! Kinode process, which has one thread, and for small input, a hash runs when it is handed over.
//! Every byte is counted in [`crate::bytes_hashed`] on the thread that hands it over.

use std::cell::{Cell, OnceCell, RefCell};
use std::sync::{mpsc, Arc};
use std::thread::Scope;

use crate::inspect::{count_hashed, uncounted_sha256_hex};

/// Input smaller than this is hashed on the calling thread (SHA-NI hashes a megabyte in about
/// 0.6 ms; handing it over costs a few microseconds, starting the thread tens).
const BESIDE_FROM: usize = 1 << 20;

/// Bytes handed over: borrowed from the link's inputs, or shared with the work that goes on.
pub(crate) enum Bytes<'env> {
    /// Bytes that outlive the link, such as the package zip.
    Borrowed(&'env [u8]),
    /// Bytes made during the link; [`unshare`] takes them back once their digest is in.
    Shared(Arc<Vec<u8>>),
}

impl Bytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(bytes) => bytes,
            Bytes::Shared(bytes) => bytes,
        }
    }
}

/// A digest handed over: computed already, or coming from the hashing thread.
pub(crate) enum Pending {
    Ready(String),
    Beside(usize),
}

impl Pending {
    /// Whether the hash runs on the hashing thread, taking a core meanwhile.
    pub fn is_beside(&self) -> bool {
        matches!(self, Pending::Beside(_))
    }
}

/// Hands bytes to the hashing thread and gives back their digests; see the module header.
pub(crate) struct Hasher<'scope, 'env> {
    scope: Option<&'scope Scope<'scope, 'env>>,
    thread: OnceCell<Thread<'env>>,
    /// Digests that came in while another was awaited, by ticket.
    arrived: RefCell<Vec<Option<String>>>,
    tickets: Cell<usize>,
}

struct Thread<'env> {
    jobs: mpsc::Sender<(usize, Bytes<'env>)>,
    digests: mpsc::Receiver<(usize, String)>,
}

/// Runs `work` with a [`Hasher`]; natively its thread, if started, ends with `work`.
pub(crate) fn with_hasher<'env, T>(work: impl for<'scope> FnOnce(&Hasher<'scope, 'env>) -> T) -> T {
    if cfg!(target_arch = "wasm32") {
        return work(&Hasher::new(None));
    }
    std::thread::scope(|scope| {
        let hasher = Hasher::new(Some(scope));
        let done = work(&hasher);
        // Closes the queue: the thread finishes what it holds and ends.
        drop(hasher);
        done
    })
}

impl<'scope, 'env> Hasher<'scope, 'env> {
    fn new(scope: Option<&'scope Scope<'scope, 'env>>) -> Self {
        Hasher {
            scope,
            thread: OnceCell::new(),
            arrived: RefCell::new(Vec::new()),
            tickets: Cell::new(0),
        }
    }

    /// Hands `bytes` over: hashed beside the work if they are large enough and threads exist,
    /// else at once.
    pub fn hash(&self, bytes: Bytes<'env>) -> Pending {
        let slice = bytes.as_slice();
        count_hashed(slice.len());
        let Some(scope) = self.scope.filter(|_| slice.len() >= BESIDE_FROM) else {
            return Pending::Ready(uncounted_sha256_hex(slice));
        };
        let thread = self.thread.get_or_init(|| start(scope));
        let ticket = self.tickets.get();
        self.tickets.set(ticket + 1);
        match thread.jobs.send((ticket, bytes)) {
            Ok(()) => Pending::Beside(ticket),
            // The thread is gone only if it panicked; the scope will say so. Hash here meanwhile.
            Err(mpsc::SendError((_, bytes))) => {
                Pending::Ready(uncounted_sha256_hex(bytes.as_slice()))
            }
        }
    }

    /// The digest of what was handed over, waiting for it if it is still being hashed.
    pub fn digest(&self, pending: Pending) -> String {
        let ticket = match pending {
            Pending::Ready(digest) => return digest,
            Pending::Beside(ticket) => ticket,
        };
        let thread = self
            .thread
            .get()
            .expect("a ticket comes from the hashing thread");
        let mut arrived = self.arrived.borrow_mut();
        loop {
            if let Some(digest) = arrived.get_mut(ticket).and_then(Option::take) {
                return digest;
            }
            let (number, digest) = thread
                .digests
                .recv()
                .expect("the hashing thread answers every ticket unless it panicked");
            if arrived.len() <= number {
                arrived.resize(number + 1, None);
            }
            arrived[number] = Some(digest);
        }
    }
}

/// Starts the hashing thread: each job is hashed in turn and its bytes let go before the digest
/// is sent back, so that [`unshare`] finds them unshared.
fn start<'scope, 'env>(scope: &'scope Scope<'scope, 'env>) -> Thread<'env> {
    let (jobs, queue) = mpsc::channel::<(usize, Bytes<'env>)>();
    let (answers, digests) = mpsc::channel();
    scope.spawn(move || {
        for (ticket, bytes) in queue {
            let digest = uncounted_sha256_hex(bytes.as_slice());
            drop(bytes);
            if answers.send((ticket, digest)).is_err() {
                break;
            }
        }
    });
    Thread { jobs, digests }
}

/// The bytes of `shared` back, once its digest is in (a copy only if something still holds it).
pub(crate) fn unshare(shared: Arc<Vec<u8>>) -> Vec<u8> {
    Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_come_back_for_their_tickets_in_any_order_and_count_once() {
        let small = vec![1u8; 10];
        let large: Vec<Arc<Vec<u8>>> = (0..3u8).map(|n| Arc::new(vec![n; BESIDE_FROM])).collect();
        let before = crate::bytes_hashed();
        let digests = with_hasher(|hasher| {
            let pending: Vec<Pending> = large
                .iter()
                .map(|bytes| hasher.hash(Bytes::Shared(Arc::clone(bytes))))
                .collect();
            let ready = hasher.hash(Bytes::Borrowed(&small));
            assert!(!ready.is_beside());
            assert!(pending.iter().all(Pending::is_beside));
            let mut digests: Vec<String> = pending
                .into_iter()
                .rev()
                .map(|p| hasher.digest(p))
                .collect();
            digests.reverse();
            digests.push(hasher.digest(ready));
            digests
        });
        let expected: Vec<String> = large
            .iter()
            .map(|bytes| uncounted_sha256_hex(bytes))
            .chain([uncounted_sha256_hex(&small)])
            .collect();
        assert_eq!(digests, expected);
        assert_eq!(
            crate::bytes_hashed() - before,
            (3 * BESIDE_FROM + 10) as u64
        );
        for bytes in large {
            assert_eq!(unshare(bytes).len(), BESIDE_FROM);
        }
    }
}
