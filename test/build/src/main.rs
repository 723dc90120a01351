//! `cargo run -p linker-fixtures`: builds the fixture packages and prints where every output is.
//! Set `LINKER_FIXTURES_VERBOSE=1` to see cargo's progress.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    let fixtures = linker_fixtures::build()?;
    eprintln!("built fixtures in {:.1} s", start.elapsed().as_secs_f64());
    println!("kinode.wit {}", fixtures.kinode_wit().display());
    for name in fixtures.names() {
        println!("{}", fixtures.id(name));
        println!("  package  {}", fixtures.package(name).display());
        println!("  api      {}", fixtures.api(name).display());
        println!("  metadata {}", fixtures.metadata(name).display());
        for component in fixtures.components(name) {
            let role = if component.exporter {
                "api.zip"
            } else {
                "pkg/"
            };
            println!("  {:<8} {}", role, component.path.display());
            for import in &component.imports {
                println!("             import {import}");
            }
            for export in &component.exports {
                println!("             export {export}");
            }
        }
    }
    Ok(())
}
