//! The fixture contract: what each fixture package contains, and what every component imports and
//! exports, read back from the zips and decoded independently of the builder's own bookkeeping.

#![allow(clippy::unwrap_used)] // helpers of an integration test: a panic is the failure report

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use wit_component::DecodedWasm;
use wit_parser::{Resolve, Type, WorldItem, WorldKey};

const STANDARD: &str = "kinode:process/standard@1.0.0";
const MATHLIB: &str = "kinode:process/mathlib@1.0.0";
const TEXTLIB: &str = "kinode:process/textlib@1.0.0";
const GREETER: &str = "kinode:process/greeter@1.0.0";

/// Every entry of a zip, in archive order: name -> bytes (`None` for a directory).
fn unzip(bytes: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).unwrap();
        let name = file.name().unwrap().to_string();
        // kit's zip_directory: files Deflated (directory entries are Stored), mode 0o755, mtime
        // 2023-06-19.
        if !file.is_dir() {
            assert_eq!(
                file.compression(),
                zip::CompressionMethod::Deflated,
                "{name}"
            );
        }
        assert_eq!(file.unix_mode().map(|m| m & 0o777), Some(0o755), "{name}");
        let mtime = file.last_modified().unwrap();
        assert_eq!(
            (mtime.year(), mtime.month(), mtime.day()),
            (2023, 6, 19),
            "{name}"
        );
        if file.is_dir() {
            entries.push((name, None));
        } else {
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            entries.push((name, Some(content)));
        }
    }
    let names: Vec<&String> = entries.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    entries
}

fn files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    unzip(bytes)
        .into_iter()
        .filter_map(|(n, b)| b.map(|b| (n, b)))
        .collect()
}

struct World {
    resolve: Resolve,
    imports: Vec<(String, WorldItem)>,
    exports: Vec<(String, WorldItem)>,
}

impl World {
    fn decode(wasm: &[u8]) -> World {
        let DecodedWasm::Component(resolve, id) = wit_component::decode(wasm).expect("a component")
        else {
            panic!("not a component");
        };
        let world = &resolve.worlds[id];
        let named = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| {
            items
                .iter()
                .map(|(k, v)| (resolve.name_world_key(k), v.clone()))
                .collect::<Vec<_>>()
        };
        let (imports, exports) = (named(&world.imports), named(&world.exports));
        World {
            resolve,
            imports,
            exports,
        }
    }

