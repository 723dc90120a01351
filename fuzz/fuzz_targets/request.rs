//! The linker process's request parsing: any body gives a request or a serde error, and a
//! request parsed survives a round trip through its JSON form unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linker_fuzz::api::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    let json = serde_json::to_vec(&request).expect("a parsed request serialises");
    let again: Request = serde_json::from_slice(&json)
        .unwrap_or_else(|error| panic!("a serialised request does not parse: {error}"));
    assert!(again == request, "the request changed on a round trip");
});
