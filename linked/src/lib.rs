//! `linked:linker:sys [package-id]`: with a package id, asks the linker what was linked into that
//! installed package (its `pkg/link.json`) and prints each component's imports with their
//! providers. With no argument, prints every package on this node that the linker linked against
//! an API, with those APIs (from the APIs' dependents).
#![cfg(target_arch = "wasm32")]

use kinode_process_lib::{script, Address};
use linker_script::api::{export, Guest, LinkerError, Request, Response};
use linker_script::show;

script!(init);

const USAGE: &str = "usage: linked:linker:sys [package-id]";

fn init(our: Address, args: String) -> String {
    run(&our, &args).unwrap_or_else(|error| format!("linked: {error}"))
}

fn run(our: &Address, args: &str) -> Result<String, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let request = match words.as_slice() {
        [] => Request::ListApis,
        [word] => Request::Linked(
            linker_script::package_id(word)
                .ok_or_else(|| format!("`{word}` is not a package id (name:publisher); {USAGE}"))?,
        ),
        _ => return Err(format!("one package at most; {USAGE}")),
    };
    match linker_script::ask(our, &request, Vec::new())? {
        Response::ListApis(Ok(apis)) => Ok(show::dependents(&apis)),
        Response::Linked(Ok(report)) => Ok(show::link_report(
            &format!("{} was linked", report.package.name),
            &report,
        )),
        Response::Linked(Err(LinkerError::NotInstalled(package))) => Err(format!(
            "{package} is not installed on this node: `linked:linker:sys` with no argument lists \
             the linked packages"
        )),
        Response::ListApis(Err(error)) | Response::Linked(Err(error)) => {
            Err(show::linker_error(&error))
        }
        _ => Err(linker_script::UNEXPECTED.to_owned()),
    }
}
