//! Hashing beside the work. Natively, each input large enough to repay it is hashed on a thread
//! of its own, started as the input is handed over, while the calling thread goes on; its digest
//! is collected when it is needed. A fresh thread each time, not one thread fed in turn: the
//! kernel places a new thread on an idle core, where a waiting thread, woken, was often put
//! behind the work on the caller's core (bigapp's link measured 1.2x slower that way, BENCHMARKS.md
//! "Where the time goes"). In a Kinode process, which has one thread, and for small input, a hash
//! runs when it is handed over. Every byte is counted in [`crate::bytes_hashed`] on the thread that
//! hands it over.

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

/// A digest handed over: computed already, or coming from its hashing thread.
pub(crate) enum Pending {
    Ready(String),
    Beside(mpsc::Receiver<String>),
}

impl Pending {
    /// Whether the hash runs on a thread of its own, taking a core meanwhile.
    pub fn is_beside(&self) -> bool {
        matches!(self, Pending::Beside(_))
    }

    /// The digest, waiting for it if it is still being hashed.
    pub fn digest(self) -> String {
        match self {
            Pending::Ready(digest) => digest,
            Pending::Beside(digest) => digest
                .recv()
                .expect("a hashing thread answers unless it panicked"),
        }
    }
}

/// Hands bytes to hashing threads; see the module header.
pub(crate) struct Hasher<'scope, 'env> {
    scope: Option<&'scope Scope<'scope, 'env>>,
}

/// Runs `work` with a [`Hasher`]; natively its threads end with `work`.
pub(crate) fn with_hasher<'env, T>(work: impl for<'scope> FnOnce(&Hasher<'scope, 'env>) -> T) -> T {
    if cfg!(target_arch = "wasm32") {
        return work(&Hasher { scope: None });
    }
    std::thread::scope(|scope| work(&Hasher { scope: Some(scope) }))
}

impl<'env> Hasher<'_, 'env> {
    /// Hands `bytes` over: hashed beside the work if they are large enough and threads exist,
    /// else at once.
    pub fn hash(&self, bytes: Bytes<'env>) -> Pending {
        let slice = bytes.as_slice();
        count_hashed(slice.len());
        let Some(scope) = self.scope.filter(|_| slice.len() >= BESIDE_FROM) else {
            return Pending::Ready(uncounted_sha256_hex(slice));
        };
        let (answer, digest) = mpsc::channel();
        scope.spawn(move || {
            let sha256 = uncounted_sha256_hex(bytes.as_slice());
            // Let go before answering, so that `unshare` finds the bytes unshared.
            drop(bytes);
            let _ = answer.send(sha256);
        });
        Pending::Beside(digest)
    }
}

/// The bytes of `shared` back, once its digest is in (a copy only if something still holds it).
pub(crate) fn unshare(shared: Arc<Vec<u8>>) -> Vec<u8> {
    Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_come_back_awaited_in_any_order_and_count_once() {
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
            let mut digests: Vec<String> = pending.into_iter().rev().map(Pending::digest).collect();
            digests.reverse();
            digests.push(ready.digest());
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
