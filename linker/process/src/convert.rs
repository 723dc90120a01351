//! From the linking core's types to the API's: reports and errors, field for field. The core
//! serialises its own reports (`link.json`) with internal tags; the API's wire form is
//! wit-bindgen's, so the process converts rather than sharing serde forms.

use linker_core as core;

use crate::api;

impl From<&core::Origin> for api::Origin {
    fn from(origin: &core::Origin) -> Self {
        api::Origin {
            archive: origin.archive.clone(),
            path: origin.path.clone(),
        }
    }
}

fn origins(origins: &[core::Origin]) -> Vec<api::Origin> {
    origins.iter().map(api::Origin::from).collect()
}

impl From<&core::Digest> for api::Digest {
    fn from(digest: &core::Digest) -> Self {
        api::Digest {
            name: digest.name.clone(),
            sha256: digest.sha256.clone(),
            provenance: provenance(digest.source),
        }
    }
}

/// The API's name for why an API zip was linked against.
pub fn provenance(source: core::Source) -> api::Provenance {
    match source {
        core::Source::Given => api::Provenance::Given,
        core::Source::Declared => api::Provenance::Declared,
        core::Source::Found => api::Provenance::Found,
        core::Source::Own => api::Provenance::Own,
    }
}

impl From<&core::Outcome> for api::Outcome {
    fn from(outcome: &core::Outcome) -> Self {
        match outcome {
            core::Outcome::Linked {
                provider,
                export,
                sha256,
                semver,
                source,
            } => api::Outcome::Linked(api::LinkedImport {
                provider: provider.into(),
                export: export.clone(),
                sha256: sha256.clone(),
                semver: *semver,
                provenance: provenance(*source),
            }),
            core::Outcome::Unmatched { near } => api::Outcome::Unmatched(near.clone()),
            core::Outcome::Rejected {
                provider,
                export,
                reason,
            } => api::Outcome::Rejected(api::RejectedImport {
                provider: provider.into(),
                export: export.clone(),
                reason: reason.clone(),
            }),
            core::Outcome::Ambiguous { export, candidates } => {
                api::Outcome::Ambiguous(api::AmbiguousImport {
                    export: export.clone(),
                    candidates: origins(candidates),
                })
            }
            core::Outcome::Cycle { path } => api::Outcome::Cycle(origins(path)),
            core::Outcome::Left => api::Outcome::Left,
        }
    }
}

impl From<&core::ComponentReport> for api::ComponentReport {
    fn from(report: &core::ComponentReport) -> Self {
        api::ComponentReport {
            path: report.path.clone(),
            role: match &report.role {
                core::Role::Process { name } => api::Role::Process(name.clone()),
                core::Role::Script => api::Role::Script,
                core::Role::Component => api::Role::Component,
            },
            sha256: report.sha256.clone(),
            linked_sha256: report.linked_sha256.clone(),
            imports: report
                .imports
                .iter()
                .map(|import| api::ImportReport {
                    importer: (&import.importer).into(),
                    name: import.import.clone(),
                    outcome: (&import.outcome).into(),
                })
                .collect(),
            libraries: report.libraries.iter().map(library).collect(),
        }
    }
}

/// The API's name for an ability.
fn ability(ability: core::Ability) -> api::Ability {
    use core::Ability as A;
    match ability {
        A::SendRequests => api::Ability::SendRequests,
        A::SendResponses => api::Ability::SendResponses,
        A::Receive => api::Ability::Receive,
        A::Spawn => api::Ability::Spawn,
        A::ReadCapabilities => api::Ability::ReadCapabilities,
        A::ChangeCapabilities => api::Ability::ChangeCapabilities,
        A::State => api::Ability::State,
        A::Blobs => api::Ability::Blobs,
        A::Print => api::Ability::Print,
        A::OnExit => api::Ability::OnExit,
        A::Files => api::Ability::Files,
        A::Clocks => api::Ability::Clocks,
        A::Random => api::Ability::Random,
        A::Environment => api::Ability::Environment,
        A::Sockets => api::Ability::Sockets,
        A::Streams => api::Ability::Streams,
    }
}

