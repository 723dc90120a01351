//! `apis:linker:sys`: asks the linker for the APIs on this node and prints, per API, its package,
//! where it is (`installed` or the linker's `mirror`), each interface with its version, and its
//! dependents (the installed packages the linker linked against it).
#![cfg(target_arch = "wasm32")]

use kinode_process_lib::{script, Address};
use linker_script::api::{export, Guest, Request, Response};
use linker_script::show;

script!(init);

fn init(our: Address, args: String) -> String {
    run(&our, &args).unwrap_or_else(|error| format!("apis: {error}"))
}

fn run(our: &Address, args: &str) -> Result<String, String> {
    if let Some(word) = args.split_whitespace().next() {
        return Err(format!(
            "takes no arguments, not `{word}`; usage: apis:linker:sys"
        ));
    }
    match linker_script::ask(our, &Request::ListApis, Vec::new())? {
        Response::ListApis(Ok(apis)) => Ok(show::apis(&apis)),
        Response::ListApis(Err(error)) => Err(show::linker_error(&error)),
        _ => Err(linker_script::UNEXPECTED.to_owned()),
    }
}
