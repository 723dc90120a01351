//! One SHA-256 implementation (chosen by feature) behind `hash(rounds)`: hashes a 1 MiB buffer
//! `rounds` times, each round's input starting with the previous digest, so that nothing can be
//! skipped; returns the first four bytes of the last digest. `digest()` points at the last digest.
#![no_std]

#[cfg(not(any(
    feature = "sha2-soft",
    feature = "sha2-compact",
    feature = "sha2-next",
    feature = "hmac-sha256"
)))]
compile_error!("choose an implementation: sha2-soft, sha2-compact, sha2-next or hmac-sha256");

/// The bytes hashed each round.
const SIZE: usize = 1 << 20;

static mut BUFFER: [u8; SIZE] = [0; SIZE];
static mut DIGEST: [u8; 32] = [0; 32];

#[cfg(any(feature = "sha2-soft", feature = "sha2-compact"))]
fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(all(
    feature = "sha2-next",
    not(any(feature = "sha2-soft", feature = "sha2-compact"))
))]
fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2_next::Digest as _;
    sha2_next::Sha256::digest(bytes).into()
}

#[cfg(all(
    feature = "hmac-sha256",
    not(any(feature = "sha2-soft", feature = "sha2-compact", feature = "sha2-next"))
))]
fn sha256(bytes: &[u8]) -> [u8; 32] {
    hmac_sha256::Hash::hash(bytes)
}

/// Hashes the buffer `rounds` times (see the module header).
#[no_mangle]
pub extern "C" fn hash(rounds: u32) -> u32 {
    // SAFETY: a Wasm module instance runs on one thread; nothing else touches these statics.
    let (buffer, digest) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(BUFFER),
            &mut *core::ptr::addr_of_mut!(DIGEST),
        )
    };
    for (i, byte) in buffer.iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    for _ in 0..rounds {
        buffer[..32].copy_from_slice(digest);
        *digest = sha256(buffer);
    }
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
