//! End to end on real, kit-shaped packages built from `test/fixtures`: each is linked by the
//! core, and the linked process runs in the wasmtime 27 host and prints what only its libraries
//! compute. Also: determinism, and wasm-compose as an independent oracle of the linked world.

use std::collections::BTreeMap;

use linker_core::archive::Archive;
use linker_core::{Input, Limits, LinkError, Options, Outcome, ResolveError, Role};
use linker_fixtures::{expect, Fixtures};
use linker_test_host::{Host, RunError};
use linker_tests::shape;

fn fixtures() -> &'static Fixtures {
    linker_fixtures::build().expect("fixtures build (needs `rustup target add wasm32-wasip1`)")
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Links fixture `name` against the API zips of `deps`.
fn link(name: &str, deps: &[&str]) -> Result<linker_core::Linked, LinkError> {
    let f = fixtures();
    let package = read(f.package(name));
    let apis: Vec<(String, Vec<u8>)> = deps
        .iter()
        .map(|dep| (f.id(dep), read(f.api(dep))))
        .collect();
    let inputs: Vec<Input<'_>> = apis
        .iter()
        .map(|(name, bytes)| Input::new(name, bytes))
        .collect();
    let package_name = format!("{}.zip", f.id(name));
    linker_core::link(
        Input::new(&package_name, &package),
        &inputs,
        &Options::default(),
    )
}

fn files(zip: &[u8]) -> BTreeMap<String, Vec<u8>> {
    Archive::read("linked", zip, &Limits::default())
        .expect("the linked zip reads back")
        .files
}

/// Runs a process of a linked package and returns what it printed.
fn run(linked: &[u8], file: &str, process: &str, package: &str) -> (Vec<String>, String) {
    let files = files(linked);
    let wasm = files
        .get(file)
        .unwrap_or_else(|| panic!("{file} is in the linked package"));
    let our = format!("node.os@{process}:{package}:test.os");
    let run = Host::new()
        .expect("host")
        .run_init(wasm, &our)
        .unwrap_or_else(|e| panic!("{file} runs: {e}"));
    let prints = run
        .print_messages()
        .into_iter()
        .map(str::to_owned)
        .collect();
    (prints, our)
}

#[test]
fn app_links_against_mathlib_and_runs() {
    let linked = link("app", &["mathlib"]).expect("app links");
    let (prints, _) = run(&linked.bytes, "app.wasm", "app", "app");
    assert_eq!(prints, [expect::app()]);

    let report = &linked.report;
    let app = report
        .components
        .iter()
        .find(|c| c.path == "app.wasm")
        .expect("app in report");
    assert_eq!(app.role, Role::Process { name: "app".into() });
    assert!(app.is_linked());
    match &app.imports[..] {
        [import] => {
            assert_eq!(import.import, "kinode:process/mathlib@1.0.0");
            assert!(
                matches!(&import.outcome, Outcome::Linked { provider, .. } if provider.archive == "mathlib:test.os" && provider.path == "mathlib-api.wasm")
            );
        }
        other => panic!("one import expected: {other:?}"),
    }
    // The script is linked too.
    let calc = report
        .components
        .iter()
        .find(|c| c.path == "calc.wasm")
        .expect("calc in report");
    assert_eq!(calc.role, Role::Script);
    assert!(calc.is_linked());

    // mathlib's worker is copied in, as kit does, and runs.
    assert_eq!(report.copied.len(), 1);
    assert_eq!(report.copied[0].path, "mathlib-worker.wasm");
    let (prints, _) = run(&linked.bytes, "mathlib-worker.wasm", "worker", "app");
    assert_eq!(prints, [expect::mathlib_worker()]);

    // link.json is the report, and library components are not copied into the package.
    let out = files(&linked.bytes);
    let recorded: linker_core::LinkReport =
        serde_json::from_slice(&out["link.json"]).expect("link.json parses");
    assert_eq!(&recorded, report);
    assert!(!out.contains_key("mathlib-api.wasm"));
}

#[test]
fn unlinked_app_does_not_instantiate_on_the_runtime() {
    let f = fixtures();
    let unlinked = files(&read(f.package("app")));
    let error = Host::new()
        .expect("host")
        .run_init(&unlinked["app.wasm"], "node.os@app:app:test.os")
        .expect_err("an unlinked process cannot instantiate");
    assert!(
        matches!(&error, RunError::Instantiate { import: Some(import), .. } if import == "kinode:process/mathlib@1.0.0"),
        "{error:?}"
    );
}

