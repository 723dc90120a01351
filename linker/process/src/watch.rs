//! Auto-linking: the linker notices packages installed, updated or removed on the node without
//! going through it (the app store's Install button, `kit start-package`, the app store's
//! auto-update), and links them. The app store is not changed.
//!
//! Every [`TICK_MS`] (a `timer:distro:sys` timer) the linker lists the node's package
//! directories (`ReadDir /`, with the root capability it holds) and each package's `/{pkg}/pkg`.
//! An install by anyone else replaces `/{pkg}/pkg` whole, so a package whose drive holds its
//! `{pkg}.zip` and `manifest.json` but not the linker's [`store::MARKER`] was installed since the
//! linker last handled it. It is handled once its listing stayed the same for one tick, so that
//! an install still under way finishes first, and together with every other package changed at
//! about the same time: while one is still settling the others wait (up to [`MAX_DEFERRALS`]
//! ticks), so a library and its dependent installed in quick succession are handled once each,
//! the library first. A package the linker had handled whose drive is
//! gone was removed. When nothing changed, a tick sends `1 + packages` `ReadDir`s, one `Read`
//! of the linker's state, and writes nothing; every [`FETCHED_EVERY`]th also reads the network
//! settings and lists the linker's mirror (below).
//!
//! Handling, in order (removals, then packages with an API, then the others, each by name):
//! - a package is linked by the one rule of [`crate::inputs`] (its recorded or on-chain
//!   metadata's dependencies, else the node's APIs by interface). If nothing in it imports a
//!   library it is left as installed; if it links, the linker's staged install replaces it,
//!   keeping the zip the app store wrote (so its version hash and listing do not change); if it
//!   cannot be linked it is left as installed, and the reason is printed once on the terminal and
//!   kept for `linked:linker:sys`. Each gets the marker, so it is not looked at again until it
//!   changes.
//! - a package with an API (new, updated or removed) moves the API epoch; the packages linked
//!   against it are re-linked (those handled in the same tick are not re-linked twice), and every
//!   package that failed at an older epoch is tried again.
//!
//! A library fetched from the network is not installed here, so no install shows its updates:
//! every [`FETCHED_EVERY`] ticks (with fetching on) its listing on `chain:app-store:sys` is read
//! again (one `GetApp` each), and a new version is fetched and its dependents re-linked.

use kinode_process_lib::{println, Address, Request};

use crate::api::{self, LinkRequest, LinkerError, PackageSource};
use crate::fetch;
use crate::inputs::{self, Caller, Named};
use crate::node;
use crate::service;
use crate::store::{self, Status, Trigger};

/// How often the linker looks, in milliseconds.
pub const TICK_MS: u64 = 2_000;

/// The context of the linker's timer requests, so their responses are told from others.
pub const TIMER_CONTEXT: &[u8] = b"watch";

/// How many ticks settled packages wait for others still settling, at most.
const MAX_DEFERRALS: u32 = 5;

/// Every how many ticks the listings of the libraries fetched from the network are read again.
const FETCHED_EVERY: u32 = 5;

/// What a tick remembers for the next one: the listing of every package seen without the marker,
/// how many ticks in a row settled packages waited for others, the ticks so far, and for each
/// fetched library the newer version that could not be fetched (said once on the terminal).
#[derive(Default)]
pub struct Watcher {
    pending: std::collections::BTreeMap<String, Vec<String>>,
    deferrals: u32,
    ticks: u32,
    unfetched: std::collections::BTreeMap<String, String>,
}

/// Asks `timer:distro:sys` for the next tick.
pub fn arm() {
    let sent = Request::to(("our", "timer", "distro", "sys"))
        .body(serde_json::json!({ "SetTimer": TICK_MS }).to_string())
        .expects_response(TICK_MS / 1000 + 1)
        .context(TIMER_CONTEXT)
        .send();
    if let Err(error) = sent {
        println!("linker: cannot set its timer, auto-linking stops: {error}");
    }
}

/// Turns auto-linking on or off (`Some`), or says whether it is on (`None`).
pub fn switch(on: Option<bool>) -> Result<bool, LinkerError> {
    let mut auto = store::auto().map_err(LinkerError::Unreadable)?;
    if let Some(on) = on {
        if auto.enabled != on {
            auto.enabled = on;
            store::save_auto(&auto).map_err(LinkerError::Unreadable)?;
        }
    }
    Ok(auto.enabled)
}

/// A package as one tick sees it.
enum Seen {
    /// Not installed (no drive, or no zip and manifest in it).
    Absent,
    /// Installed and handled by the linker.
    Marked,
    /// Installed by someone else since the linker last handled it; the entries of `/{pkg}/pkg`.
    Unmarked(Vec<String>),
}

