//! Data-driven resolution cases, wac style: each folder under `test/cases/` holds `root.wit`
//! (the component to link), `lib-*.wit` (library components), an optional `world` file
//! (`kinode` or `any`, default `kinode`) and `expected`: the link report and the composed
//! component's shape, or the error variant and message. `BLESS=1` rewrites `expected`.

use std::fs;
use std::path::Path;

use linker_core::{Input, Options, World};
use linker_tests::{component, shape, variant};

fn run_case(dir: &Path) -> anyhow::Result<String> {
    let mut libraries = Vec::new();
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names
        .iter()
        .filter(|n| n.starts_with("lib-") && n.ends_with(".wit"))
    {
        let wit = fs::read_to_string(dir.join(name))?;
        let bytes = component(&wit).map_err(|e| e.context(format!("building {name}")))?;
        libraries.push((name.replace(".wit", ".wasm"), bytes));
    }
    let root = component(&fs::read_to_string(dir.join("root.wit"))?)?;
    let world = match fs::read_to_string(dir.join("world"))
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("any") => World::Any,
        _ => World::Kinode,
    };
    let inputs: Vec<Input<'_>> = libraries
        .iter()
        .map(|(name, bytes)| Input::new(name, bytes))
        .collect();
    let options = Options {
        world,
        ..Options::default()
    };
    let root = Input::new("root.wasm", &root);
    Ok(match linker_core::compose(root, &inputs, &options) {
        Ok(composed) => {
            let shape = shape(&composed.bytes)?;
            format!(
                "report:\n{}\nimports: {}\nexports: {}\ninstantiations: {}\n",
                composed.report,
                shape.imports.join(", "),
                shape.exports.join(", "),
                shape.instantiations
            )
        }
        Err(error) => format!("error {}:\n{error}\n", variant(&error)),
    })
}

#[test]
fn cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let bless = std::env::var_os("BLESS").is_some();
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("test/cases exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases under {}", root.display());
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let actual = match run_case(dir) {
            Ok(actual) => actual,
            Err(error) => {
                failures.push(format!("{name}: the case itself failed: {error:#}"));
                continue;
            }
        };
        let expected_path = dir.join("expected");
        if bless {
            fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{name}: output differs (BLESS=1 to accept)\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
