//! A package's bounds on its libraries: `library-bounds.json` in the package (kit carries `pkg/`
//! unchanged), read here, checked against each linked library's imports at link time, and turned
//! into guard policies for what can only be checked while the process runs (README "Bounding a
//! library"; the schema is `api/library-bounds.schema.json`).
//!
//! ```json
//! { "libraries": { "courier:test.os": { "may": ["send-requests", "print"],
//!                                        "send-to": ["library-package", "spawned"] } } }
//! ```
//!
//! `may` lists what the library may do ([`Ability`] names); a library importing anything else is
//! refused. `send-to` lists whom it may send requests to; a guard enforces it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use linker_guard::{Target, TargetError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::abilities::{describe, Ability};
use crate::archive::Archive;
use crate::inspect::Origin;

/// The file, at the root of the package zip.
pub const FILE: &str = "library-bounds.json";

/// What a package allows one library (all the libraries of one API package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Bound {
    /// What it may do; `None` leaves it every ability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may: Option<BTreeSet<Ability>>,
    /// Whom it may send requests to; `None` leaves messaging unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_to: Option<Vec<String>>,
}

/// The file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    libraries: BTreeMap<String, Bound>,
}

/// Why a bound forbids an ability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// `may` does not list it.
    NotInMay,
    /// The bound has `send-to`, which the guard cannot hold for what the ability reaches (the
    /// code a spawned process runs), and `may` does not list it to accept that.
    SendToCannotHold,
}

/// Whether `bound` forbids `ability`, and why.
pub(crate) fn forbids(bound: &Bound, ability: Ability) -> Option<Reason> {
    match &bound.may {
        Some(may) if !may.contains(&ability) => Some(Reason::NotInMay),
        Some(_) => None,
        None if bound.send_to.is_some() && ability == Ability::Spawn => {
            Some(Reason::SendToCannotHold)
        }
        None => None,
    }
}

/// What a bound forbids one library: the imports granting one ability it may not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The package file being linked.
    pub component: String,
    /// The library.
    pub library: Origin,
    /// The imports: `standard` functions (`spawn`) or WASI interfaces.
    pub imports: Vec<String>,
    /// What it would let the library do.
    pub ability: Ability,
    /// What the bound's `may` lets it do (empty when `may` is absent).
    pub may: Vec<Ability>,
    /// The bound's `send-to` (empty when it has none).
    pub send_to: Vec<String>,
    /// Why the ability is forbidden.
    pub reason: Reason,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let imports: Vec<String> = self.imports.iter().map(|i| format!("`{i}`")).collect();
        if self.reason == Reason::SendToCannotHold {
            return write!(
                f,
                "linking `{}`: {} imports {}, which would let it {}; the processes it spawns run \
                 code no guard sees, so the bound {FILE} gives `{}` (requests only to: {}) would not \
                 hold for them: list `{}` in its `may` to accept that, or drop its `send-to`",
                self.component,
                self.library,
                imports.join(", "),
                self.ability.phrase(),
                package_of(&self.library.archive),
                self.send_to.join(", "),
                self.ability.name(),
            );
        }
        write!(
            f,
            "linking `{}`: {} imports {}, which would let it {}; {FILE} lets `{}` only {}",
            self.component,
            self.library,
            imports.join(", "),
            self.ability.phrase(),
            package_of(&self.library.archive),
            if self.may.is_empty() {
                "compute (`may` is empty)".to_owned()
            } else {
                describe(&self.may)
            },
        )
    }
}

