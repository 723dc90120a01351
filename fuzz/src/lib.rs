//! What the fuzz targets share: the framing of a whole link's inputs, the oracle every linked
//! package must pass, and the linker process's request types.

use linker_core::archive::{Archive, Limits};
use linker_core::inspect::validate;
use linker_core::{Input, World};

/// The most API archives one `link` input carries.
pub const MAX_APIS: usize = 4;

/// Splits a `link` input into the package zip and up to [`MAX_APIS`] API zips: each is a
/// little-endian `u32` length and that many bytes (fewer if the input ends first).
/// `fuzz/seed` writes the fixtures in this form.
pub fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while frames.len() <= MAX_APIS {
        let Some((length, rest)) = data.split_first_chunk::<4>() else {
            break;
        };
        let length = usize::try_from(u32::from_le_bytes(*length)).unwrap_or(usize::MAX);
        let (frame, rest) = rest.split_at(length.min(rest.len()));
        frames.push(frame);
        data = rest;
    }
    frames
}

/// The names the API frames are known by.
pub const API_NAMES: [&str; MAX_APIS] = [
    "one:fuzz.os",
    "two:fuzz.os",
    "three:fuzz.os",
    "four:fuzz.os",
];

/// The inputs of one link: the package and the APIs, named.
pub fn inputs<'a>(frames: &[&'a [u8]]) -> Option<(Input<'a>, Vec<Input<'a>>)> {
    let (package, apis) = frames.split_first()?;
    let apis = apis
        .iter()
        .zip(API_NAMES)
        .map(|(bytes, name)| Input::new(name, bytes))
        .collect();
    Some((Input::new("app:fuzz.os.zip", package), apis))
}

/// The oracle of a successful link: the linked zip reads back under the default limits, and
/// every `.wasm` in it is a component or core module that validates with the Kinode runtime's
/// features. Panics (a fuzz finding) otherwise.
pub fn assert_linked_package_is_valid(bytes: &[u8]) {
    let archive = Archive::read("linked.zip", bytes, &Limits::default())
        .unwrap_or_else(|error| panic!("the linked zip does not read back: {error}"));
    for (path, contents) in &archive.files {
        if !path.ends_with(".wasm") {
            continue;
        }
        if let Err(reason) = validate(contents, World::Kinode) {
            panic!("the linked package's `{path}` does not validate: {reason}");
        }
    }
}

/// The linker process's API types, generated from `api/linker:sys-v0.wit` with the options
/// linker/process/src/api.rs uses, so their serde forms are the process's wire forms.
#[allow(
    unsafe_code,
    missing_docs,
    unused_qualifications,
    dead_code,
    clippy::all
)]
pub mod api {
    wit_bindgen::generate!({
        path: "target/wit",
        world: "linker-sys-v0",
        generate_unused_types: true,
        generate_all,
        additional_derives: [serde::Deserialize, serde::Serialize, PartialEq],
    });

    pub use kinode::process::linker::*;
}