#[test]
fn nested_library_chain() {
    let linked = link("chain", &["textlib", "mathlib"]).expect("chain links");
    let (prints, our) = run(&linked.bytes, "chain.wasm", "chain", "chain");
    assert_eq!(prints, [expect::chain(&our)]);
    let chain = &linked.report.components[0];
    let importers: Vec<&str> = chain
        .imports
        .iter()
        .map(|i| i.importer.path.as_str())
        .collect();
    assert_eq!(importers, ["chain.wasm", "textlib-api.wasm"]);
}

#[test]
fn two_libraries_share_one_instance_of_their_common_dependency() {
    let linked = link("duo", &["mathlib", "textlib"]).expect("duo links");
    let (prints, our) = run(&linked.bytes, "duo.wasm", "duo", "duo");
    // ids 1, 2, 3: the process and textlib call the same mathlib instance.
    assert_eq!(prints, [expect::duo(&our)]);
    let out = files(&linked.bytes);
    // duo, textlib and one mathlib: three instantiations at the top level.
    assert_eq!(shape(&out["duo.wasm"]).expect("shape").instantiations, 3);
}

#[test]
fn a_package_links_against_its_own_api() {
    let linked = link("selfish", &[]).expect("selfish links against its own api.zip");
    let (prints, _) = run(&linked.bytes, "selfish.wasm", "selfish", "selfish");
    assert_eq!(prints, [expect::selfish()]);
}

#[test]
fn large_component_links_and_runs() {
    let linked = link("bigapp", &["mathlib"]).expect("bigapp links");
    let (prints, _) = run(&linked.bytes, "bigapp.wasm", "bigapp", "bigapp");
    assert_eq!(prints, [expect::bigapp()]);
}

#[test]
fn a_provider_of_the_wrong_type_is_refused() {
    let error = link("app", &["badmath"]).expect_err("badmath's mathlib has another type");
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    assert!(problems.iter().all(|p| matches!(p, ResolveError::TypeMismatch { provider, .. } if provider.archive == "badmath:test.os")), "{problems:?}");
    assert!(error.to_string().contains("badmath:test.os"));
}

#[test]
fn missing_nested_dependency_is_named() {
    let error = link("chain", &["textlib"]).expect_err("mathlib is missing");
    let LinkError::Unresolved { problems } = &error else {
        panic!("expected Unresolved, got {error:?}");
    };
    assert!(
        matches!(&problems[..], [ResolveError::NoProvider { importer, import, .. }] if importer.path == "textlib-api.wasm" && import == "kinode:process/mathlib@1.0.0"),
        "{problems:?}"
    );
}

/// `unprovided` (what the process looks for on the node) names exactly the imports `explain`
/// finds no provider for, with and without APIs, nested ones included.
#[test]
fn unprovided_names_what_explain_leaves_unmatched() {
    let f = fixtures();
    for (name, deps) in [
        ("app", &[][..]),
        ("app", &["mathlib"][..]),
        ("chain", &["textlib"][..]),
        ("duo", &[][..]),
        ("duo", &["mathlib", "textlib"][..]),
        ("mathlib", &[][..]),
        ("selfish", &[][..]),
    ] {
        let package = read(f.package(name));
        let apis: Vec<(String, Vec<u8>)> = deps
            .iter()
            .map(|dep| (f.id(dep), read(f.api(dep))))
            .collect();
        let inputs: Vec<Input<'_>> = apis.iter().map(|(n, b)| Input::new(n, b)).collect();
        let input = Input::new(name, &package);
        let options = Options::default();
        let explained = linker_core::explain(input, &inputs, &options).expect("explains");
        let mut unmatched: Vec<String> = Vec::new();
        for import in explained.components.iter().flat_map(|c| &c.imports) {
            if matches!(import.outcome, Outcome::Unmatched { .. })
                && !unmatched.contains(&import.import)
            {
                unmatched.push(import.import.clone());
            }
        }
        let unprovided = linker_core::unprovided(input, &inputs, &options).expect("decodes");
        assert_eq!(unprovided, unmatched, "{name} with {deps:?}");
        if deps.is_empty() && name != "mathlib" && name != "selfish" {
            assert!(!unprovided.is_empty(), "{name} imports libraries");
        }
    }
    let chain = read(f.package("chain"));
    let textlib = read(f.api("textlib"));
    assert_eq!(
        linker_core::unprovided(
            Input::new("chain", &chain),
            &[Input::new("textlib", &textlib)],
            &Options::default()
        )
        .expect("decodes"),
        ["kinode:process/mathlib@1.0.0"],
        "textlib's own import is nested, and unprovided"
    );
}