fn look(package: &str) -> Seen {
    let Ok(entries) = node::read_dir(&format!("/{package}/pkg")) else {
        return Seen::Absent;
    };
    let mut names: Vec<String> = entries.into_iter().map(|(name, _)| name).collect();
    names.sort();
    let has = |name: &str| names.iter().any(|n| n == name);
    if !has(&format!("{package}.zip")) || !has("manifest.json") {
        Seen::Absent
    } else if has(store::MARKER) {
        Seen::Marked
    } else {
        Seen::Unmarked(names)
    }
}

/// One look at the node, and whatever it calls for.
pub fn tick(our: &Address, watcher: &mut Watcher) {
    let Ok(auto) = store::auto() else {
        return;
    };
    if !auto.enabled {
        watcher.pending.clear();
        return;
    }
    watcher.ticks = watcher.ticks.wrapping_add(1);
    if watcher.ticks.is_multiple_of(FETCHED_EVERY) && store::network().fetch {
        refresh_fetched(our, watcher);
    }
    let Ok(drives) = node::read_dir("/") else {
        return;
    };
    let mut packages: Vec<String> = drives
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| store::is_package_id(name) && name != "linker:sys")
        .collect();
    packages.sort();

    let mut removed = Vec::new();
    let mut changed = Vec::new();
    let mut settling = false;
    for package in &packages {
        match look(package) {
            Seen::Absent => {
                watcher.pending.remove(package);
                if auto.packages.contains_key(package) {
                    removed.push(package.clone());
                }
            }
            Seen::Marked => {
                watcher.pending.remove(package);
            }
            Seen::Unmarked(listing) => {
                if watcher.pending.get(package) == Some(&listing) {
                    changed.push((package.clone(), listing.iter().any(|n| n == "api.zip")));
                } else {
                    watcher.pending.insert(package.clone(), listing);
                    settling = true;
                }
            }
        }
    }
    removed.extend(
        auto.packages
            .keys()
            .filter(|known| !packages.contains(known))
            .cloned(),
    );
    for package in &removed {
        forget(package);
    }
    if settling && !changed.is_empty() && watcher.deferrals < MAX_DEFERRALS {
        watcher.deferrals += 1;
        return;
    }
    watcher.deferrals = 0;
    for (package, _) in &changed {
        watcher.pending.remove(package);
    }
    changed.sort_by_key(|(package, has_api)| (!has_api, package.clone()));
    let names: Vec<String> = changed.iter().map(|(name, _)| name.clone()).collect();
    for (package, has_api) in &changed {
        handle(our, package, *has_api, &names);
        crate::mailbox::serve_reads(our);
    }
    // Handling and forgetting change the state; an idle tick reuses what it read.
    let auto = if changed.is_empty() && removed.is_empty() {
        auto
    } else {
        match store::auto() {
            Ok(auto) => auto,
            Err(_) => return,
        }
    };
    retry_failed(our, &auto, &names);
}

/// Reads again the listing on chain of every library fetched from the network: one listed at
/// another version is fetched (and mirrored, with mirroring on), and if its API changed, the
/// packages linked against it are re-linked, as for a library the app store updates. A version
/// no node serves is said once on the terminal and tried again every round.
fn refresh_fetched(our: &Address, watcher: &mut Watcher) {
    for (library, fetched_version) in store::fetched_libraries() {
        let Some(listed) = fetch::listed_version(our, &library) else {
            continue;
        };
        if fetched_version == listed {
            continue;
        }
        let before = store::mirrored_sha256(&library).ok().flatten();
        match fetch::library(our, &library, &library) {
            Ok(fetched) => {
                watcher.unfetched.remove(&library);
                if before.as_ref() != Some(&fetched.api.sha256) {
                    relink_dependents(our, &library, &fetched.report.version_hash, &[]);
                }
            }
            Err(fetch::Unfetched::Failed(_)) => {
                if watcher.unfetched.get(&library) != Some(&listed) {
                    println!(
                        "linker: {library} is listed on chain at a new version ({listed}) that \
                         no node serves yet; the packages linked against it keep the version \
                         they have"
                    );
                    watcher.unfetched.insert(library, listed);
                }
            }
            Err(fetch::Unfetched::NotListed(_)) => {}
        }
        crate::mailbox::serve_reads(our);
    }
}

/// Re-links the packages linked against `library`, now at `version_hash`, except those in
/// `skip`, which take their own turn.
fn relink_dependents(our: &Address, library: &str, version_hash: &str, skip: &[String]) {
    let relinks = service::plan_relinks(library, version_hash, skip);
    say_kept(&service::relink(our, relinks));
}