fn abilities<'a>(list: impl IntoIterator<Item = &'a core::Ability>) -> Vec<api::Ability> {
    list.into_iter().copied().map(ability).collect()
}

fn library(report: &core::LibraryReport) -> api::LibraryReport {
    api::LibraryReport {
        library: (&report.library).into(),
        imported_by: origins(&report.imported_by),
        abilities: abilities(&report.abilities),
        can: report.can(),
        bound: report.bound.as_ref().map(|bound| api::LibraryBound {
            may: bound.may.as_ref().map(abilities),
            send_to: bound.send_to.clone(),
        }),
        guarded: report.guarded,
        forbidden: report.forbidden.clone(),
    }
}

/// The API's form of a core report; `cached` says whether it came from the linker's cache.
pub fn link_report(report: &core::LinkReport, cached: bool) -> api::LinkReport {
    api::LinkReport {
        linker: report.linker.clone(),
        package: (&report.package).into(),
        apis: report.apis.iter().map(api::Digest::from).collect(),
        components: report
            .components
            .iter()
            .map(api::ComponentReport::from)
            .collect(),
        copied: report
            .copied
            .iter()
            .map(|copied| api::CopiedFile {
                path: copied.path.clone(),
                from: copied.from.clone(),
                sha256: copied.sha256.clone(),
            })
            .collect(),
        cached,
        fetched: Vec::new(),
    }
}

/// The API's form of an explanation, with the API zips that were considered.
pub fn explanation(explanation: &core::Explanation, apis: Vec<api::Digest>) -> api::Explanation {
    api::Explanation {
        package: explanation.package.clone(),
        apis,
        components: explanation
            .components
            .iter()
            .map(api::ComponentReport::from)
            .collect(),
    }
}

fn problem(kind: &str, subject: &str, error: &dyn std::fmt::Display) -> api::Problem {
    api::Problem {
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        message: error.to_string(),
    }
}

