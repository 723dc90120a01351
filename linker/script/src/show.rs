//! The linker's answers as terminal text: reports as aligned tables, every error as one line
//! (what is wrong, then what to do). Hashes are shown by their first 12 hex digits.

use crate::api::{
    Ability, ApiInfo, ComponentReport, CopiedFile, Dependent, Explanation, FetchProblem,
    FetchedLibrary, ImportReport, InstallReport, LibraryReport, LinkReport, LinkTrigger,
    LinkerError, NodeFailureReason, Origin, Outcome, PackageInfo, PackageStatus, PreviousVersion,
    Provenance, RelinkOutcome, Role, UnresolvedImport,
};

/// How many hex digits of a hash are shown.
const HASH_DIGITS: usize = 12;

/// A link report under `title`: one row per library import, then the files copied from APIs.
pub fn link_report(title: &str, report: &LinkReport) -> String {
    let mut lines = vec![format!(
        "{title} against {}{}",
        names(report.apis.iter().map(|api| api.name.as_str())),
        if report.cached { " (cached)" } else { "" }
    )];
    lines.extend(fetched(&report.fetched));
    lines.extend(components(&report.components, &report.copied));
    lines.join("\n")
}

/// One line per library fetched from the network.
pub fn fetched(libraries: &[FetchedLibrary]) -> Vec<String> {
    libraries
        .iter()
        .map(|library| {
            format!(
                "fetched {} {} (version {}) from {}: {} bytes in {} ms{}",
                library.package,
                library.version,
                short(&library.version_hash),
                library.node,
                library.bytes,
                library.millis,
                if library.mirrored {
                    ", mirrored here"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// What linking would do, import by import.
pub fn explanation(explanation: &Explanation) -> String {
    let mut lines = vec![format!(
        "{} would be linked against {}",
        explanation.package,
        names(explanation.apis.iter().map(|api| api.name.as_str()))
    )];
    lines.extend(components(&explanation.components, &[]));
    lines.join("\n")
}

/// An install: what was installed, its links, the processes started and the dependents re-linked.
pub fn install_report(report: &InstallReport) -> String {
    let replaced = report
        .replaced
        .as_deref()
        .map(|hash| format!(", replaces {}", short(hash)))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "installed {} (version {}{replaced})",
        report.package,
        short(&report.version_hash)
    )];
    lines.push(link_report("linked", &report.link));
    lines.push(format!(
        "started {}",
        if report.processes.is_empty() {
            "no processes".to_owned()
        } else {
            report.processes.join(", ")
        }
    ));
    for relink in &report.relinked {
        lines.push(match &relink.outcome {
            RelinkOutcome::Relinked(hash) => {
                format!("relinked {} (linked {})", relink.package, short(hash))
            }
            RelinkOutcome::Kept(error) => format!(
                "kept the previous version of {}: {}",
                relink.package,
                linker_error(error)
            ),
        });
    }
    lines.join("\n")
}

/// The node's APIs: package, location, interfaces (with versions) and dependents.
pub fn apis(apis: &[ApiInfo]) -> String {
    if apis.is_empty() {
        return "no APIs on this node: install a package that has an api.zip".to_owned();
    }
    let mut rows = vec![["package", "location", "interfaces", "dependents"].map(str::to_owned)];
    for api in apis {
        let height = api.interfaces.len().max(api.dependents.len()).max(1);
        for index in 0..height {
            let first = |text: &str| {
                if index == 0 {
                    text.to_owned()
                } else {
                    String::new()
                }
            };
            let cell = |list: &[String]| {
                list.get(index)
                    .cloned()
                    .unwrap_or_else(|| first(if list.is_empty() { "-" } else { "" }))
            };
            let dependents: Vec<String> = api.dependents.iter().map(dependent).collect();
            rows.push([
                first(&api.package),
                first(&api.location),
                cell(&api.interfaces),
                cell(&dependents),
            ]);
        }
    }
    table(&rows, "").join("\n")
}

/// A dependent of an API: `app:pub`, with `(auto)` if auto-linking linked it.
fn dependent(dependent: &Dependent) -> String {
    match dependent.trigger {
        LinkTrigger::Request => dependent.package.clone(),
        LinkTrigger::Auto => format!("{} (auto)", dependent.package),
    }
}

/// Every package the linker linked or tried to: `linked` with no argument.
pub fn packages(packages: &[PackageInfo]) -> String {
    if packages.is_empty() {
        return "the linker has linked no package on this node; `linked:linker:sys \
                <package-id>` shows one package"
            .to_owned();
    }
    let mut rows = vec![["package", "version", "how", "state"].map(str::to_owned)];
    for info in packages {
        rows.push([
            info.package.clone(),
            short(&info.version_hash).to_owned(),
            trigger(info.trigger).to_owned(),
            state(info),
        ]);
    }
    table(&rows, "").join("\n")
}

/// One package: where it stands, what was linked into it, and the APIs it lost.
pub fn package_info(info: &PackageInfo) -> String {
    let how = match info.trigger {
        LinkTrigger::Request => "",
        LinkTrigger::Auto => " by auto-linking",
    };
    let mut lines = vec![match &info.status {
        PackageStatus::Linked(report) => link_report(
            &format!(
                "{} (version {}) was linked{how}",
                info.package,
                short(&info.version_hash)
            ),
            report,
        ),
        PackageStatus::NothingToLink => format!(
            "{} (version {}) has nothing to link: no process or script imports a library",
            info.package,
            short(&info.version_hash)
        ),
        PackageStatus::Failed(error) => format!(
            "{} (version {}) could not be linked and runs as installed: {}",
            info.package,
            short(&info.version_hash),
            linker_error(error)
        ),
    }];
    if !info.missing_apis.is_empty() {
        lines.push(format!(
            "  depends on {} (missing API): no longer installed; it keeps running with the copy \
             linked into it",
            info.missing_apis.join(", ")
        ));
    }
    lines.join("\n")
}

/// Why a listed library could not be fetched, in words.
fn fetch_problem(problem: &FetchProblem) -> String {
    match problem {
        FetchProblem::NoVersionHash(version) => {
            format!("its on-chain listing names no hash for its current version {version}")
        }
        FetchProblem::NoApi(version) => {
            format!("version {version} of its package has no api.zip: it is not a library")
        }
        FetchProblem::Nodes(nodes) if nodes.tried.is_empty() => format!(
            "its listing (version {}) names no node to fetch it from",
            nodes.version
        ),
        FetchProblem::Nodes(nodes) => {
            let tried: Vec<String> = nodes
                .tried
                .iter()
                .map(|failure| {
                    let reason = match &failure.reason {
                        NodeFailureReason::Offline => "offline".to_owned(),
                        NodeFailureReason::TimedOut(seconds) => {
                            format!("no answer within {seconds} s")
                        }
                        NodeFailureReason::NotMirroring => "does not mirror it".to_owned(),
                        NodeFailureReason::SentNothing(seconds) => {
                            format!("mirrors it but sent nothing within {seconds} s")
                        }
                        NodeFailureReason::HashMismatch(actual) => format!(
                            "sent bytes of another hash ({}), thrown away",
                            short(actual)
                        ),
                        NodeFailureReason::Failed(reason) => trim(reason).to_owned(),
                    };
                    format!("{} {reason}", failure.node)
                })
                .collect();
            format!(
                "version {} ({}) was asked of {}",
                nodes.version,
                short(&nodes.version_hash),
                tried.join("; ")
            )
        }
    }
}

fn trigger(trigger: LinkTrigger) -> &'static str {
    match trigger {
        LinkTrigger::Request => "request",
        LinkTrigger::Auto => "auto",
    }
}

/// A package's state in a few words.
fn state(info: &PackageInfo) -> String {
    let state = match &info.status {
        PackageStatus::Linked(report) => format!(
            "linked against {}",
            names(report.apis.iter().map(|api| api.name.as_str()))
        ),
        PackageStatus::NothingToLink => "nothing to link".to_owned(),
        PackageStatus::Failed(_) => "cannot be linked".to_owned(),
    };
    if info.missing_apis.is_empty() {
        state
    } else {
        format!("{state}; missing API {}", info.missing_apis.join(", "))
    }
}

/// A linker error as one sentence: what is wrong, then what to do.
pub fn linker_error(error: &LinkerError) -> String {
    one_line(&match error {
        LinkerError::RemoteSender(sender) => {
            format!("the linker serves only processes on its own node, not {sender}")
        }
        LinkerError::NotAuthorised(reason) => format!(
            "not authorised: {reason} (the script's scripts.json entry requests the capabilities \
             it needs; the terminal must hold them)"
        ),
        LinkerError::NoBlob => {
            "the request named its blob as the package but carried none: name the package by id \
             or VFS path"
                .to_owned()
        }
        LinkerError::Unreadable(failure) => format!(
            "{} failed ({}): check that the path exists and names a file",
            failure.step,
            trim(&failure.reason)
        ),
        LinkerError::BadMetadata(reason) => {
            format!(
                "bad metadata ({}): fix the package's metadata.json",
                trim(reason)
            )
        }
        LinkerError::NoPackageId => {
            "installing needs the package id: name an installed package (name:publisher) \
             instead of a VFS path"
                .to_owned()
        }
        LinkerError::NotInstalled(package) => format!(
            "{package} is not installed on this node: install it first, or give the VFS path of \
             its zip"
        ),
        LinkerError::NotLinked(package) => format!(
            "{package} was not installed by the linker (it has no pkg/link.json): install it \
             with `link:linker:sys {package} --install`"
        ),
        LinkerError::MissingDependency(missing) => format!(
            "{} depends on {}, which is not on this node: install {} first, or add --api <the \
             VFS path of its API zip>",
            missing.package, missing.dependency, missing.dependency
        ),
        LinkerError::FetchFailed(failure) => format!(
            "{} needs {}, which is not on this node and could not be fetched: {}; install it \
             from the app store once a node that serves it is online, or add --api <the VFS path \
             of its API zip>",
            failure.package,
            failure.library,
            fetch_problem(&failure.problem)
        ),
        LinkerError::Archive(problem) => format!(
            "{} is not a usable archive ({}): {}",
            problem.subject,
            problem.kind,
            trim(&problem.message)
        ),
        LinkerError::Package(problem) => format!(
            "{} is inconsistent ({}): {}; fix the package and build it again",
            problem.subject,
            problem.kind,
            trim(&problem.message)
        ),
        LinkerError::Component(problem) => format!(
            "{} is not a usable component ({}): {}",
            problem.subject,
            problem.kind,
            trim(&problem.message)
        ),
        LinkerError::Unresolved(imports) => unresolved(imports),
        LinkerError::Bounds(problem) => format!(
            "{}'s library-bounds.json cannot be used ({}): {}",
            problem.subject,
            problem.kind,
            trim(&problem.message)
        ),
        LinkerError::Forbidden(imports) => {
            let lines: Vec<&str> = imports
                .iter()
                .map(|forbidden| trim(&forbidden.message))
                .collect();
            format!(
                "the package's library-bounds.json forbids what its libraries import: {}",
                lines.join("; and ")
            )
        }
        LinkerError::Compose(problem) => format!(
            "composing {} failed ({}): {}",
            problem.subject,
            problem.kind,
            trim(&problem.message)
        ),
        LinkerError::Verify(problem) => format!(
            "the linked {} would not run on this node ({}): {}",
            problem.subject,
            problem.kind,
            trim(&problem.message)
        ),
        LinkerError::InstallFailed(failure) => format!(
            "installing failed at {} ({}); {}",
            failure.failed.step,
            trim(&failure.failed.reason),
            match &failure.previous {
                PreviousVersion::None => "nothing was left installed".to_owned(),
                PreviousVersion::Restored(hash) =>
                    format!("the previous version {} was restored", short(hash)),
                PreviousVersion::RestoreFailed(step) => format!(
                    "restoring the previous version failed too, at {} ({})",
                    step.step,
                    trim(&step.reason)
                ),
            }
        ),
        LinkerError::Busy(busy) => format!(
            "the linker was busy ({}, {} request{} ahead) for {:.1} s of the {:.1} s this script \
             waits, so it did not start this one: try again later",
            busy.doing,
            busy.ahead,
            if busy.ahead == 1 { "" } else { "s" },
            seconds(busy.waited_ms),
            seconds(busy.timeout_ms)
        ),
    })
}

/// Milliseconds as seconds.
fn seconds(millis: u64) -> f64 {
    millis as f64 / 1000.0
}

/// The first import that cannot be linked, how many more, and where to look.
fn unresolved(imports: &[UnresolvedImport]) -> String {
    let Some(first) = imports.first() else {
        return "some imports cannot be linked: run with --explain to see why".to_owned();
    };
    let more = match imports.len() - 1 {
        0 => String::new(),
        1 => " (and 1 more import)".to_owned(),
        n => format!(" (and {n} more imports)"),
    };
    let hint = if first.hint.is_empty() {
        String::new()
    } else {
        format!("; {}", trim(&first.hint))
    };
    format!(
        "cannot link: {}{hint}{more}; run with --explain to see every import",
        trim(&first.message)
    )
}

/// One row per library import: component (and role), import, outcome. Components with no
/// library imports are named on one line, except the files copied from APIs (`copied` lists them).
fn components(components: &[ComponentReport], copied: &[CopiedFile]) -> Vec<String> {
    let mut rows = Vec::new();
    let mut idle = Vec::new();
    for component in components {
        if component.imports.is_empty() {
            if !copied.iter().any(|file| file.path == component.path) {
                idle.push(component.path.as_str());
            }
            continue;
        }
        let name = format!("{} ({})", component.path, role(&component.role));
        for (index, import) in component.imports.iter().enumerate() {
            let first = if index == 0 {
                name.clone()
            } else {
                String::new()
            };
            rows.push([
                first,
                import_name(component, import),
                outcome(&import.outcome),
            ]);
        }
    }
    let mut lines = table(&rows, "  ");
    for component in components {
        lines.extend(libraries(component));
    }
    if !idle.is_empty() {
        lines.push(format!("  nothing to link in {}", idle.join(", ")));
    }
    lines.extend(
        copied
            .iter()
            .map(|file| format!("  copied {} from {}", file.path, file.from)),
    );
    lines
}

/// What each library linked into `component` can do, nested libraries under the library that
/// brings them in: `    courier-api.wasm (courier:test.os) can: send requests, spawn processes`,
/// with the same lines as `kinode-link` (`linker_core::LibraryReport::lines`).
fn libraries(component: &ComponentReport) -> Vec<String> {
    let mut lines = Vec::new();
    if component.libraries.is_empty() {
        return lines;
    }
    lines.push(format!(
        "  what the libraries in {} can do:",
        component.path
    ));
    let mut shown = Vec::new();
    let top: Vec<&LibraryReport> = component
        .libraries
        .iter()
        .filter(|library| {
            library
                .imported_by
                .iter()
                .any(|importer| importer.path == component.path)
        })
        .collect();
    for library in top {
        library_lines(component, library, 2, &mut shown, &mut lines);
    }
    lines
}

fn library_lines<'a>(
    component: &'a ComponentReport,
    library: &'a LibraryReport,
    depth: usize,
    shown: &mut Vec<&'a Origin>,
    lines: &mut Vec<String>,
) {
    if shown.contains(&&library.library) {
        return;
    }
    shown.push(&library.library);
    let indent = "  ".repeat(depth);
    lines.push(format!(
        "{indent}{} ({}) can: {}",
        library.library.path, library.library.archive, library.can
    ));
    if let Some(bound) = &library.bound {
        let mut limits = Vec::new();
        if let Some(may) = &bound.may {
            let names: Vec<&str> = may.iter().copied().map(ability_name).collect();
            limits.push(format!("may only: {}", names.join(", ")));
        }
        if let Some(targets) = &bound.send_to {
            let guard = if library.guarded {
                ", enforced by a guard"
            } else {
                ""
            };
            limits.push(format!("requests only to: {}{guard}", targets.join(", ")));
            let spawns = library.abilities.contains(&Ability::Spawn)
                && bound
                    .may
                    .as_ref()
                    .is_some_and(|may| may.contains(&Ability::Spawn));
            if spawns {
                limits.push("the processes it spawns are not bounded".to_owned());
            }
        }
        lines.push(format!(
            "{indent}  bounded by library-bounds.json: {}",
            limits.join("; ")
        ));
    }
    if !library.forbidden.is_empty() {
        lines.push(format!(
            "{indent}  forbidden by library-bounds.json: {}",
            library.forbidden.join(", ")
        ));
    }
    for nested in component
        .libraries
        .iter()
        .filter(|nested| nested.imported_by.contains(&library.library))
    {
        library_lines(component, nested, depth + 1, shown, lines);
    }
}

/// An ability's name in `library-bounds.json`.
fn ability_name(ability: Ability) -> &'static str {
    match ability {
        Ability::SendRequests => "send-requests",
        Ability::SendResponses => "send-responses",
        Ability::Receive => "receive",
        Ability::Spawn => "spawn",
        Ability::ReadCapabilities => "read-capabilities",
        Ability::ChangeCapabilities => "change-capabilities",
        Ability::State => "state",
        Ability::Blobs => "blobs",
        Ability::Print => "print",
        Ability::OnExit => "on-exit",
        Ability::Files => "files",
        Ability::Clocks => "clocks",
        Ability::Random => "random",
        Ability::Environment => "environment",
        Ability::Sockets => "sockets",
        Ability::Streams => "streams",
    }
}