/// Says on the terminal which re-linked packages kept their previous version, and why.
fn say_kept(relinks: &[api::Relink]) {
    for relink in relinks {
        if let api::RelinkOutcome::Kept(error) = &relink.outcome {
            println!(
                "linker: {} keeps its previous version: {}",
                relink.package,
                summary(error)
            );
        }
    }
}

/// Forgets a removed package; if packages were linked against it, says that they keep running
/// with the copy linked into them, and moves the API epoch.
fn forget(package: &str) {
    let dependents = store::dependents(package).unwrap_or_default();
    if let Err(failure) = store::forget(package) {
        println!(
            "linker: cannot forget the removed {package}: {}",
            failure.reason
        );
    }
    let result = store::auto().and_then(|mut auto| {
        auto.packages.remove(package);
        if !dependents.is_empty() {
            auto.epoch += 1;
            auto.removed.insert(package.to_owned());
        }
        store::save_auto(&auto)
    });
    if let Err(failure) = result {
        println!(
            "linker: cannot forget the removed {package}: {}",
            failure.reason
        );
    }
    if !dependents.is_empty() {
        println!(
            "linker: {package} was removed; {} keep running with the copy linked into them \
             (`apis:linker:sys` lists it as removed)",
            dependents.join(", ")
        );
    }
}

/// Handles one package installed without the linker; `batch` are the packages handled in the
/// same tick, which its re-links leave to their own turn.
fn handle(our: &Address, package: &str, has_api: bool, batch: &[String]) {
    let zip = match node::installed_zip(package) {
        Ok(bytes) => Named::new(package.to_owned(), bytes),
        Err(failure) => {
            println!("linker: cannot read {}: {}", failure.step, failure.reason);
            return;
        }
    };
    let version_hash = zip.sha256.clone();
    let known = store::auto()
        .ok()
        .and_then(|mut auto| auto.packages.remove(package).map(|t| (t, auto.epoch)));
    // The same version handled before, with nothing to link or failing at the same APIs (after a
    // reboot re-bootstrapped it, say): only the marker is missing. A library that did not change
    // leaves its dependents as they are.
    if let Some((tracked, epoch)) = &known {
        let same = tracked.version_hash == version_hash;
        match tracked.status {
            Status::NothingToLink if same => return mark(package, &version_hash, &zip.bytes),
            Status::Failed(_) if same && tracked.epoch == *epoch => {
                return mark(package, &version_hash, &zip.bytes)
            }
            _ => {}
        }
    }
    let outcome = link_and_install(our, zip.clone(), batch);
    let status = match outcome {
        Ok(Handled::Installed | Handled::Superseded) => return,
        Ok(Handled::NothingToLink) => {
            mark(package, &version_hash, &zip.bytes);
            if has_api {
                relink_dependents(our, package, &version_hash, batch);
            }
            Status::NothingToLink
        }
        Err(error) => {
            println!(
                "linker: {package} was installed without the linker and cannot be linked, so it \
                 runs as installed: {} (`linked:linker:sys {package}` shows why)",
                summary(&error)
            );
            mark(package, &version_hash, &zip.bytes);
            Status::Failed(error)
        }
    };
    store::track(package, &version_hash, Trigger::Auto, status, has_api);
}

/// What handling a package came to.
enum Handled {
    /// Linked and installed (and recorded by the install).
    Installed,
    /// Nothing in it imports a library: left as installed.
    NothingToLink,
    /// Replaced by another install while it was being linked; left for the next tick.
    Superseded,
}

/// Links an installed package, whose zip as just read is `zip`, by the usual rule, and installs
/// it if anything was linked.
fn link_and_install(our: &Address, zip: Named, batch: &[String]) -> Result<Handled, LinkerError> {
    let package = zip.name.clone();
    let package = package.as_str();
    let id = inputs::package_id(package).ok_or(LinkerError::NoPackageId)?;
    let request = LinkRequest {
        source: PackageSource::Installed(id),
        metadata: None,
        apis: Vec::new(),
    };
    let mut caller = Caller {
        source: our,
        capabilities: &[],
        blob: None,
        installed: Some(zip),
    };
    let (inputs, linked) = match service::link(our, &mut caller, &request) {
        Ok(linked) => linked,
        // A package that imports no library is not the linker's business, even if it would
        // refuse to link it (an unusual archive, say): it is left as installed, unreported.
        Err(_) if !imports_libraries(package) => return Ok(Handled::NothingToLink),
        Err(error) => return Err(error),
    };
    let nothing = linked.report.copied.is_empty()
        && linked
            .report
            .components
            .iter()
            .all(|component| component.linked_sha256.is_none());
    if nothing {
        return Ok(Handled::NothingToLink);
    }
    // Another install may have replaced the package while it was being linked: then the next
    // tick handles that one, and this link is not installed over it.
    let current = node::installed_zip(package);
    if current.as_deref().ok() != Some(inputs.package.bytes.as_slice()) {
        return Ok(Handled::Superseded);
    }
    let report = service::install_linked(our, inputs, linked, Trigger::Auto, Some(batch))?;
    say_kept(&report.relinked);
    Ok(Handled::Installed)
}

