//! Every component a linked package will contain is validated, function bodies included, with
//! the Wasm features of the Kinode runtime's wasmtime 27: the package's own components whether
//! or not they are composed, the libraries composed into them, and the workers copied from API
//! zips. A damaged one is refused with `Inspect::InvalidComponent` naming the archive and the
//! file, by `link` and `explain` alike. The damage is made here from the built fixtures.

use linker_core::inspect::validate;
use linker_core::{Input, InspectError, LinkError, Options, Origin, World};
use linker_tests::damage::{self, file_in_zip, replace_in_zip};
use linker_tests::node::{fixtures, read};
use linker_tests::{manifest, zip};

/// Links and explains `package` (named `{name}:test.os.zip`) against `apis`, with `options`.
fn both(
    package: &[u8],
    name: &str,
    apis: &[(&str, Vec<u8>)],
    options: &Options,
) -> (
    Result<linker_core::Linked, LinkError>,
    Result<linker_core::Explanation, LinkError>,
) {
    let package_name = format!("{name}:test.os.zip");
    let package = Input::new(&package_name, package);
    let apis: Vec<Input<'_>> = apis
        .iter()
        .map(|(name, bytes)| Input::new(name, bytes))
        .collect();
    (
        linker_core::link(package, &apis, options),
        linker_core::explain(package, &apis, options),
    )
}

fn api(name: &str) -> (&'static str, Vec<u8>) {
    let id = match name {
        "mathlib" => "mathlib:test.os",
        other => panic!("no API fixture {other}"),
    };
    (id, read(fixtures().api(name)))
}