#[test]
fn linking_is_deterministic() {
    let first = link("duo", &["mathlib", "textlib"]).expect("links");
    let second = link("duo", &["mathlib", "textlib"]).expect("links");
    assert_eq!(first.bytes, second.bytes);
}

#[test]
fn a_linked_package_relinks_as_a_no_op() {
    let linked = link("app", &["mathlib"]).expect("links");
    let inputs = [];
    let again = linker_core::link(
        Input::new("app:test.os.zip", &linked.bytes),
        &inputs,
        &Options::default(),
    )
    .expect("an already linked package links with no APIs");
    assert!(again
        .report
        .components
        .iter()
        .all(|c| !c.is_linked() && c.imports.is_empty()));
    assert_eq!(
        files(&again.bytes)["app.wasm"],
        files(&linked.bytes)["app.wasm"]
    );
}

/// Composes `root` with wasm-compose, resolving exact names recursively on its own, one
/// instance per library: an oracle independent of the linker's resolver and of wac-graph.
fn oracle(root: &[u8], libraries: &[Vec<u8>]) -> Vec<u8> {
    use wasm_compose::graph::{CompositionGraph, EncodeOptions};
    let mut validator = wasmparser_oracle::Validator::new();
    let mut graph = CompositionGraph::new();
    let mut components = Vec::new();
    for (index, bytes) in libraries.iter().enumerate() {
        let component = wasm_compose::graph::Component::from_bytes(
            &mut validator,
            format!("lib{index}"),
            bytes.clone(),
        )
        .expect("oracle reads the library");
        components.push(
            graph
                .add_component(component)
                .expect("oracle adds the library"),
        );
    }
    let root_component =
        wasm_compose::graph::Component::from_bytes(&mut validator, "root", root.to_vec())
            .expect("oracle reads the root");
    let root_id = graph
        .add_component(root_component)
        .expect("oracle adds the root");
    let mut instances = BTreeMap::new();
    fn instance_of(
        graph: &mut CompositionGraph<'_>,
        component: wasm_compose::graph::ComponentId,
        libraries: &[wasm_compose::graph::ComponentId],
        instances: &mut BTreeMap<usize, wasm_compose::graph::InstanceId>,
    ) -> wasm_compose::graph::InstanceId {
        let instance = graph.instantiate(component).expect("oracle instantiates");
        let imports: Vec<(wasm_compose::graph::ImportIndex, String)> = graph
            .get_component(component)
            .expect("component")
            .imports()
            .map(|(index, name, _)| (index, name.to_owned()))
            .collect();
        for (import_index, name) in imports {
            let provider = libraries.iter().enumerate().find_map(|(position, id)| {
                graph
                    .get_component(*id)
                    .and_then(|c| c.export_by_name(&name))
                    .map(|(export, _, _)| (position, *id, export))
            });
            let Some((position, id, export)) = provider else {
                continue;
            };
            let source = match instances.get(&position) {
                Some(existing) => *existing,
                None => {
                    let created = instance_of(graph, id, libraries, instances);
                    instances.insert(position, created);
                    created
                }
            };
            graph
                .connect(source, Some(export), instance, import_index)
                .expect("oracle connects");
        }
        instance
    }
    let root_instance = instance_of(&mut graph, root_id, &components, &mut instances);
    graph
        .encode(EncodeOptions {
            define_components: true,
            export: Some(root_instance),
            validate: true,
        })
        .expect("oracle encodes")
}

#[test]
fn linked_worlds_match_the_wasm_compose_oracle() {
    let f = fixtures();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("app", "app.wasm", &["mathlib"]),
        ("chain", "chain.wasm", &["textlib", "mathlib"]),
        ("duo", "duo.wasm", &["mathlib", "textlib"]),
        ("selfish", "selfish.wasm", &["selfish"]),
        ("bigapp", "bigapp.wasm", &["mathlib"]),
    ];
    for (name, file, deps) in cases {
        let api_deps: Vec<&str> = deps.iter().copied().filter(|d| *d != name).collect();
        let linked = link(name, &api_deps).expect("links");
        let ours = shape(&files(&linked.bytes)[file]).expect("our shape");
        let root = files(&read(f.package(name)))
            .remove(file)
            .expect("unlinked root");
        let libraries: Vec<Vec<u8>> = deps
            .iter()
            .flat_map(|dep| {
                f.components(dep)
                    .iter()
                    .filter(|c| c.exporter)
                    .map(|c| read(c.path.clone()))
            })
            .collect();
        let theirs = shape(&oracle(&root, &libraries)).expect("oracle shape");
        let sorted = |mut names: Vec<String>| {
            names.sort();
            names
        };
        assert_eq!(
            sorted(ours.imports),
            sorted(theirs.imports),
            "{name}: imports"
        );
        assert_eq!(ours.exports, theirs.exports, "{name}: exports");
        assert_eq!(
            ours.instantiations, theirs.instantiations,
            "{name}: instantiations"
        );
    }
}