/// A `library-bounds.json` that cannot be used, or a library it forbids.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BoundsError {
    /// The file is not the documented JSON.
    #[error("`{FILE}` in `{package}` is not valid: {reason}")]
    Invalid {
        /// The package.
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// A `send-to` entry is not a target.
    #[error("`{FILE}` in `{package}`, library `{library}`: {error}")]
    BadTarget {
        /// The package.
        package: String,
        /// The library entry.
        library: String,
        /// The target's problem.
        error: TargetError,
    },
    /// An entry names a package no linked library comes from: a typo would leave a library
    /// unbounded, so it is refused.
    #[error("`{FILE}` in `{package}` bounds `{library}`, but no library linked into the package comes from it (linked: {})", if linked.is_empty() { "none".to_owned() } else { linked.join(", ") })]
    Unused {
        /// The package.
        package: String,
        /// The entry.
        library: String,
        /// The packages libraries were linked from.
        linked: Vec<String>,
    },
    /// Libraries import what their bounds forbid: all of it, by library and ability.
    #[error("{}", forbidden_list(forbidden))]
    Forbidden {
        /// Each library's forbidden imports by ability, in component and library order.
        forbidden: Vec<Forbidden>,
    },
}

fn forbidden_list(forbidden: &[Forbidden]) -> String {
    match forbidden {
        [one] => one.to_string(),
        many => {
            let lines: Vec<String> = many.iter().map(|f| format!("  - {f}")).collect();
            format!(
                "{FILE} forbids {} things libraries import:\n{}",
                many.len(),
                lines.join("\n")
            )
        }
    }
}

/// A package's bounds, by library package id, with the `send-to` targets parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bounds {
    entries: BTreeMap<String, (Bound, Option<Vec<Target>>)>,
}

impl Bounds {
    /// Reads `library-bounds.json` from the package, if it has one.
    pub fn read(package: &str, archive: &Archive) -> Result<Bounds, BoundsError> {
        let Some(bytes) = archive.files.get(FILE) else {
            return Ok(Bounds::default());
        };
        let invalid = |reason: String| BoundsError::Invalid {
            package: package.to_owned(),
            reason,
        };
        let file: File =
            serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
        let mut entries = BTreeMap::new();
        for (library, bound) in file.libraries {
            let well_formed = library.split_once(':').is_some_and(|(name, publisher)| {
                !name.is_empty() && !publisher.is_empty() && !publisher.contains(':')
            });
            if !well_formed {
                return Err(invalid(format!(
                    "`{library}` is not a package id (`package:publisher`)"
                )));
            }
            let targets = bound
                .send_to
                .as_ref()
                .map(|targets| {
                    targets
                        .iter()
                        .map(|target| target.parse::<Target>())
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|error| BoundsError::BadTarget {
                    package: package.to_owned(),
                    library: library.clone(),
                    error,
                })?;
            entries.insert(library, (bound, targets));
        }
        Ok(Bounds { entries })
    }

    /// The bound on libraries from `archive` (an API input's name, or the package's own
    /// `<package>/api.zip`), with its parsed targets.
    pub fn of(&self, archive: &str) -> Option<(&Bound, Option<&[Target]>)> {
        self.entries
            .get(package_of(archive))
            .map(|(bound, targets)| (bound, targets.as_deref()))
    }

    /// Fails if an entry bounds a package none of `linked` (archive names) comes from.
    pub fn check_used<'a>(
        &self,
        package: &str,
        linked: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BoundsError> {
        let linked: BTreeSet<&str> = linked.into_iter().map(package_of).collect();
        match self
            .entries
            .keys()
            .find(|key| !linked.contains(key.as_str()))
        {
            Some(library) => Err(BoundsError::Unused {
                package: package.to_owned(),
                library: library.clone(),
                linked: linked.into_iter().map(str::to_owned).collect(),
            }),
            None => Ok(()),
        }
    }
}

/// The package id an archive name stands for: an API input is named by it
/// (`courier:test.os`), a package's own API is `<package>/api.zip`, and a package file may keep
/// its `.zip`.
pub(crate) fn package_of(archive: &str) -> &str {
    let name = archive.strip_suffix("/api.zip").unwrap_or(archive);
    name.strip_suffix(".zip").unwrap_or(name)
}