    fn import_names(&self) -> Vec<&str> {
        self.imports.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn export_names(&self) -> Vec<&str> {
        self.exports.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The imports that are not WASI 0.2.x.
    fn kinode_imports(&self) -> Vec<&str> {
        let (wasi, other): (Vec<&str>, Vec<&str>) = self
            .import_names()
            .into_iter()
            .partition(|n| n.starts_with("wasi:"));
        for name in wasi {
            assert!(name.contains("@0.2."), "WASI import {name} is not 0.2.x");
        }
        other
    }

    /// A process (or script): exports exactly `init: func(our: string)`.
    fn assert_process(&self) {
        assert_eq!(self.export_names(), ["init"]);
        let WorldItem::Function(init) = &self.exports[0].1 else {
            panic!("init is not a function")
        };
        assert_eq!(init.params.len(), 1);
        assert_eq!(init.params[0].ty, Type::String);
        assert!(init.result.is_none());
    }

    /// The parameter and result types of an exported interface's functions, by name.
    fn exported_functions(&self, interface: &str) -> BTreeMap<String, (Vec<Type>, Option<Type>)> {
        let (_, item) = self
            .exports
            .iter()
            .find(|(n, _)| n == interface)
            .expect("the interface is exported");
        let WorldItem::Interface { id, .. } = item else {
            panic!("{interface} is not an interface")
        };
        self.resolve.interfaces[*id]
            .functions
            .iter()
            .map(|(name, f)| {
                (
                    name.clone(),
                    (f.params.iter().map(|p| p.ty).collect(), f.result),
                )
            })
            .collect()
    }
}

/// Reads a package zip: pkg/ files, and the api.zip inside it.
fn package(name: &str) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let fixtures = linker_fixtures::build().unwrap();
    let zip = std::fs::read(fixtures.package(name)).unwrap();
    let pkg = files(&zip);
    let api_zip = pkg.get("api.zip").expect("every package has api.zip");
    assert_eq!(
        *api_zip,
        std::fs::read(fixtures.api(name)).unwrap(),
        "apis/ holds a copy of pkg/api.zip"
    );
    let api = files(api_zip);
    // No exporter ever ships in pkg/: every pkg/*.wasm is a process or script.
    for (file, bytes) in pkg.iter().filter(|(f, _)| f.ends_with(".wasm")) {
        let world = World::decode(bytes);
        assert_eq!(world.export_names(), ["init"], "{name}: pkg/{file}");
    }
    (pkg, api)
}

fn names(map: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

#[test]
fn builds_every_fixture() {
    let fixtures = linker_fixtures::build().unwrap();
    assert_eq!(
        fixtures.names(),
        [
            "app",
            "app.v2",
            "badmath",
            "bigapp",
            "chain",
            "courier",
            "duo",
            "echo",
            "escape",
            "mathlib",
            "mathlib.v2",
            "mathlib.v3",
            "probe",
            "selfish",
            "sender",
            "textlib",
            "victim",
            "witness"
        ]
    );
    for path in fixtures.outputs() {
        assert!(path.is_file(), "{}", path.display());
    }
    for name in fixtures.names() {
        let metadata = std::fs::read(fixtures.metadata(name)).unwrap();
        let source = linker_fixtures::source_dir()
            .join(name)
            .join("metadata.json");
        assert_eq!(metadata, std::fs::read(source).unwrap());
        // The builder's bookkeeping agrees with the components on disk.
        for component in fixtures.components(name) {
            let world = World::decode(&std::fs::read(&component.path).unwrap());
            assert_eq!(world.import_names(), component.imports);
            assert_eq!(world.export_names(), component.exports);
        }
    }
    assert!(linker_fixtures::kinode_wit()
        .unwrap()
        .ends_with("kinode_process_lib-1.0.1/kinode-wit/kinode.wit"));
}

#[test]
fn mathlib_is_a_pure_library_with_a_worker() {
    let (pkg, api) = package("mathlib");
    assert_eq!(
        names(&pkg),
        ["api.zip", "manifest.json", "mathlib-worker.wasm"]
    );
    assert_eq!(
        names(&api),
        [
            "mathlib-api.wasm",
            "mathlib-worker.wasm",
            "mathlib:test.os-v0.wit"
        ]
    );
    assert_eq!(api["mathlib-worker.wasm"], pkg["mathlib-worker.wasm"]);

    let library = World::decode(&api["mathlib-api.wasm"]);
    assert_eq!(library.export_names(), [MATHLIB]);
    assert!(
        library.kinode_imports().is_empty(),
        "pure: only WASI (what the adapter needs)"
    );
    let functions = library.exported_functions(MATHLIB);
    assert_eq!(
        functions["add"],
        (vec![Type::U64, Type::U64], Some(Type::U64))
    );
    assert_eq!(
        functions["fingerprint"],
        (vec![Type::String], Some(Type::String))
    );
    assert_eq!(functions["next-id"], (vec![], Some(Type::U64)));

    let worker = World::decode(&api["mathlib-worker.wasm"]);
    worker.assert_process();
    assert_eq!(worker.kinode_imports(), [STANDARD]);
}

#[test]
fn textlib_is_a_nested_library() {
    let (pkg, api) = package("textlib");
    assert_eq!(names(&pkg), ["api.zip", "manifest.json"]);
    assert_eq!(names(&api), ["textlib-api.wasm", "textlib:test.os-v0.wit"]);
    let library = World::decode(&api["textlib-api.wasm"]);
    assert_eq!(library.export_names(), [TEXTLIB]);
    assert_eq!(library.kinode_imports(), [MATHLIB, STANDARD]);
}

#[test]
fn app_has_a_process_and_a_script_importing_mathlib() {
    let (pkg, api) = package("app");
    assert_eq!(
        names(&pkg),
        [
            "api.zip",
            "app.wasm",
            "calc.wasm",
            "manifest.json",
            "scripts.json"
        ]
    );
    assert_eq!(names(&api), ["app:test.os-v0.wit"]);
    for file in ["app.wasm", "calc.wasm"] {
        let world = World::decode(&pkg[file]);
        world.assert_process();
        assert_eq!(world.kinode_imports(), [MATHLIB, STANDARD], "{file}");
    }
}

#[test]
fn chain_imports_only_textlib() {
    let (pkg, _) = package("chain");
    let world = World::decode(&pkg["chain.wasm"]);
    world.assert_process();
    assert_eq!(world.kinode_imports(), [TEXTLIB, STANDARD]);
}

#[test]
fn duo_imports_both_libraries() {
    let (pkg, _) = package("duo");
    let world = World::decode(&pkg["duo.wasm"]);
    world.assert_process();
    assert_eq!(world.kinode_imports(), [MATHLIB, TEXTLIB, STANDARD]);
}

#[test]
fn selfish_imports_its_own_api() {
    let (pkg, api) = package("selfish");
    assert_eq!(names(&pkg), ["api.zip", "manifest.json", "selfish.wasm"]);
    assert_eq!(names(&api), ["greeter-api.wasm", "selfish:test.os-v0.wit"]);
    let library = World::decode(&api["greeter-api.wasm"]);
    assert_eq!(library.export_names(), [GREETER]);
    assert!(library.kinode_imports().is_empty());
    let process = World::decode(&pkg["selfish.wasm"]);
    process.assert_process();
    assert_eq!(process.kinode_imports(), [GREETER, STANDARD]);
}

#[test]
fn badmath_exports_mathlib_with_another_signature() {
    let (pkg, api) = package("badmath");
    assert_eq!(names(&pkg), ["api.zip", "manifest.json"]);
    let library = World::decode(&api["badmath-api.wasm"]);
    assert_eq!(library.export_names(), [MATHLIB]);
    let functions = library.exported_functions(MATHLIB);
    assert_eq!(functions.len(), 1);
    assert_eq!(
        functions["add"],
        (vec![Type::U32, Type::U32], Some(Type::U32))
    );
}

#[test]
fn bigapp_is_big_and_imports_mathlib() {
    let (pkg, _) = package("bigapp");
    let wasm = &pkg["bigapp.wasm"];
    assert!(
        wasm.len() >= 3 * 1024 * 1024,
        "bigapp.wasm is only {} bytes",
        wasm.len()
    );
    let world = World::decode(wasm);
    world.assert_process();
    assert_eq!(world.kinode_imports(), [MATHLIB, STANDARD]);
}

#[test]
fn zips_are_reproducible() {
    let fixtures = linker_fixtures::build().unwrap();
    let pkg = files(&std::fs::read(fixtures.package("app")).unwrap());
    let again = linker_fixtures::zip_files(&pkg).unwrap();
    assert_eq!(again, std::fs::read(fixtures.package("app")).unwrap());
    // Directory entries are explicit and come before their contents.
    let nested = BTreeMap::from([
        ("ui/index.html".to_string(), b"<p>".to_vec()),
        ("a.json".to_string(), vec![]),
    ]);
    let entries: Vec<String> = unzip(&linker_fixtures::zip_files(&nested).unwrap())
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(entries, ["a.json", "ui/", "ui/index.html"]);
}

#[test]
fn expected_outputs() {
    use linker_fixtures::expect;
    assert_eq!(expect::fingerprint(""), "mathlib()=cbf29ce484222325");
    assert_eq!(
        expect::app(),
        format!(
            "app: add(40,2)=42 fingerprint={}",
            expect::fingerprint("app")
        )
    );
    assert_eq!(
        expect::duo("node@duo:duo:test.os"),
        format!(
            "duo: first=1 label=DUO#2 {} by node@duo:duo:test.os last=3",
            expect::fingerprint("duo")
        )
    );
    assert_eq!(expect::blob().len(), expect::BLOB_LEN);
}
