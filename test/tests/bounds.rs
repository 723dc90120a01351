//! The linker process on a node against damaged and hostile packages: each is refused with a
//! typed error, nothing is installed, and the linker neither runs out of memory nor restarts.
//! Its peak guest memory (the largest linear memory its run reached) is measured on the largest
//! fixture and on each hostile input, each on a fresh node, and printed (`--nocapture`); the
//! README's "Bounds" records the figures and the bound asserted here.

use linker_test_host::caps;
use linker_tests::damage::{self, file_in_zip, replace_in_zip};
use linker_tests::node::*;
use linker_tests::{manifest, zip};
use serde_json::{json, Value};

const LINKER_PID: &str = "linker:linker:sys";

/// The peak guest memory a fixture or a hostile input here may cost the linker.
const BOUND: usize = 64 << 20;

/// The peak guest memory of a package at the size limits ([`linker_core::Limits`]): about four
/// times the package (the request's blob, the files read, the linked zip, its copy as the
/// response's blob), measured at 510 MiB.
const AT_LIMITS: usize = 640 << 20;

/// Sends `request` with `blob` from the tester; returns the response body.
fn ask(s: &Session, request: Value, blob: Vec<u8>) -> Value {
    s.ask(
        &s.tester,
        request,
        Some(blob),
        vec![caps::messaging(LINKER)],
    )
    .0
}

