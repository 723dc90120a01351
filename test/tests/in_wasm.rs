//! The core compiled to wasm32-wasip1 (as the `kinode-link` command) and run by wasmtime 27
//! makes the same bytes as the native build, as it must when it runs inside a node.

use linker_core::{Input, Options};
use linker_test_host::run_wasi_command;

#[test]
fn wasm_build_links_byte_identically_to_native() {
    let fixtures = linker_fixtures::build().expect("fixtures");
    let module = std::fs::read(linker_tests::cli_wasm().expect("kinode-link for wasm32-wasip1"))
        .expect("read the module");
    let dir = tempfile::tempdir().expect("tempdir");
    for dep in ["mathlib", "textlib"] {
        std::fs::copy(
            fixtures.api(dep),
            dir.path().join(format!("{dep}:test.os-api.zip")),
        )
        .expect("copy api");
    }
    std::fs::copy(fixtures.package("duo"), dir.path().join("duo:test.os.zip"))
        .expect("copy package");

    let output = run_wasi_command(
        &module,
        &[
            "link",
            "/work/duo:test.os.zip",
            "--api",
            "/work/mathlib:test.os-api.zip",
            "--api",
            "/work/textlib:test.os-api.zip",
            "-o",
            "/work/linked.zip",
        ],
        (dir.path(), "/work"),
    )
    .expect("the command runs");
    assert!(
        output.success(),
        "kinode-link in wasm failed: {}",
        output.stderr
    );
    let in_wasm =
        std::fs::read(dir.path().join("linked.zip")).expect("the wasm build wrote its output");

    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("input");
    let (package, mathlib, textlib) = (
        read("duo:test.os.zip"),
        read("mathlib:test.os-api.zip"),
        read("textlib:test.os-api.zip"),
    );
    let native = linker_core::link(
        Input::new("duo:test.os.zip", &package),
        &[
            Input::new("mathlib:test.os", &mathlib),
            Input::new("textlib:test.os", &textlib),
        ],
        &Options::default(),
    )
    .expect("native link");
    assert_eq!(in_wasm, native.bytes, "wasm and native builds disagree");
}