/// Asserts that link and explain both refuse with `InvalidComponent` for `archive`/`path`.
fn assert_invalid(
    results: (
        Result<linker_core::Linked, LinkError>,
        Result<linker_core::Explanation, LinkError>,
    ),
    archive: &str,
    path: &str,
) {
    let (linked, explained) = results;
    for error in [linked.err(), explained.err()] {
        let error = error.expect("the damaged package is refused");
        match &error {
            LinkError::Inspect(InspectError::InvalidComponent { origin, .. }) => assert_eq!(
                origin,
                &Origin {
                    archive: archive.into(),
                    path: path.into()
                }
            ),
            other => panic!("expected InvalidComponent for {path}, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(path) && message.contains(archive),
            "{message}"
        );
    }
}

fn damaged_package(
    name: &str,
    path: &str,
    damage: fn(&[u8]) -> anyhow::Result<Vec<u8>>,
) -> Vec<u8> {
    let package = read(fixtures().package(name));
    let wasm = file_in_zip(&package, path).expect("the fixture has the file");
    let damaged = damage(&wasm).expect("the damage applies");
    assert_ne!(damaged, wasm);
    assert_eq!(damaged.len(), wasm.len(), "the damage is one byte");
    replace_in_zip(&package, path, &damaged).expect("rezip")
}

#[test]
fn the_undamaged_fixtures_link_and_validate() {
    // So that each refusal below is the damage's doing.
    let options = Options::default();
    let (linked, explained) = both(&read(fixtures().package("echo")), "echo", &[], &options);
    linked.expect("echo links");
    explained.expect("echo explains");
    let (linked, _) = both(
        &read(fixtures().package("app")),
        "app",
        &[api("mathlib")],
        &options,
    );
    let linked = linked.expect("app links");
    let out = linker_core::archive::Archive::read("out", &linked.bytes, &Default::default())
        .expect("reads back");
    for (path, bytes) in &out.files {
        if path.ends_with(".wasm") {
            validate(bytes, World::Kinode).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
}

#[test]
fn a_function_body_of_a_process_with_nothing_to_link() {
    let package = damaged_package("echo", "echo.wasm", damage::function_body);
    assert_invalid(
        both(&package, "echo", &[], &Options::default()),
        "echo:test.os.zip",
        "echo.wasm",
    );
}

#[test]
fn a_function_body_of_a_process_that_is_composed() {
    let package = damaged_package("app", "app.wasm", damage::function_body);
    assert_invalid(
        both(&package, "app", &[api("mathlib")], &Options::default()),
        "app:test.os.zip",
        "app.wasm",
    );
}

#[test]
fn a_function_body_of_a_script() {
    let package = damaged_package("app", "calc.wasm", damage::function_body);
    assert_invalid(
        both(&package, "app", &[api("mathlib")], &Options::default()),
        "app:test.os.zip",
        "calc.wasm",
    );
}

#[test]
fn a_type_section() {
    let package = damaged_package("echo", "echo.wasm", damage::type_section);
    assert_invalid(
        both(&package, "echo", &[], &Options::default()),
        "echo:test.os.zip",
        "echo.wasm",
    );
}

#[test]
fn a_component_section() {
    let package = damaged_package("echo", "echo.wasm", damage::component_section);
    assert_invalid(
        both(&package, "echo", &[], &Options::default()),
        "echo:test.os.zip",
        "echo.wasm",
    );
}

#[test]
fn a_worker_inside_an_api_zip() {
    let (name, zip) = api("mathlib");
    let worker = file_in_zip(&zip, "mathlib-worker.wasm").expect("mathlib ships its worker");
    let damaged = replace_in_zip(
        &zip,
        "mathlib-worker.wasm",
        &damage::function_body(&worker).expect("damage"),
    )
    .expect("rezip");
    assert_invalid(
        both(
            &read(fixtures().package("app")),
            "app",
            &[(name, damaged)],
            &Options::default(),
        ),
        "mathlib:test.os",
        "mathlib-worker.wasm",
    );
}

#[test]
fn a_library_composed_into_a_process() {
    let (name, zip) = api("mathlib");
    let library = file_in_zip(&zip, "mathlib-api.wasm").expect("mathlib's library");
    let damaged = replace_in_zip(
        &zip,
        "mathlib-api.wasm",
        &damage::function_body(&library).expect("damage"),
    )
    .expect("rezip");
    assert_invalid(
        both(
            &read(fixtures().package("app")),
            "app",
            &[(name, damaged)],
            &Options::default(),
        ),
        "mathlib:test.os",
        "mathlib-api.wasm",
    );
}

/// A core module with one 64-bit memory: valid Wasm, but memory64 is not among the features
/// wasmtime 27 enables by default.
const MEMORY64_MODULE: &[u8] = b"\0asm\x01\0\0\0\x05\x03\x01\x04\x01";

#[test]
fn a_core_module_the_package_only_ships_must_validate_too() {
    let echo = file_in_zip(&read(fixtures().package("echo")), "echo.wasm").expect("echo.wasm");
    let package = |helper: &[u8]| {
        zip(&[
            ("manifest.json", &manifest(&[("echo", "echo.wasm")])),
            ("echo.wasm", &echo),
            ("ui/helper.wasm", helper),
        ])
        .expect("zip")
    };
    let origin = Origin {
        archive: "echo:test.os.zip".into(),
        path: "ui/helper.wasm".into(),
    };
    let (linked, explained) = both(&package(MEMORY64_MODULE), "echo", &[], &Options::default());
    for error in [linked.err(), explained.err()] {
        assert!(
            matches!(&error, Some(LinkError::Inspect(InspectError::InvalidModule { origin: o, .. })) if *o == origin),
            "{error:?}"
        );
    }
    // Any other world validates with wasmparser's defaults, which include memory64.
    let any = Options {
        world: World::Any,
        ..Options::default()
    };
    let (linked, _) = both(&package(MEMORY64_MODULE), "echo", &[], &any);
    linked.expect("links for any world");
    let (linked, _) = both(&package(b"not wasm"), "echo", &[], &Options::default());
    assert_eq!(
        linked.err(),
        Some(LinkError::Inspect(InspectError::NotAComponent {
            origin,
            found: "not WebAssembly"
        }))
    );
}

/// One module per proposal the runtime might or might not run, in the text format.
const PROPOSALS: &[(&str, &str)] = &[
    ("mvp", "(module (func (result i32) i32.const 1))"),
    ("sign extension", "(module (func (param i32) (result i32) local.get 0 i32.extend8_s))"),
    ("multi-value", "(module (func (result i32 i32) i32.const 1 i32.const 2))"),
    ("bulk memory", "(module (memory 1) (func i32.const 0 i32.const 0 i32.const 0 memory.copy))"),
    ("reference types", "(module (table 1 externref) (func (result externref) ref.null extern))"),
    ("simd", "(module (func (result v128) v128.const i64x2 0 0))"),
    ("relaxed simd", "(module (func (param v128 v128) (result v128) local.get 0 local.get 1 i8x16.relaxed_swizzle))"),
    ("multi-memory", "(module (memory 1) (memory 1))"),
    ("tail calls", "(module (func $f return_call $f))"),
    ("extended const", "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))"),
    ("threads", "(module (memory 1 1 shared) (func (result i32) i32.const 0 i32.atomic.load))"),
    ("memory64", "(module (memory i64 1))"),
    ("function references", "(module (type $t (func)) (func (param (ref $t))))"),
    ("gc", "(module (type $s (struct (field i32))) (func (result (ref null $s)) ref.null $s))"),
    ("exceptions", "(module (tag $e) (func throw $e))"),
    ("wide arithmetic", "(module (func (param i64 i64 i64 i64) (result i64 i64) local.get 0 local.get 1 local.get 2 local.get 3 i64.add128))"),
    ("custom page sizes", "(module (memory 1 (pagesize 1)))"),
];

#[test]
fn the_features_are_exactly_the_ones_wasmtime_27_enables() {
    let host =
        linker_test_host::Host::new().expect("a wasmtime 27 engine configured as the runtime's");
    let mut rejected = Vec::new();
    for (proposal, text) in PROPOSALS {
        let module = wat::parse_str(text).unwrap_or_else(|e| panic!("{proposal}: {e}"));
        let runtime = wasmtime::Module::validate(host.engine(), &module);
        let ours = validate(&module, World::Kinode);
        assert_eq!(
            ours.is_ok(),
            runtime.is_ok(),
            "{proposal}: the linker says {ours:?}, wasmtime 27 says {runtime:?}"
        );
        if ours.is_err() {
            rejected.push(*proposal);
        }
    }
    // The comparison must have seen both answers.
    assert!(
        rejected.contains(&"memory64") && !rejected.contains(&"tail calls"),
        "{rejected:?}"
    );
}

/// A core module of `count` functions, each a long run of valid arithmetic, but those in `bad`
/// add an `i64` to an `i32`.
fn many_functions(count: usize, bad: &[usize]) -> Vec<u8> {
    let mut text = String::from("(module\n");
    for index in 0..count {
        text.push_str("  (func (result i32) i32.const 1\n");
        for _ in 0..40 {
            text.push_str("    i32.const 2 i32.add\n");
        }
        if bad.contains(&index) {
            text.push_str("    i64.const 3 i32.add\n");
        }
        text.push_str("  )\n");
    }
    text.push(')');
    wat::parse_str(&text).expect("the module assembles")
}

#[test]
fn bodies_validated_in_parallel_fail_as_one_pass_would() {
    // Enough code (about 1 MB) that the bodies are split across threads; a failure in the first
    // chunk and one in the last, the first reported, as wasmparser's own single pass reports it.
    for bad in [&[][..], &[4_000], &[7_000], &[10, 7_000], &[4_000, 7_500]] {
        let module = many_functions(8_000, bad);
        let one_pass = wasmparser::Validator::new_with_features(World::Any.features())
            .validate_all(&module)
            .map(drop)
            .map_err(|error| error.to_string());
        assert_eq!(
            validate(&module, World::Any),
            one_pass,
            "bad functions {bad:?}"
        );
        assert_eq!(one_pass.is_ok(), bad.is_empty());
    }
}
