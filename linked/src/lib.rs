//! `linked:linker:sys [package-id]`: with a package id, asks the linker what it knows of that
//! installed package: each component's imports with their providers and why each was chosen (its
//! `pkg/link.json`), or why it could not be linked, and the APIs it lost. With no argument, prints
//! every package the linker linked or tried to, how (a request or auto-linking) and its state.
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
        [] => Request::Packages,
        [word] => Request::Linked(
            linker_script::package_id(word)
                .ok_or_else(|| format!("`{word}` is not a package id (name:publisher); {USAGE}"))?,
        ),
        _ => return Err(format!("one package at most; {USAGE}")),
    };
    match linker_script::ask(our, &request, Vec::new())? {
        Response::Packages(Ok(packages)) => Ok(show::packages(&packages)),
        Response::Linked(Ok(info)) => Ok(show::package_info(&info)),
        Response::Linked(Err(LinkerError::NotInstalled(package))) => Err(format!(
            "{package} is not installed on this node: `linked:linker:sys` with no argument lists \
             the linked packages"
        )),
        Response::Packages(Err(error)) | Response::Linked(Err(error)) => {
            Err(show::linker_error(&error))
        }
        _ => Err(linker_script::UNEXPECTED.to_owned()),
    }
}