/// Checks that the linker still serves requests, never trapped, and stayed within `bound`;
/// returns its peak guest memory.
fn still_serving(s: &Session, what: &str, bound: usize) -> usize {
    let (apis, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    assert!(apis["ListApis"].get("Ok").is_some(), "{what}: {apis:#}");
    let crashed = s.node.prints().iter().any(|(_, print)| {
        print.message.contains(LINKER_PID) && print.message.contains("ended with error")
    });
    assert!(!crashed, "{what}: the linker trapped");
    let peak = s.node.memory_peak(LINKER_PID).expect("the linker ran");
    println!("{what}: linker peak guest memory {:.1} MiB", mib(peak));
    assert!(peak <= bound, "{what}: {:.1} MiB", mib(peak));
    peak
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

#[test]
fn a_damaged_package_is_refused_in_the_node_and_nothing_is_installed() {
    let s = Session::new();
    let f = fixtures();
    let package = read(f.package("app"));
    let app = file_in_zip(&package, "app.wasm").expect("app.wasm");
    let damaged = replace_in_zip(
        &package,
        "app.wasm",
        &damage::function_body(&app).expect("damage"),
    )
    .expect("rezip");
    let metadata = String::from_utf8(read(f.metadata("app"))).expect("text");
    let request = |kind: &str| json!({kind: {"source": "Blob", "metadata": metadata, "apis": s.upload_apis(&["mathlib"])}});
    for kind in ["Install", "Explain"] {
        let body = ask(&s, request(kind), damaged.clone());
        let problem = &err(&body[kind])["Component"];
        assert_eq!(problem["kind"], "invalid-component", "{body:#}");
        assert_eq!(problem["subject"], "app.wasm", "{body:#}");
        assert!(
            problem["message"]
                .as_str()
                .is_some_and(|m| m.contains("`app.wasm` in `app:test.os")),
            "{body:#}"
        );
    }
    assert!(s.node.list_dir("/app:test.os").is_empty());
    assert!(s.node.process("app:app:test.os").is_none());
    still_serving(&s, "damaged app.wasm", BOUND);
}

#[test]
fn the_largest_fixture_links_within_the_bound() {
    let s = Session::new();
    let f = fixtures();
    let body = ask(
        &s,
        json!({"Link": {"source": "Blob", "metadata": null, "apis": s.upload_apis(&["mathlib"])}}),
        read(f.package("bigapp")),
    );
    ok(&body["Link"]);
    still_serving(&s, "bigapp + mathlib (link)", BOUND);
}

#[test]
fn a_package_at_the_size_limits_links_within_its_bound() {
    // One incompressible file (stored, as the writer stores it too) filling the limits, beside
    // a process with nothing to link: the most a package can make the linker hold.
    let limits = linker_core::Limits::default();
    let echo = file_in_zip(&read(fixtures().package("echo")), "echo.wasm").expect("echo.wasm");
    let size = usize::try_from(limits.max_total_bytes).expect("fits") - (1 << 20);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let mut writer = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = ::zip::write::SimpleFileOptions::default()
        .compression_method(::zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, bytes) in [
        ("echo.wasm", echo.as_slice()),
        ("manifest.json", &manifest(&[("echo", "echo.wasm")])),
        ("ui/noise.bin", &noise),
    ] {
        writer.start_file(name, stored).expect("zip entry");
        std::io::Write::write_all(&mut writer, bytes).expect("zip write");
    }
    let package = writer.finish().expect("zip").into_inner();
    assert!(package.len() as u64 <= limits.max_archive_bytes);
    let s = Session::new();
    let body = ask(
        &s,
        json!({"Link": {"source": "Blob", "metadata": null, "apis": []}}),
        package,
    );
    ok(&body["Link"]);
    still_serving(&s, "127 MiB package at the limits (link)", AT_LIMITS);
}

/// A component type section of `count` (under 128) tuples, each of two of the previous: its
/// effective size doubles with every type.
fn exploding_types(count: u8) -> Vec<u8> {
    let mut section = vec![count, 0x6f, 0x02, 0x7d, 0x7d];
    for index in 1..count {
        section.extend_from_slice(&[0x6f, 0x02, index - 1, index - 1]);
    }
    let mut component = b"\0asm\x0d\0\x01\0\x07".to_vec();
    leb128(section.len(), &mut component);
    component.extend_from_slice(&section);
    component
}

fn leb128(mut value: usize, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A package whose process is `wasm`.
fn with_process(wasm: &[u8]) -> Vec<u8> {
    zip(&[
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("app.wasm", wasm),
    ])
    .expect("zip")
}

#[test]
fn hostile_packages_are_refused_within_the_bound() {
    let zeros = vec![0u8; (1 << 20) - 1];
    let many_small: Vec<(String, &[u8])> = (0..100)
        .map(|index| (format!("ui/{index}.bin"), zeros.as_slice()))
        .collect();
    let many_small: Vec<(&str, &[u8])> = many_small
        .iter()
        .map(|(name, bytes)| (name.as_str(), *bytes))
        .collect();
    let tiny: Vec<String> = (0..10_001).map(|index| format!("ui/{index}")).collect();
    let mut tiny: Vec<(&str, &[u8])> = tiny.iter().map(|name| (name.as_str(), &b"x"[..])).collect();
    tiny.push(("manifest.json", b"[]"));
    let mut declared = zip(&[("big.bin", &[7u8; 100])]).expect("zip");
    let central = declared
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .expect("a central directory");
    declared[central + 24..central + 28].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
    // A component type section that claims four billion types.
    let counted = b"\0asm\x0d\0\x01\0\x07\x05\xff\xff\xff\xff\x0f".to_vec();

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "zip bomb, one 64 MiB entry",
            zip(&[("ui/zeros.bin", &vec![0u8; 64 << 20])]).expect("zip"),
            "Archive",
            "compression-ratio",
        ),
        (
            "zip bomb, 100 entries under the ratio floor",
            zip(&many_small).expect("zip"),
            "Archive",
            "archive-ratio",
        ),
        (
            "entry declaring 4 GiB",
            declared,
            "Archive",
            "contents-too-large",
        ),
        (
            "10 001 tiny entries",
            zip(&tiny).expect("zip"),
            "Archive",
            "too-many-entries",
        ),
        (
            "component with exploding types",
            with_process(&exploding_types(40)),
            "Component",
            "invalid-component",
        ),
        (
            "component declaring 4 billion types",
            with_process(&counted),
            "Component",
            "invalid-component",
        ),
    ];
    for (what, package, layer, kind) in cases {
        let s = Session::new();
        let body = ask(
            &s,
            json!({"Link": {"source": "Blob", "metadata": null, "apis": []}}),
            package,
        );
        assert_eq!(err(&body["Link"])[layer]["kind"], kind, "{what}: {body:#}");
        still_serving(&s, what, BOUND);
    }
}
