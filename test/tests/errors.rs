//! One test per error a user can cause, each asserting the exact variant and that the message
//! names the offending items. The core is pure, so a failed link returns no bytes at all; the
//! CLI's tests check that a failed command writes no file.

use linker_core::{
    ArchiveError, Input, InspectError, Limits, LinkError, Options, PackageError, ResolveError,
    VerifyError,
};
use linker_tests::{component, manifest, zip};

const MATH: &str = "package acme:math@1.0.0 {
  interface math { add: func(a: u32, b: u32) -> u32; }
}";

/// A process component importing `imports` (WIT import lines) and exporting `init`.
fn process(packages: &str, imports: &str) -> Vec<u8> {
    component(&format!(
        "package test:app;\n{packages}\nworld app {{\n{imports}\n  export init: func(our: string);\n}}"
    ))
    .expect("process component")
}

/// A library exporting `export` (and importing `imports`).
fn library(packages: &str, imports: &str, export: &str) -> Vec<u8> {
    component(&format!(
        "package test:lib;\n{packages}\nworld lib {{\n{imports}\n  export {export};\n}}"
    ))
    .expect("library component")
}

fn app_package(app: &[u8]) -> Vec<u8> {
    zip(&[
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("app.wasm", app),
    ])
    .expect("zip")
}

fn math_importer() -> Vec<u8> {
    process(MATH, "  import acme:math/math@1.0.0;")
}

fn link(package: &[u8], apis: &[(&str, &[u8])]) -> Result<linker_core::Linked, LinkError> {
    link_with(package, apis, &Options::default())
}

fn link_with(
    package: &[u8],
    apis: &[(&str, &[u8])],
    options: &Options,
) -> Result<linker_core::Linked, LinkError> {
    let apis: Vec<Input<'_>> = apis
        .iter()
        .map(|&(name, bytes)| Input::new(name, bytes))
        .collect();
    linker_core::link(Input::new("app:test.os.zip", package), &apis, options)
}

fn api(files: &[(&str, &[u8])]) -> Vec<u8> {
    zip(files).expect("api zip")
}

#[test]
fn malformed_zip() {
    let error = link(b"PK\x03\x04 this is not a zip", &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Archive(ArchiveError::NotAZip { archive, .. }) if archive == "app:test.os.zip"),
        "{error:?}"
    );
    assert!(error.to_string().contains("app:test.os.zip"));
}

#[test]
fn malformed_api_zip_is_named() {
    let package = app_package(&math_importer());
    let error = link(&package, &[("mathlib:test.os", b"garbage")]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Archive(ArchiveError::NotAZip { archive, .. }) if archive == "mathlib:test.os"),
        "{error:?}"
    );
}

#[test]
fn path_traversal_entries() {
    for entry in ["../x.wasm", "ui/../../x", "/etc/passwd", "C:/x"] {
        let bytes = zip(&[("manifest.json", b"[]"), (entry, b"x")]).unwrap();
        let error = link(&bytes, &[]).unwrap_err();
        assert_eq!(
            error,
            LinkError::Archive(ArchiveError::UnsafePath {
                archive: "app:test.os.zip".into(),
                entry: entry.into()
            }),
        );
        assert!(error.to_string().contains(entry));
    }
}

#[test]
fn path_traversal_in_an_api_zip() {
    let package = app_package(&math_importer());
    let bad = api(&[("../../evil.wasm", b"x")]);
    let error = link(&package, &[("mathlib:test.os", &bad)]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Archive(ArchiveError::UnsafePath { archive, entry }) if archive == "mathlib:test.os" && entry == "../../evil.wasm"),
        "{error:?}"
    );
}

#[test]
fn zip_bomb_by_ratio() {
    let zeros = vec![0u8; 4 << 20];
    let bytes = zip(&[("manifest.json", b"[]"), ("ui/zeros.bin", &zeros)]).unwrap();
    let error = link(&bytes, &[]).unwrap_err();
    match &error {
        LinkError::Archive(ArchiveError::CompressionRatio {
            entry,
            ratio,
            limit,
            ..
        }) => {
            assert_eq!(entry, "ui/zeros.bin");
            assert!(ratio > limit);
        }
        other => panic!("expected CompressionRatio, got {other:?}"),
    }
    assert!(error.to_string().contains("ui/zeros.bin"));
}

