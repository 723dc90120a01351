//! The core compiled to wasm32-wasip1 (as the `kinode-link` command) and run by wasmtime 27
//! makes the same bytes as the native build, as it must when it runs inside a node.

use linker_core::{Input, Options};
use linker_test_host::run_wasi_command;
use linker_tests::damage::add_to_zip;

/// Links `package` against `apis` (file name, bytes) with the wasm build of `kinode-link` and
/// natively, and checks the two outputs are the same bytes.
fn links_identically(package: (&str, &[u8]), apis: &[(&str, Vec<u8>)]) {
    let module = std::fs::read(linker_tests::cli_wasm().expect("kinode-link for wasm32-wasip1"))
        .expect("read the module");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(package.0), package.1).expect("write package");
    let mut args = vec!["link".to_owned(), format!("/work/{}", package.0)];
    for (file, bytes) in apis {
        std::fs::write(dir.path().join(file), bytes).expect("write api");
        args.extend(["--api".to_owned(), format!("/work/{file}")]);
    }
    args.extend(["-o".to_owned(), "/work/linked.zip".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_wasi_command(&module, &args, (dir.path(), "/work")).expect("the command runs");
    assert!(
        output.success(),
        "kinode-link in wasm failed: {}",
        output.stderr
    );
    let in_wasm =
        std::fs::read(dir.path().join("linked.zip")).expect("the wasm build wrote its output");

    // Named as the command names them: an API zip by its file name without `-api.zip`.
    let names: Vec<String> = apis
        .iter()
        .map(|(file, _)| file.trim_end_matches("-api.zip").to_owned())
        .collect();
    let inputs: Vec<Input<'_>> = names
        .iter()
        .zip(apis)
        .map(|(name, (_, bytes))| Input::new(name, bytes))
        .collect();
    let native = linker_core::link(
        Input::new(package.0, package.1),
        &inputs,
        &Options::default(),
    )
    .expect("native link");
    assert_eq!(
        in_wasm, native.bytes,
        "wasm and native builds disagree on {}",
        package.0
    );
}

#[test]
fn wasm_build_links_byte_identically_to_native() {
    let fixtures = linker_fixtures::build().expect("fixtures");
    let read = |path: std::path::PathBuf| std::fs::read(path).expect("fixture");
    links_identically(
        ("duo:test.os.zip", &read(fixtures.package("duo"))),
        &[
            ("mathlib:test.os-api.zip", read(fixtures.api("mathlib"))),
            ("textlib:test.os-api.zip", read(fixtures.api("textlib"))),
        ],
    );
    // A bounded library gets a guard, configured the same way in both builds.
    let bounds =
        br#"{"libraries": {"courier:test.os": {"may": ["send-requests", "spawn", "files", "clocks", "random", "environment", "streams"], "send-to": ["library-package", "spawned"]}}}"#;
    let sender = add_to_zip(
        &read(fixtures.package("sender")),
        "library-bounds.json",
        bounds,
    )
    .expect("the zip takes a file");
    links_identically(
        ("sender:test.os.zip", &sender),
        &[("courier:test.os-api.zip", read(fixtures.api("courier")))],
    );
}