impl From<&core::LinkError> for api::LinkerError {
    fn from(error: &core::LinkError) -> Self {
        use core::{ArchiveError as A, InspectError as I, PackageError as P, VerifyError as V};
        match error {
            core::LinkError::Archive(e) => {
                let (kind, archive) = match e {
                    A::NotAZip { archive, .. } => ("not-a-zip", archive),
                    A::ArchiveTooLarge { archive, .. } => ("archive-too-large", archive),
                    A::UnsafePath { archive, .. } => ("unsafe-path", archive),
                    A::DuplicateEntry { archive, .. } => ("duplicate-entry", archive),
                    A::TooManyEntries { archive, .. } => ("too-many-entries", archive),
                    A::ContentsTooLarge { archive, .. } => ("contents-too-large", archive),
                    A::CompressionRatio { archive, .. } => ("compression-ratio", archive),
                    A::ArchiveRatio { archive, .. } => ("archive-ratio", archive),
                    A::CorruptEntry { archive, .. } => ("corrupt-entry", archive),
                };
                api::LinkerError::Archive(problem(kind, archive, e))
            }
            core::LinkError::Package(e) => {
                let (kind, package) = match e {
                    P::MissingManifest { package } => ("missing-manifest", package),
                    P::InvalidManifest { package, .. } => ("invalid-manifest", package),
                    P::MissingWasm { package, .. } => ("missing-wasm", package),
                    P::FileConflict { package, .. } => ("file-conflict", package),
                };
                api::LinkerError::Package(problem(kind, package, e))
            }
            core::LinkError::Inspect(e) => {
                let (kind, origin) = match e {
                    I::NotAComponent { origin, .. } => ("not-a-component", origin),
                    I::InvalidComponent { origin, .. } => ("invalid-component", origin),
                    I::InvalidModule { origin, .. } => ("invalid-module", origin),
                };
                api::LinkerError::Component(problem(kind, &origin.path, e))
            }
            core::LinkError::Unresolved { problems } => {
                api::LinkerError::Unresolved(problems.iter().map(unresolved).collect())
            }
            core::LinkError::Bounds(core::BoundsError::Forbidden { forbidden }) => {
                api::LinkerError::Forbidden(
                    forbidden
                        .iter()
                        .map(|forbidden| api::ForbiddenImport {
                            component: forbidden.component.clone(),
                            library: (&forbidden.library).into(),
                            imports: forbidden.imports.clone(),
                            ability: ability(forbidden.ability),
                            may: abilities(&forbidden.may),
                            send_to: forbidden.send_to.clone(),
                            send_to_cannot_hold: forbidden.reason == core::Reason::SendToCannotHold,
                            message: forbidden.to_string(),
                        })
                        .collect(),
                )
            }
            core::LinkError::Bounds(e) => {
                let (kind, package) = match e {
                    core::BoundsError::Invalid { package, .. } => ("invalid", package.as_str()),
                    core::BoundsError::BadTarget { package, .. } => {
                        ("bad-target", package.as_str())
                    }
                    core::BoundsError::Unused { package, .. } => ("unused", package.as_str()),
                    core::BoundsError::Forbidden { .. } => ("forbidden", ""),
                };
                api::LinkerError::Bounds(problem(kind, package, e))
            }
            core::LinkError::Guard(e) => {
                let (kind, library) = match e {
                    core::GuardError::TooLarge { library, .. } => ("too-large", library),
                    core::GuardError::BadName { name } => ("bad-name", name),
                };
                api::LinkerError::Bounds(problem(kind, library, e))
            }
            core::LinkError::Compose(e) => {
                let component = match e {
                    core::ComposeError::Graph { component, .. }
                    | core::ComposeError::Invalid { component, .. } => component,
                };
                api::LinkerError::Compose(problem("compose", component, e))
            }
            core::LinkError::Verify(e) => {
                let (kind, component) = match e {
                    V::ForbiddenImports { component, .. } => ("forbidden-imports", component),
                    V::MissingInit { component, .. } => ("missing-init", component),
                    V::Unreadable { component, .. } => ("unreadable", component),
                };
                api::LinkerError::Verify(problem(kind, component, e))
            }
        }
    }
}

fn unresolved(error: &core::ResolveError) -> api::UnresolvedImport {
    use core::ResolveError as R;
    let message = error.to_string();
    match error {
        R::NoProvider {
            component,
            importer,
            import,
            near,
        } => api::UnresolvedImport {
            component: component.clone(),
            importer: importer.into(),
            name: import.clone(),
            reason: api::UnresolvedReason::NoProvider(near.clone()),
            message,
            hint: String::new(),
        },
        R::TypeMismatch {
            component,
            importer,
            import,
            provider,
            export,
            reason,
        } => api::UnresolvedImport {
            component: component.clone(),
            importer: importer.into(),
            name: import.clone(),
            reason: api::UnresolvedReason::TypeMismatch(api::RejectedImport {
                provider: provider.into(),
                export: export.clone(),
                reason: reason.clone(),
            }),
            message,
            hint: String::new(),
        },
        R::Ambiguous {
            component,
            importer,
            import,
            candidates,
        } => api::UnresolvedImport {
            component: component.clone(),
            importer: importer.into(),
            name: import.clone(),
            reason: api::UnresolvedReason::Ambiguous(origins(candidates)),
            message,
            hint: String::new(),
        },
        R::Cycle { component, path } => api::UnresolvedImport {
            component: component.clone(),
            importer: path.first().map(api::Origin::from).unwrap_or(api::Origin {
                archive: component.clone(),
                path: component.clone(),
            }),
            name: String::new(),
            reason: api::UnresolvedReason::Cycle(origins(path)),
            message,
            hint: String::new(),
        },
    }
}