#[test]
fn a_linked_package_reads_back_however_well_its_files_compress() {
    // 2 MiB of zeros, stored: harmless as it came, but deflated it would look like a zip bomb
    // to the reader (and to the linker's install, which reads the linked zip back).
    let mut writer = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = ::zip::write::SimpleFileOptions::default()
        .compression_method(::zip::CompressionMethod::Stored);
    let app = process("", "");
    for (name, bytes) in [
        ("app.wasm", app.as_slice()),
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("ui/zeros.bin", &vec![0u8; 2 << 20]),
    ] {
        writer.start_file(name, stored).unwrap();
        std::io::Write::write_all(&mut writer, bytes).unwrap();
    }
    let package = writer.finish().unwrap().into_inner();
    let linked = link(&package, &[]).unwrap();
    let out =
        linker_core::archive::Archive::read("out", &linked.bytes, &Limits::default()).unwrap();
    assert_eq!(out.files["ui/zeros.bin"].len(), 2 << 20);
}

/// Patches the uncompressed size that the central directory declares for the first entry.
fn declare_size(mut bytes: Vec<u8>, size: u32) -> Vec<u8> {
    let central = bytes
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .expect("a central directory header");
    bytes[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
    bytes
}

#[test]
fn zip_bomb_by_declared_total_size() {
    // A small entry that claims to inflate to almost 4 GiB: refused before anything inflates.
    let bytes = declare_size(zip(&[("big.bin", &[7u8; 100])]).unwrap(), 0xFFFF_0000);
    let error = link(&bytes, &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Archive(ArchiveError::ContentsTooLarge { archive, size, limit }) if archive == "app:test.os.zip" && *size == 0xFFFF_0000 && *limit == Limits::default().max_total_bytes),
        "{error:?}"
    );
}

#[test]
fn entry_that_lies_about_its_size() {
    let bytes = declare_size(
        zip(&[("a.bin", &[7u8; 100]), ("manifest.json", b"[]")]).unwrap(),
        10,
    );
    let error = link(&bytes, &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Archive(ArchiveError::CorruptEntry { entry, .. }) if entry == "a.bin"),
        "{error:?}"
    );
}

#[test]
fn total_size_and_entry_count_limits() {
    let bytes = zip(&[
        ("manifest.json", b"[]"),
        ("a", &[1u8; 600]),
        ("b", &[2u8; 600]),
    ])
    .unwrap();
    let tight = |limits: Limits| Options {
        limits,
        ..Options::default()
    };
    let error = link_with(
        &bytes,
        &[],
        &tight(Limits {
            max_total_bytes: 1000,
            ..Limits::default()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Archive(ArchiveError::ContentsTooLarge { limit: 1000, .. })
        ),
        "{error:?}"
    );
    let error = link_with(
        &bytes,
        &[],
        &tight(Limits {
            max_entries: 2,
            ..Limits::default()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Archive(ArchiveError::TooManyEntries {
                count: 3,
                limit: 2,
                ..
            })
        ),
        "{error:?}"
    );
    let error = link_with(
        &bytes,
        &[],
        &tight(Limits {
            max_archive_bytes: 100,
            ..Limits::default()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Archive(ArchiveError::ArchiveTooLarge { limit: 100, .. })
        ),
        "{error:?}"
    );
}

#[test]
fn duplicate_entries() {
    // The zip writer refuses duplicates, so rename `b.wasm` to `a.wasm` in the written bytes.
    let mut bytes = zip(&[
        ("manifest.json", b"[]"),
        ("a.wasm", b"one"),
        ("b.wasm", b"two"),
    ])
    .unwrap();
    while let Some(at) = bytes.windows(6).position(|w| w == b"b.wasm") {
        bytes[at] = b'a';
    }
    let error = link(&bytes, &[]).unwrap_err();
    assert_eq!(
        error,
        LinkError::Archive(ArchiveError::DuplicateEntry {
            archive: "app:test.os.zip".into(),
            entry: "a.wasm".into()
        })
    );
}

#[test]
fn not_a_component() {
    let core_module = b"\0asm\x01\0\0\0";
    let error = link(&app_package(core_module), &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Inspect(InspectError::NotAComponent { origin, found }) if origin.path == "app.wasm" && found.contains("core")),
        "{error:?}"
    );
    let error = link(&app_package(b"hello"), &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Inspect(InspectError::NotAComponent { found, .. }) if found.contains("not WebAssembly")),
        "{error:?}"
    );
    assert!(error.to_string().contains("app.wasm"));
}

#[test]
fn unreferenced_core_module_is_kept_as_it_is() {
    let core_module = b"\0asm\x01\0\0\0";
    let app = process("", "");
    let bytes = zip(&[
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("app.wasm", &app),
        ("ui/helper.wasm", core_module),
    ])
    .unwrap();
    let linked = link(&bytes, &[]).unwrap();
    let out =
        linker_core::archive::Archive::read("out", &linked.bytes, &Limits::default()).unwrap();
    assert_eq!(out.files["ui/helper.wasm"], core_module);
}

#[test]
fn invalid_component() {
    let mut bytes = math_importer();
    let len = bytes.len();
    bytes.truncate(len / 2);
    let error = link(&app_package(&bytes), &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Inspect(InspectError::InvalidComponent { origin, .. }) if origin.path == "app.wasm"),
        "{error:?}"
    );
}