/// Whether any component of an installed package imports a library interface (one the runtime
/// does not provide). A package that cannot be read counts as not importing any.
fn imports_libraries(package: &str) -> bool {
    let Ok(zip) = node::read(&format!("/{package}/pkg/{package}.zip")) else {
        return false;
    };
    linker_core::explain(
        linker_core::Input::new(package, &zip),
        &[],
        &linker_core::Options::default(),
    )
    .is_ok_and(|explanation| {
        explanation
            .components
            .iter()
            .any(|component| !component.imports.is_empty())
    })
}

/// Tries again every package that failed before the node's APIs last changed.
fn retry_failed(our: &Address, auto: &store::Auto, batch: &[String]) {
    let stale: Vec<String> = auto
        .packages
        .iter()
        .filter(|(name, tracked)| {
            matches!(tracked.status, Status::Failed(_))
                && tracked.epoch < auto.epoch
                && !batch.contains(name)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for package in stale {
        if matches!(look(&package), Seen::Absent) {
            continue;
        }
        let zip = match node::installed_zip(&package) {
            Ok(bytes) => Named::new(package.clone(), bytes),
            Err(_) => continue,
        };
        let version_hash = zip.sha256.clone();
        let status = match link_and_install(our, zip, batch) {
            Ok(Handled::Installed) => {
                println!("linker: {package} is linked now that the APIs on the node changed");
                continue;
            }
            Ok(Handled::Superseded) => continue,
            Ok(Handled::NothingToLink) => Status::NothingToLink,
            Err(error) => Status::Failed(error),
        };
        store::track(&package, &version_hash, Trigger::Auto, status, false);
    }
}

/// Leaves the marker in a package's drive, unless the drive no longer holds `zip` (whose hash is
/// `version_hash`).
///
/// Another install (the app store's next version, say) may replace `/{pkg}/pkg` while the linker
/// handles the version before it; a marker left on the new files would hide them from every
/// later tick. So the zip is read again after the marker is written, and the marker is taken away
/// if the drive changed, whether it changed before the write or during it (a drive replaced after
/// the check loses the marker with everything else).
fn mark(package: &str, version_hash: &str, zip: &[u8]) {
    let drive = format!("/{package}/pkg");
    let path = format!("{drive}/{}", store::MARKER);
    if let Err(failure) = node::write(&path, version_hash.as_bytes().to_vec()) {
        println!(
            "linker: cannot mark {package} as handled: {}",
            failure.reason
        );
        return;
    }
    let current = node::installed_zip(package);
    if current.as_deref().ok() != Some(zip) {
        let _ = node::expect_ok(&path, kinode_process_lib::vfs::VfsAction::RemoveFile, None);
    }
}

/// A linker error as one line for the terminal: what is wrong and what to do.
pub fn summary(error: &LinkerError) -> String {
    match error {
        LinkerError::Unresolved(imports) => {
            let more = match imports.len().saturating_sub(1) {
                0 => String::new(),
                n => format!(" (and {n} more)"),
            };
            match imports.first() {
                Some(first) if first.hint.is_empty() => format!("{}{more}", first.message),
                Some(first) => format!("{}; {}{more}", first.message, first.hint),
                None => "imports cannot be linked".to_owned(),
            }
        }
        LinkerError::MissingDependency(missing) => format!(
            "it depends on {}, which is not on this node: {}",
            missing.dependency, missing.hint
        ),
        LinkerError::InstallFailed(failure) => format!(
            "installing failed at {}: {}",
            failure.failed.step, failure.failed.reason
        ),
        LinkerError::Archive(problem)
        | LinkerError::Package(problem)
        | LinkerError::Component(problem)
        | LinkerError::Bounds(problem)
        | LinkerError::Compose(problem)
        | LinkerError::Verify(problem) => problem.message.clone(),
        LinkerError::Forbidden(imports) => imports
            .iter()
            .map(|forbidden| forbidden.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
    }
}