/// The bytes [`linker_core::sha256_hex`] hashes on this thread while `f` runs, and its result.
fn hashing<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = linker_core::bytes_hashed();
    let result = f();
    (linker_core::bytes_hashed() - before, result)
}

/// What a link of `name` against `deps` must hash, once each: every component as it came in and
/// as linked, every library it was linked with, every file copied in, and `link.json`; and, when
/// the caller did not supply their digests, the package zip and the API zips.
fn must_hash(name: &str, deps: &[&str], linked: &linker_core::Linked, digests_given: bool) -> u64 {
    let f = fixtures();
    let package = read(f.package(name));
    let inputs = files(&package);
    let apis: BTreeMap<String, Vec<u8>> = deps.iter().map(|d| (f.id(d), read(f.api(d)))).collect();
    let out = files(&linked.bytes);
    let size = |bytes: &[u8]| bytes.len() as u64;
    let mut total = size(&out["link.json"]);
    if !digests_given {
        total += size(&package) + apis.values().map(|zip| size(zip)).sum::<u64>();
    }
    let mut providers = std::collections::BTreeSet::new();
    for component in &linked.report.components {
        // A worker copied from an API is hashed once, as it is copied (below).
        if linked
            .report
            .copied
            .iter()
            .any(|c| c.path == component.path)
        {
            continue;
        }
        let original = inputs
            .get(&component.path)
            .or_else(|| out.get(&component.path))
            .expect("the component is in the package");
        total += size(original);
        if component.is_linked() {
            total += size(&out[&component.path]);
        }
        for import in &component.imports {
            if let Outcome::Linked { provider, .. } = &import.outcome {
                providers.insert(provider.clone());
            }
        }
    }
    for provider in providers {
        total += size(&files(&apis[&provider.archive])[&provider.path]);
    }
    total
        + linked
            .report
            .copied
            .iter()
            .map(|c| size(&out[&c.path]))
            .sum::<u64>()
}

#[test]
fn a_link_hashes_every_byte_at_most_once() {
    let f = fixtures();
    for (name, deps) in [
        ("app", &["mathlib"][..]),
        ("chain", &["textlib", "mathlib"]),
        ("duo", &["mathlib", "textlib"]),
        ("bigapp", &["mathlib"]),
    ] {
        // As `kinode-link link` calls it: every digest computed here.
        let (hashed, linked) = hashing(|| link(name, deps));
        let linked = linked.unwrap_or_else(|e| panic!("{name} links: {e}"));
        assert_eq!(hashed, must_hash(name, deps, &linked, false), "{name}");

        // As the linker process calls it, with the digests it computed on receipt.
        let package = read(f.package(name));
        let package_sha256 = linker_core::sha256_hex(&package);
        let apis: Vec<(String, Vec<u8>, String)> = deps
            .iter()
            .map(|dep| {
                let zip = read(f.api(dep));
                let sha256 = linker_core::sha256_hex(&zip);
                (f.id(dep), zip, sha256)
            })
            .collect();
        let inputs: Vec<Input<'_>> = apis
            .iter()
            .map(|(name, zip, sha256)| Input::new(name, zip).with_sha256(sha256))
            .collect();
        let package_name = format!("{}.zip", f.id(name));
        let (hashed, linked) = hashing(|| {
            linker_core::link(
                Input::new(&package_name, &package).with_sha256(&package_sha256),
                &inputs,
                &Options::default(),
            )
        });
        let linked = linked.unwrap_or_else(|e| panic!("{name} links: {e}"));
        assert_eq!(hashed, must_hash(name, deps, &linked, true), "{name}");
    }
}

#[test]
fn a_composition_hashes_nothing() {
    let f = fixtures();
    let bigapp = files(&read(f.package("bigapp")))["bigapp.wasm"].clone();
    let library = files(&read(f.api("mathlib")))["mathlib-api.wasm"].clone();
    let (hashed, composed) = hashing(|| {
        linker_core::compose_owned(
            "bigapp.wasm",
            bigapp.clone(),
            &[Input::new("mathlib-api.wasm", &library)],
            &Options::default(),
        )
    });
    let composed = composed.expect("bigapp composes");
    assert_eq!(composed.report.imports.len(), 1);
    // Nothing: a composition records no hash, of bigapp, the library or the composed component.
    assert_eq!(hashed, 0);
    assert!(composed.bytes.len() > bigapp.len());
}
