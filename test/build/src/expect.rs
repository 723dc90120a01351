//! What the fixture processes print and return, for tests to assert against. `our` is the address
//! string the host passes to `init` (`node@process:package:publisher`), which is also what
//! `standard::our` returns.
//!
//! bigapp's blob and the FNV-1a hash are the fixture's own code
//! (`test/fixtures/bigapp/bigapp/blob.rs`), included here verbatim.

include!("../../fixtures/bigapp/bigapp/blob.rs");

/// `mathlib::fingerprint(input)`: `mathlib(<input>)=<fnv1a-64 of input, 16 lowercase hex digits>`.
pub fn fingerprint(input: &str) -> String {
    format!("mathlib({input})={:016x}", fnv1a_64(input.as_bytes()))
}

/// `mathlib::fingerprint(input)` of mathlib 0.2.0 (fixture `mathlib.v2`).
pub fn fingerprint_v2(input: &str) -> String {
    format!("mathlib-v2({input})={:016x}", fnv1a_64(input.as_bytes()))
}

/// What process `app` 0.2.0 (fixture `app.v2`) prints at init, linked with mathlib 0.1.0 or, with
/// `v2`, 0.2.0.
pub fn app_v2(mathlib_v2: bool) -> String {
    let fingerprint = if mathlib_v2 {
        fingerprint_v2("app")
    } else {
        fingerprint("app")
    };
    format!("app v2: add(2,3)=5 fingerprint={fingerprint}")
}

/// What process `app` 0.1.0 prints at init when linked with mathlib 0.2.0.
pub fn app_with_mathlib_v2() -> String {
    format!("app: add(40,2)=42 fingerprint={}", fingerprint_v2("app"))
}

/// `textlib::label(s)` when mathlib's `next-id` returns `id` and the caller's address is `our`: `<S
/// uppercased>#<id> <fingerprint(s)> by <our>`.
pub fn label(s: &str, id: u64, our: &str) -> String {
    format!("{}#{id} {} by {our}", s.to_uppercase(), fingerprint(s))
}

/// `greeter::greet(name)` (selfish's own API): `hello <name>, from greeter-api`.
pub fn greet(name: &str) -> String {
    format!("hello {name}, from greeter-api")
}

/// What `mathlib-worker.wasm` (mathlib's worker, shipped in its api.zip) prints at init.
pub fn mathlib_worker() -> String {
    "mathlib-worker: up".to_string()
}

/// What process `app` prints at init.
pub fn app() -> String {
    format!("app: add(40,2)=42 fingerprint={}", fingerprint("app"))
}

/// What the `calc` script (package `app`) returns for the arguments `"<a> <b>"`.
pub fn calc(a: u64, b: u64) -> String {
    format!("calc: {}", a.wrapping_add(b))
}

/// What the `calc` script returns for arguments that are not two unsigned numbers.
pub const CALC_USAGE: &str = "calc: usage: calc <a> <b>";

/// What process `chain` prints at init (its textlib uses a fresh mathlib instance: id 1).
pub fn chain(our: &str) -> String {
    format!("chain: {}", label("hello", 1, our))
}

/// What process `duo` prints at init when the process and textlib share one mathlib instance (ids
/// 1, 2, 3).
pub fn duo(our: &str) -> String {
    format!("duo: first=1 label={} last=3", label("duo", 2, our))
}

/// What process `selfish` prints at init.
pub fn selfish() -> String {
    format!("selfish: {}", greet("node"))
}

/// What process `bigapp` prints at init (computes the blob's checksum: a few milliseconds).
pub fn bigapp() -> String {
    format!("bigapp: checksum={:016x} add=3", fnv1a_64(&blob()))
}
