//! Reading an archive: any bytes give files or a typed error, never a panic; what is read obeys
//! the limits, and writing it back and reading that again gives the same files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linker_core::archive::{Archive, Limits};
use linker_core::Compression;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(archive) = Archive::read("fuzz.zip", data, &limits) else {
        return;
    };
    assert!(archive.files.len() <= limits.max_entries);
    let total: u64 = archive.files.values().map(|f| f.len() as u64).sum();
    assert!(total <= limits.max_total_bytes);
    for path in archive.files.keys() {
        assert!(
            !path.starts_with('/') && !path.split('/').any(|part| part == ".."),
            "an unsafe path was accepted: {path}"
        );
    }
    for compression in [Compression::Stored, Compression::default()] {
        let again = Archive::read("again.zip", &archive.write(compression), &limits)
            .unwrap_or_else(|error| panic!("a written archive does not read back: {error}"));
        assert_eq!(
            again.files, archive.files,
            "the files changed on a round trip"
        );
    }
});
