//! A whole link from (package zip, API zips) bytes, framed as `linker_fuzz::frames` reads them:
//! a typed error or a linked package whose every component validates for the Kinode runtime,
//! and `explain` refuses nothing that links.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linker_core::Options;
use linker_fuzz::{assert_linked_package_is_valid, frames, inputs};

fuzz_target!(|data: &[u8]| {
    let frames = frames(data);
    let Some((package, apis)) = inputs(&frames) else {
        return;
    };
    let options = Options::default();
    let Ok(linked) = linker_core::link(package, &apis, &options) else {
        return;
    };
    assert_linked_package_is_valid(&linked.bytes);
    if let Err(error) = linker_core::explain(package, &apis, &options) {
        panic!("links, but explain refuses it: {error}");
    }
});
