//! `link:linker:sys <package-id | vfs-path> [--download <version-hash>] [--api <package-id |
//! vfs-path>]... [--install] [--explain]`: has the linker link a package (installed,
//! `name:publisher`; downloaded by the app store, `name:publisher --download <hash>`; or a zip at
//! a VFS path) against the node's APIs and those given with `--api`, and prints each component's
//! imports with their providers. `--install` installs the linked package and also prints the
//! processes started and the dependents re-linked or kept; `--explain` prints, import by import,
//! what linking would do and why. The linking is the linker's; the script only asks.
//!
//! `link:linker:sys --auto <on | off | status>` turns auto-linking of what the app store installs
//! on or off, or says whether it is on. `--fetch` and `--mirror` do the same for fetching the
//! libraries the node lacks from the network, and for mirroring those fetched.
#![cfg(target_arch = "wasm32")]

use kinode_process_lib::{script, Address};
use linker_script::api::{
    export, ApiSource, Download, Guest, LinkRequest, NetworkChange, PackageSource, Request,
    Response,
};
use linker_script::show;

script!(init);

const USAGE: &str = "usage: link:linker:sys <package-id | vfs-path> [--download <version-hash>] \
                     [--api <package-id | vfs-path>]... [--install] [--explain] | link:linker:sys \
                     <--auto | --fetch | --mirror> <on | off | status>";

/// What to ask the linker.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Link,
    Install,
    Explain,
}

fn init(our: Address, args: String) -> String {
    run(&our, &args).unwrap_or_else(|error| format!("link: {error}"))
}

fn run(our: &Address, args: &str) -> Result<String, String> {
    if let Some(rest) = args.trim_start().strip_prefix("--auto") {
        return auto(our, rest).map_err(|problem| format!("{problem}; {USAGE}"));
    }
    for (flag, fetch) in [("--fetch", true), ("--mirror", false)] {
        if let Some(rest) = args.trim_start().strip_prefix(flag) {
            return network(our, flag, fetch, rest)
                .map_err(|problem| format!("{problem}; {USAGE}"));
        }
    }
    let (mode, request) = parse(args).map_err(|problem| format!("{problem}; {USAGE}"))?;
    let mut capabilities = Vec::new();
    let names_path = matches!(request.source, PackageSource::VfsPath(_))
        || request
            .apis
            .iter()
            .any(|api| matches!(api, ApiSource::VfsPath(_)));
    if names_path {
        capabilities.extend(linker_script::vfs_root_capability(our));
    }
    if mode == Mode::Install {
        capabilities.extend(linker_script::linker_capability(our));
    }
    let request = match mode {
        Mode::Link => Request::Link(request),
        Mode::Install => Request::Install(request),
        Mode::Explain => Request::Explain(request),
    };
    let text = match linker_script::ask(our, &request, capabilities)? {
        Response::Link(Ok(report)) => format!(
            "{}\nnothing installed: add --install to install it",
            show::link_report(&format!("{} linked", report.package.name), &report)
        ),
        Response::Install(Ok(report)) => show::install_report(&report),
        Response::Explain(Ok(explanation)) => show::explanation(&explanation),
        Response::Link(Err(error))
        | Response::Install(Err(error))
        | Response::Explain(Err(error)) => return Err(show::linker_error(&error)),
        _ => return Err(linker_script::UNEXPECTED.to_owned()),
    };
    Ok(text)
}

/// `--auto on | off | status`: switches auto-linking, which needs the linker's capability, or
/// asks whether it is on.
fn auto(our: &Address, args: &str) -> Result<String, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (switch, capabilities) = match words.as_slice() {
        ["on"] => (
            Some(true),
            linker_script::linker_capability(our).into_iter().collect(),
        ),
        ["off"] => (
            Some(false),
            linker_script::linker_capability(our).into_iter().collect(),
        ),
        ["status"] => (None, Vec::new()),
        _ => return Err("--auto takes on, off or status".to_owned()),
    };
    match linker_script::ask(our, &Request::AutoLink(switch), capabilities)? {
        Response::AutoLink(Ok(true)) => Ok(
            "auto-linking is on: packages the app store installs or updates are linked within \
             seconds"
                .to_owned(),
        ),
        Response::AutoLink(Ok(false)) => Ok(
            "auto-linking is off: packages the app store installs run as installed; \
             `link:linker:sys <package-id> --install` links one"
                .to_owned(),
        ),
        Response::AutoLink(Err(error)) => Err(show::linker_error(&error)),
        _ => Err(linker_script::UNEXPECTED.to_owned()),
    }
}