#[test]
fn no_provider() {
    let error = link(&app_package(&math_importer()), &[]).unwrap_err();
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    assert!(
        matches!(&problems[..], [ResolveError::NoProvider { component, import, .. }] if component == "app.wasm" && import == "acme:math/math@1.0.0"),
        "{problems:?}"
    );
    assert!(
        error.to_string().contains("acme:math/math@1.0.0")
            && error.to_string().contains("app.wasm")
    );
}

#[test]
fn type_mismatch() {
    let wrong = MATH.replace("a: u32, b: u32) -> u32", "a: string) -> u32");
    let lib = library(&wrong, "", "acme:math/math@1.0.0");
    let bad = api(&[("math-api.wasm", &lib)]);
    let error = link(&app_package(&math_importer()), &[("badmath:test.os", &bad)]).unwrap_err();
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    match &problems[..] {
        [ResolveError::TypeMismatch {
            import,
            provider,
            reason,
            ..
        }] => {
            assert_eq!(import, "acme:math/math@1.0.0");
            assert_eq!(provider.archive, "badmath:test.os");
            assert_eq!(provider.path, "math-api.wasm");
            assert!(
                reason.contains("add"),
                "the reason names the function: {reason}"
            );
        }
        other => panic!("expected one TypeMismatch, got {other:?}"),
    }
}

#[test]
fn ambiguous_providers() {
    let first = library(MATH, "", "acme:math/math@1.0.0");
    let second = library(MATH, "", "acme:math/math@1.0.0; export extra: func()");
    let one = api(&[("math-api.wasm", &first)]);
    let two = api(&[("other-api.wasm", &second)]);
    let error = link(
        &app_package(&math_importer()),
        &[("one:test.os", &one), ("two:test.os", &two)],
    )
    .unwrap_err();
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    match &problems[..] {
        [ResolveError::Ambiguous { candidates, .. }] => {
            let archives: Vec<&str> = candidates.iter().map(|c| c.archive.as_str()).collect();
            assert_eq!(archives, ["one:test.os", "two:test.os"]);
        }
        other => panic!("expected one Ambiguous, got {other:?}"),
    }
    assert!(error.to_string().contains("one:test.os") && error.to_string().contains("two:test.os"));
}

#[test]
fn cycle() {
    let a = "package acme:a@1.0.0 { interface a { f: func(); } }";
    let b = "package acme:b@1.0.0 { interface b { g: func(); } }";
    let both = format!("{a}\n{b}");
    let lib_a = library(&both, "  import acme:b/b@1.0.0;", "acme:a/a@1.0.0");
    let lib_b = library(&both, "  import acme:a/a@1.0.0;", "acme:b/b@1.0.0");
    let apis = api(&[("a.wasm", &lib_a), ("b.wasm", &lib_b)]);
    let app = process(a, "  import acme:a/a@1.0.0;");
    let error = link(&app_package(&app), &[("ab:test.os", &apis)]).unwrap_err();
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    match &problems[..] {
        [ResolveError::Cycle { path, .. }] => {
            let names: Vec<&str> = path.iter().map(|o| o.path.as_str()).collect();
            assert_eq!(names, ["a.wasm", "b.wasm", "a.wasm"]);
        }
        other => panic!("expected one Cycle, got {other:?}"),
    }
    assert!(error
        .to_string()
        .contains("`a.wasm` in `ab:test.os` -> `b.wasm` in `ab:test.os`"));
}

#[test]
fn non_runtime_import_left_after_linking() {
    // The library needs an old runtime's standard interface, which no node provides.
    let old = "package kinode:process@0.7.0 { interface standard { our: func() -> string; } }";
    let lib = library(
        &format!("{MATH}\n{old}"),
        "  import kinode:process/standard@0.7.0;",
        "acme:math/math@1.0.0",
    );
    let apis = api(&[("math-api.wasm", &lib)]);
    let error = link(
        &app_package(&math_importer()),
        &[("mathlib:test.os", &apis)],
    )
    .unwrap_err();
    assert_eq!(
        error,
        LinkError::Verify(VerifyError::ForbiddenImports {
            component: "app.wasm".into(),
            imports: vec!["kinode:process/standard@0.7.0".into()],
        })
    );
}

