//! Inspecting one component, as `kinode-link compose` does with no libraries, in both worlds: a
//! component accepted must validate with that world's features, and one accepted for the Kinode
//! runtime must be accepted for any world.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linker_core::inspect::validate;
use linker_core::{Input, Options, World};

fuzz_target!(|data: &[u8]| {
    let input = Input::new("fuzz.wasm", data);
    let mut accepted = Vec::new();
    for world in [World::Kinode, World::Any] {
        let options = Options {
            world,
            ..Options::default()
        };
        if let Ok(composed) = linker_core::compose(input, &[], &options) {
            if let Err(reason) = validate(&composed.bytes, world) {
                panic!("{world:?} accepted an invalid component: {reason}");
            }
            accepted.push(world);
        }
    }
    assert!(
        accepted != [World::Kinode],
        "accepted for the Kinode runtime but not for any world"
    );
});