/// `--fetch` or `--mirror` `on | off | status`: switches fetching (`fetch`) or mirroring, which
/// needs the linker's capability, or says whether it is on.
fn network(our: &Address, flag: &str, fetch: bool, args: &str) -> Result<String, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let on = match words.as_slice() {
        ["on"] => Some(true),
        ["off"] => Some(false),
        ["status"] => None,
        _ => return Err(format!("{flag} takes on, off or status")),
    };
    let capabilities = match on {
        Some(_) => linker_script::linker_capability(our).into_iter().collect(),
        None => Vec::new(),
    };
    let change = NetworkChange {
        fetch: on.filter(|_| fetch),
        mirror: on.filter(|_| !fetch),
    };
    let settings = match linker_script::ask(our, &Request::Network(change), capabilities)? {
        Response::Network(Ok(settings)) => settings,
        Response::Network(Err(error)) => return Err(show::linker_error(&error)),
        _ => return Err(linker_script::UNEXPECTED.to_owned()),
    };
    Ok(match (fetch, settings.fetch, settings.mirror) {
        (true, true, _) => "fetching is on: a library this node lacks is fetched through the app \
                            store from its publisher and mirrors, as listed on chain"
            .to_owned(),
        (true, false, _) => "fetching is off: a package whose library this node lacks is left \
                             unlinked until the library is installed"
            .to_owned(),
        (false, _, true) => "mirroring is on: this node mirrors each library package it fetched, \
                             so other nodes can fetch it from here"
            .to_owned(),
        (false, _, false) => {
            "mirroring is off: libraries fetched are kept for linking here only".to_owned()
        }
    })
}

/// The arguments as a request: the package, the `--api`s, and the mode.
fn parse(args: &str) -> Result<(Mode, LinkRequest), String> {
    let mut words = args.split_whitespace();
    let mut package = None;
    let mut apis = Vec::new();
    let mut mode = Mode::Link;
    let mut download = None;
    while let Some(word) = words.next() {
        match word {
            "--download" => {
                let hash = words
                    .next()
                    .ok_or("--download needs the version hash of the app store's download")?;
                download = Some(hash.to_owned());
            }
            "--api" => {
                let api = words
                    .next()
                    .ok_or("--api needs a package id or a VFS path")?;
                apis.push(match source(api)? {
                    PackageSource::Installed(id) => ApiSource::Installed(id),
                    PackageSource::VfsPath(path) => ApiSource::VfsPath(path),
                    PackageSource::Blob | PackageSource::Download(_) => {
                        return Err(format!("bad --api `{api}`"))
                    }
                });
            }
            "--install" | "--explain" => {
                let wanted = if word == "--install" {
                    Mode::Install
                } else {
                    Mode::Explain
                };
                if mode != Mode::Link && mode != wanted {
                    return Err("give --install or --explain, not both".to_owned());
                }
                mode = wanted;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            _ if package.is_some() => return Err(format!("one package only, not also `{word}`")),
            _ => package = Some(source(word)?),
        }
    }
    let mut source = package.ok_or("name a package")?;
    if let Some(version_hash) = download {
        let PackageSource::Installed(package) = source else {
            return Err("--download needs a package id, not a path".to_owned());
        };
        source = PackageSource::Download(Download {
            package,
            version_hash,
        });
    }
    Ok((
        mode,
        LinkRequest {
            source,
            metadata: None,
            apis,
        },
    ))
}

/// `name:publisher` is an installed package, `/...` a zip in the VFS.
fn source(word: &str) -> Result<PackageSource, String> {
    if word.starts_with('/') {
        return Ok(PackageSource::VfsPath(word.to_owned()));
    }
    linker_script::package_id(word)
        .map(PackageSource::Installed)
        .ok_or_else(|| {
            format!("`{word}` is neither a package id (name:publisher) nor a VFS path (/...)")
        })
}