#[test]
fn missing_init() {
    let app = component(&format!("package test:app;\n{MATH}\nworld app {{ import acme:math/math@1.0.0; export run: func(); }}")).unwrap();
    let lib = library(MATH, "", "acme:math/math@1.0.0");
    let apis = api(&[("math-api.wasm", &lib)]);
    let error = link(&app_package(&app), &[("mathlib:test.os", &apis)]).unwrap_err();
    assert_eq!(
        error,
        LinkError::Verify(VerifyError::MissingInit {
            component: "app.wasm".into(),
            found: None
        })
    );
    let wrong = component("package test:app;\nworld app { export init: func(our: u32); }").unwrap();
    let error = link(&app_package(&wrong), &[]).unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Verify(VerifyError::MissingInit { found: Some(_), .. })
        ),
        "{error:?}"
    );
}

#[test]
fn manifest_problems() {
    let app = math_importer();
    let error = link(&zip(&[("app.wasm", &app)]).unwrap(), &[]).unwrap_err();
    assert_eq!(
        error,
        LinkError::Package(PackageError::MissingManifest {
            package: "app:test.os.zip".into()
        })
    );

    let error = link(
        &zip(&[("manifest.json", b"{\"not\": \"a list\"}")]).unwrap(),
        &[],
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Package(PackageError::InvalidManifest {
                file: "manifest.json",
                ..
            })
        ),
        "{error:?}"
    );

    let bytes = zip(&[("manifest.json", &manifest(&[("app", "gone.wasm")]))]).unwrap();
    let error = link(&bytes, &[]).unwrap_err();
    assert_eq!(
        error,
        LinkError::Package(PackageError::MissingWasm {
            package: "app:test.os.zip".into(),
            file: "manifest.json",
            path: "gone.wasm".into()
        })
    );

    let bytes = zip(&[
        ("manifest.json", b"[]"),
        ("scripts.json", br#"{"calc.wasm": {}}"#),
    ])
    .unwrap();
    let error = link(&bytes, &[]).unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Package(PackageError::MissingWasm {
                file: "scripts.json",
                ..
            })
        ),
        "{error:?}"
    );
}

#[test]
fn worker_conflicting_with_a_package_file() {
    let lib = library(MATH, "", "acme:math/math@1.0.0");
    let worker = process("", "");
    let apis = api(&[("math-api.wasm", &lib), ("worker.wasm", &worker)]);
    let app = math_importer();
    let package = zip(&[
        ("manifest.json", &manifest(&[("app", "app.wasm")])),
        ("app.wasm", &app),
        ("worker.wasm", b"\0asm\x01\0\0\0"),
    ])
    .unwrap();
    let error = link(&package, &[("mathlib:test.os", &apis)]).unwrap_err();
    assert_eq!(
        error,
        LinkError::Package(PackageError::FileConflict {
            package: "app:test.os.zip".into(),
            path: "worker.wasm".into(),
            api: "mathlib:test.os".into()
        })
    );
}

#[test]
fn every_problem_of_every_component_is_reported_at_once() {
    let text = "package acme:text@1.0.0 { interface text { f: func(); } }";
    let app = math_importer();
    let other = process(text, "  import acme:text/text@1.0.0;");
    let package = zip(&[
        (
            "manifest.json",
            &manifest(&[("app", "app.wasm"), ("other", "other.wasm")]),
        ),
        ("app.wasm", &app),
        ("other.wasm", &other),
    ])
    .unwrap();
    let error = link(&package, &[]).unwrap_err();
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    let components: Vec<String> = problems
        .iter()
        .map(|problem| match problem {
            ResolveError::NoProvider { component, .. } => component.clone(),
            other => panic!("expected NoProvider, got {other:?}"),
        })
        .collect();
    assert_eq!(components, ["app.wasm", "other.wasm"]);
}

#[test]
fn an_archive_with_two_central_directories_is_refused() {
    // The real end record's comment hides a second, fake end record claiming no entries: the
    // checks and the reader must not be shown different directories.
    let mut bytes = zip(&[("manifest.json", b"[]"), ("../evil.wasm", b"x")]).unwrap();
    // Its own comment length points past the end, which the zip reader rejects and a naive
    // backwards scan does not.
    let mut fake = vec![0x50, 0x4b, 0x05, 0x06];
    fake.extend_from_slice(&[0; 16]);
    fake.extend_from_slice(&100u16.to_le_bytes());
    let comment_len = u16::try_from(fake.len()).unwrap();
    let end = bytes.len();
    bytes[end - 2..].copy_from_slice(&comment_len.to_le_bytes());
    bytes.extend_from_slice(&fake);
    let error = link(&bytes, &[]).unwrap_err();
    assert!(
        matches!(&error, LinkError::Archive(ArchiveError::NotAZip { reason, .. }) if reason.contains("two different central directories")),
        "{error:?}"
    );
}