fn role(role: &Role) -> String {
    match role {
        Role::Process(name) => format!("process {name}"),
        Role::Script => "script".to_owned(),
        Role::Component => "component".to_owned(),
    }
}

/// The import's name; a library's import names the library too.
fn import_name(component: &ComponentReport, import: &ImportReport) -> String {
    if import.importer.path == component.path {
        import.name.clone()
    } else {
        format!("{} (for {})", import.name, origin(&import.importer))
    }
}

fn outcome(outcome: &Outcome) -> String {
    one_line(&match outcome {
        Outcome::Linked(linked) if linked.semver => format!(
            "<- {} ({}, semver: {})",
            origin(&linked.provider),
            provenance(linked.provenance),
            linked.export
        ),
        Outcome::Linked(linked) => format!(
            "<- {} ({})",
            origin(&linked.provider),
            provenance(linked.provenance)
        ),
        Outcome::Unmatched(near) if near.is_empty() => "unmatched: no API exports it".to_owned(),
        Outcome::Unmatched(near) => format!(
            "unmatched: only incompatible versions exported: {}",
            near.join(", ")
        ),
        Outcome::Rejected(rejected) => format!(
            "rejected: {} exports {} with another type: {}",
            origin(&rejected.provider),
            rejected.export,
            trim(&rejected.reason)
        ),
        Outcome::Ambiguous(ambiguous) => format!(
            "ambiguous: {} is exported by {}; give only one of them",
            ambiguous.export,
            names(ambiguous.candidates.iter().map(origin))
        ),
        Outcome::Cycle(path) => format!(
            "cycle: {}",
            path.iter().map(origin).collect::<Vec<_>>().join(" -> ")
        ),
        Outcome::Left => "left as an import".to_owned(),
    })
}

/// Why a provider was chosen, in a word or two.
fn provenance(provenance: Provenance) -> &'static str {
    match provenance {
        Provenance::Given => "given",
        Provenance::Declared => "declared",
        Provenance::Found => "found on node",
        Provenance::Own => "own API",
    }
}

/// `archive/path`.
fn origin(origin: &Origin) -> String {
    format!("{}/{}", origin.archive, origin.path)
}

/// `a, b, c`, or `no APIs`.
fn names<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    let names: Vec<S> = names.collect();
    if names.is_empty() {
        "no APIs".to_owned()
    } else {
        names
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Rows as lines, each column but the last padded to its widest cell, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]], indent: &str) -> Vec<String> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = indent.to_owned();
            for (index, cell) in row.iter().enumerate() {
                if index + 1 < N {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
                } else {
                    line.push_str(cell);
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// The first digits of a hash.
fn short(hash: &str) -> &str {
    hash.get(..HASH_DIGITS).unwrap_or(hash)
}

/// A sentence without its final period, so that it can be followed by more.
fn trim(text: &str) -> &str {
    text.trim().trim_end_matches('.')
}

/// Text on one line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
