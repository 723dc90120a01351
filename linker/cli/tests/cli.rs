//! `kinode-link` as a user runs it: exit status, what it prints, and that a failed command
//! writes no output file.

use std::process::Command;

use linker_tests::{component, manifest, zip};

const MATH: &str =
    "package acme:math@1.0.0 { interface math { add: func(a: u32, b: u32) -> u32; } }";

/// Links the package `setup` writes against its API, into `out.zip`.
const LINK: [&str; 6] = [
    "link",
    "app:test.os.zip",
    "--api",
    "math:test.os-api.zip",
    "-o",
    "out.zip",
];

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = component(&format!(
        "package test:app;\n{MATH}\nworld app {{ import acme:math/math@1.0.0; export init: func(our: string); }}"
    ))
    .expect("app");
    let lib = component(&format!(
        "package test:lib;\n{MATH}\nworld lib {{ export acme:math/math@1.0.0; }}"
    ))
    .expect("lib");
    let package = zip(&[
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("app.wasm", &app),
    ])
    .expect("zip");
    std::fs::write(dir.path().join("app:test.os.zip"), package).expect("write");
    std::fs::write(
        dir.path().join("math:test.os-api.zip"),
        zip(&[("math-api.wasm", &lib)]).expect("zip"),
    )
    .expect("write");
    std::fs::write(dir.path().join("app.wasm"), app).expect("write");
    std::fs::write(dir.path().join("math-api.wasm"), lib).expect("write");
    dir
}

fn kinode_link(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kinode-link"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn link_succeeds_and_reports_each_import() {
    let dir = setup();
    let (code, stdout, stderr) = kinode_link(dir.path(), &LINK);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "app.wasm: acme:math/math@1.0.0 <- math-api.wasm (math:test.os)\n  math-api.wasm (math:test.os) can: nothing beyond computing\nwrote out.zip (1 of 1 components linked)\n"
    );
    assert!(dir.path().join("out.zip").exists());
}

#[test]
fn a_failed_link_exits_1_names_the_import_and_writes_nothing() {
    let dir = setup();
    let (code, stdout, stderr) =
        kinode_link(dir.path(), &["link", "app:test.os.zip", "-o", "out.zip"]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "error: linking `app.wasm`: `app.wasm` in `app:test.os.zip` imports `acme:math/math@1.0.0`, and none of the APIs it is linked against provides it\n"
    );
    assert!(!dir.path().join("out.zip").exists());
    assert!(!dir.path().join("out.zip.partial").exists());
}

#[test]
fn an_output_already_there_is_replaced_and_kept_when_the_link_fails() {
    let dir = setup();
    let out = dir.path().join("out.zip");
    std::fs::write(&out, b"an older link").expect("write");
    let (code, _, stderr) = kinode_link(dir.path(), &LINK);
    assert_eq!(code, 0, "{stderr}");
    let linked = std::fs::read(&out).expect("the output");
    assert!(
        linked.starts_with(b"PK\x03\x04"),
        "a zip replaced the older file"
    );
    assert!(!dir.path().join("out.zip.partial").exists());

    let (code, _, _) = kinode_link(dir.path(), &["link", "app:test.os.zip", "-o", "out.zip"]);
    assert_eq!(code, 1);
    assert_eq!(std::fs::read(&out).expect("the output"), linked);
}

#[test]
fn an_output_that_cannot_be_replaced_is_an_error_and_leaves_nothing_behind() {
    let dir = setup();
    std::fs::create_dir(dir.path().join("out.zip")).expect("mkdir");
    let (code, stdout, stderr) = kinode_link(dir.path(), &LINK);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("error: cannot write `out.zip`: "),
        "{stderr}"
    );
    assert!(dir.path().join("out.zip").is_dir());
    assert!(!dir.path().join("out.zip.partial").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = setup();
    let (code, _, stderr) = kinode_link(dir.path(), &["link", "app:test.os.zip"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--output"));
    let (code, _, _) = kinode_link(dir.path(), &["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn compose_and_explain() {
    let dir = setup();
    let (code, stdout, stderr) = kinode_link(
        dir.path(),
        &[
            "compose",
            "app.wasm",
            "--dep",
            "math-api.wasm",
            "-o",
            "out.wasm",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "app.wasm: acme:math/math@1.0.0 <- math-api.wasm (math-api.wasm)\nwrote out.wasm\n"
    );
    let (code, stdout, _) = kinode_link(dir.path(), &["explain", "app:test.os.zip"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "app.wasm: 1 library import, 1 unresolved\n  acme:math/math@1.0.0 -> no provider\n"
    );
    let (code, stdout, _) = kinode_link(dir.path(), &["explain", "app:test.os.zip", "--json"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("\"outcome\": \"unmatched\""), "{stdout}");
}

#[test]
fn explain_shows_what_each_library_can_do_and_its_bound_as_link_does() {
    let dir = setup();
    let package = std::fs::read(dir.path().join("app:test.os.zip")).expect("read");
    let app = std::fs::read(dir.path().join("app.wasm")).expect("read");
    let bounded = zip(&[
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("app.wasm", &app),
        (
            "library-bounds.json",
            br#"{"libraries": {"math:test.os": {"may": ["print"]}}}"#,
        ),
    ])
    .expect("zip");
    assert_ne!(package, bounded);
    std::fs::write(dir.path().join("bounded:test.os.zip"), bounded).expect("write");
    let library_lines = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .filter(|line| line.contains(" can: ") || line.contains("library-bounds.json"))
            .map(str::to_owned)
            .collect()
    };
    let api = ["--api", "math:test.os-api.zip"];
    let (code, explained, stderr) = kinode_link(
        dir.path(),
        &["explain", "bounded:test.os.zip", api[0], api[1]],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, linked, stderr) = kinode_link(
        dir.path(),
        &[
            "link",
            "bounded:test.os.zip",
            api[0],
            api[1],
            "-o",
            "out.zip",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines = library_lines(&explained);
    assert_eq!(
        lines,
        [
            "  math-api.wasm (math:test.os) can: nothing beyond computing",
            "    bounded by library-bounds.json: may only: print",
        ],
        "{explained}"
    );
    assert_eq!(lines, library_lines(&linked), "{linked}");
}
