//! Resolution: for every library import of a component, the provider that satisfies it; then
//! the providers' own imports, to any depth, with one instance per library per component.
//!
//! Rules (DESIGN.md step 4): an export of exactly the imported name wins; failing that, the
//! highest semver-compatible version. The chosen export must be a subtype of the import: a
//! mismatch is an error, never a silent skip. Two different providers at the best version are
//! ambiguous. A library that needs itself, directly or not, is a cycle. Every problem is
//! collected, so one run reports all of them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wac_graph::types::{are_semver_compatible, ItemKind, SubtypeChecker, Types};

use crate::inspect::{Origin, Unit, World};
use crate::report::Source;

/// What became of one library import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// A provider satisfies it.
    Linked {
        /// The library component.
        provider: Origin,
        /// The provider's export used (differs from the import when matched by semver).
        export: String,
        /// SHA-256 of the provider component; empty from [`compose`](crate::compose()), which
        /// records nothing.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sha256: String,
        /// Whether the match was semver-compatible rather than exact.
        semver: bool,
        /// Why the provider's archive was an input (omitted when the user named it).
        #[serde(default, skip_serializing_if = "Source::is_given")]
        source: Source,
    },
    /// No provider exports this interface at a compatible version.
    Unmatched {
        /// Exports of the same interface at incompatible versions, as `name in archive`.
        near: Vec<String>,
    },
    /// The best provider's export has the wrong type.
    Rejected {
        /// The library component.
        provider: Origin,
        /// Its export.
        export: String,
        /// The first difference the type checker found.
        reason: String,
    },
    /// Several different providers export it at the same best version.
    Ambiguous {
        /// The export name they share.
        export: String,
        /// The competing library components.
        candidates: Vec<Origin>,
    },
    /// The provider needs, directly or through others, the library that imports from it.
    Cycle {
        /// The libraries in the cycle, first repeated last.
        path: Vec<Origin>,
    },
    /// No provider, and the world allows the import to stay an import.
    Left,
}

/// One library import of a component or of a library linked into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The component that declares the import.
    pub importer: Origin,
    /// The import's full name, e.g. `kinode:process/mathlib@1.0.0`.
    pub import: String,
    /// What the linker did with it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// An import that cannot be linked; `component` is the package file being linked.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Nothing exports the import at a compatible version.
    #[error(
        "linking `{component}`: {importer} imports `{import}`, and none of the APIs it is linked against provides it{}",
        near_note(near)
    )]
    NoProvider {
        /// The package file being linked.
        component: String,
        /// The component that declares the import.
        importer: Origin,
        /// The import.
        import: String,
        /// Incompatible versions of the same interface that were found.
        near: Vec<String>,
    },
    /// The chosen provider's export does not have the imported type.
    #[error("linking `{component}`: {importer} imports `{import}`, but `{export}` from {provider} has a different type: {reason}")]
    TypeMismatch {
        /// The package file being linked.
        component: String,
        /// The component that declares the import.
        importer: Origin,
        /// The import.
        import: String,
        /// The provider.
        provider: Origin,
        /// The provider's export.
        export: String,
        /// The first difference found.
        reason: String,
    },
    /// Several providers fit equally well.
    #[error("linking `{component}`: {importer} imports `{import}`, which {} all export; pass only one of them", list(candidates))]
    Ambiguous {
        /// The package file being linked.
        component: String,
        /// The component that declares the import.
        importer: Origin,
        /// The import.
        import: String,
        /// The competing providers.
        candidates: Vec<Origin>,
    },
    /// Libraries that import each other.
    #[error("linking `{component}`: libraries import each other in a cycle: {}", path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// The package file being linked.
        component: String,
        /// The cycle, first library repeated last.
        path: Vec<Origin>,
    },
}

fn near_note(near: &[String]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        format!(" (found only incompatible versions: {})", near.join(", "))
    }
}

fn list(origins: &[Origin]) -> String {
    origins
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Every provider's exports, indexed by name; providers with identical bytes count once.
pub(crate) struct Catalog<'u> {
    providers: Vec<&'u Unit>,
    exports: BTreeMap<String, Vec<(usize, ItemKind)>>,
    /// Whether [`Outcome::Linked`] names its provider's SHA-256 (a link's record needs it).
    hashes: bool,
}

impl<'u> Catalog<'u> {
    /// Indexes `units`, in order; a unit whose bytes equal an earlier one's is the same library.
    pub fn new(units: impl IntoIterator<Item = &'u Unit>, types: &Types) -> Catalog<'u> {
        let mut providers: Vec<&Unit> = Vec::new();
        let mut exports: BTreeMap<String, Vec<(usize, ItemKind)>> = BTreeMap::new();
        for unit in units {
            if providers
                .iter()
                .any(|known| known.package.bytes() == unit.package.bytes())
            {
                continue;
            }
            for (name, kind) in unit.exports(types) {
                exports
                    .entry(name.to_owned())
                    .or_default()
                    .push((providers.len(), kind));
            }
            providers.push(unit);
        }
        Catalog {
            providers,
            exports,
            hashes: true,
        }
    }

    /// The same catalog for a composition, which records nothing: [`Outcome::Linked`] leaves
    /// the provider's SHA-256 empty, so no library is hashed.
    pub fn without_hashes(self) -> Catalog<'u> {
        Catalog {
            hashes: false,
            ..self
        }
    }

    /// The provider with this index.
    pub fn provider(&self, index: usize) -> &'u Unit {
        self.providers[index]
    }

    /// The providers that export `import` best: exact name, else the highest compatible version.
    fn candidates(&self, import: &str) -> (Vec<(usize, &str, ItemKind)>, bool) {
        if let Some((name, found)) = self.exports.get_key_value(import) {
            return (
                found.iter().map(|&(p, k)| (p, name.as_str(), k)).collect(),
                false,
            );
        }
        let mut best: Option<Version> = None;
        let mut chosen = Vec::new();
        for (name, found) in &self.exports {
            if !are_semver_compatible(name, import) {
                continue;
            }
            let Some(version) = version_of(name) else {
                continue;
            };
            if best.as_ref().is_none_or(|best| version > *best) {
                best = Some(version);
                chosen.clear();
            } else if best.as_ref() != Some(&version) {
                continue;
            }
            chosen.extend(found.iter().map(|&(p, k)| (p, name.as_str(), k)));
        }
        (chosen, true)
    }

    /// Exports of the same interface at other, incompatible versions.
    fn near(&self, import: &str) -> Vec<String> {
        let base = unversioned(import);
        self.exports
            .iter()
            .filter(|(name, _)| unversioned(name) == base && name.as_str() != import)
            .flat_map(|(name, found)| {
                found
                    .iter()
                    .map(move |(p, _)| format!("`{name}` from {}", self.providers[*p].origin))
            })
            .collect()
    }
}

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(base, _)| base)
}

fn version_of(name: &str) -> Option<Version> {
    Version::parse(name.split_once('@')?.1).ok()
}

/// One argument of an instantiation: `import` is satisfied by `export` of library instance
/// `instance`.
#[derive(Debug, Clone)]
pub(crate) struct Arg {
    pub import: String,
    pub instance: usize,
    pub export: String,
}

/// A library instance: which provider, and what it is instantiated with.
#[derive(Debug, Clone)]
pub(crate) struct PlannedInstance {
    pub provider: usize,
    pub args: Vec<Arg>,
}

/// How to build one linked component: library instances in dependency order (each after the
/// libraries it needs), then the root's arguments.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub instances: Vec<PlannedInstance>,
    pub root_args: Vec<Arg>,
}

/// The resolution of one component: a plan when every import resolved, and a report per
/// library import either way.
pub(crate) struct Resolution {
    pub plan: Plan,
    pub reports: Vec<ImportReport>,
}

impl Resolution {
    /// The problems, as errors naming `component`.
    pub fn errors(&self, component: &str) -> Vec<ResolveError> {
        let component = component.to_owned();
        self.reports
            .iter()
            .filter_map(|report| {
                let importer = report.importer.clone();
                let import = report.import.clone();
                let component = component.clone();
                Some(match &report.outcome {
                    Outcome::Linked { .. } | Outcome::Left => return None,
                    Outcome::Unmatched { near } => ResolveError::NoProvider {
                        component,
                        importer,
                        import,
                        near: near.clone(),
                    },
                    Outcome::Rejected {
                        provider,
                        export,
                        reason,
                    } => ResolveError::TypeMismatch {
                        component,
                        importer,
                        import,
                        provider: provider.clone(),
                        export: export.clone(),
                        reason: reason.clone(),
                    },
                    Outcome::Ambiguous { candidates, .. } => ResolveError::Ambiguous {
                        component,
                        importer,
                        import,
                        candidates: candidates.clone(),
                    },
                    Outcome::Cycle { path } => ResolveError::Cycle {
                        component,
                        path: path.clone(),
                    },
                })
            })
            .collect()
    }

    /// Whether the component needs no library at all.
    pub fn is_empty(&self) -> bool {
        self.plan.root_args.is_empty()
    }
}

enum State {
    Visiting,
    Done(usize),
    Failed,
}

/// Resolves the library imports of `root` against `catalog`.
pub(crate) fn resolve(
    root: &Unit,
    catalog: &Catalog<'_>,
    types: &Types,
    world: World,
) -> Resolution {
    let mut resolver = Resolver {
        catalog,
        types,
        world,
        states: BTreeMap::new(),
        stack: Vec::new(),
        plan: Plan::default(),
        reports: Vec::new(),
        cache: HashSet::new(),
    };
    let (root_args, _) = resolver.imports_of(root);
    resolver.plan.root_args = root_args;
    Resolution {
        plan: resolver.plan,
        reports: resolver.reports,
    }
}

struct Resolver<'c, 'u> {
    catalog: &'c Catalog<'u>,
    types: &'c Types,
    world: World,
    states: BTreeMap<usize, State>,
    stack: Vec<usize>,
    plan: Plan,
    reports: Vec<ImportReport>,
    cache: HashSet<(ItemKind, ItemKind)>,
}

impl Resolver<'_, '_> {
    /// Resolves every library import of `importer`; returns its arguments and whether all
    /// resolved (its libraries' imports included).
    fn imports_of(&mut self, importer: &Unit) -> (Vec<Arg>, bool) {
        let mut args = Vec::new();
        let mut complete = true;
        let imports: Vec<(String, ItemKind)> = importer
            .imports(self.types)
            .filter(|(name, _)| !self.world.is_host_import(name))
            .map(|(name, kind)| (name.to_owned(), kind))
            .collect();
        for (import, kind) in imports {
            let report_index = self.reports.len();
            let (outcome, chosen) = self.choose(&import, kind);
            let left = outcome == Outcome::Left;
            self.reports.push(ImportReport {
                importer: importer.origin.clone(),
                import: import.clone(),
                outcome,
            });
            let Some((provider, export)) = chosen else {
                complete &= left;
                continue;
            };
            match self.instance(provider) {
                Ok(Some(instance)) => args.push(Arg {
                    import,
                    instance,
                    export,
                }),
                Ok(None) => complete = false,
                Err(path) => {
                    self.reports[report_index].outcome = Outcome::Cycle { path };
                    complete = false;
                }
            }
        }
        (args, complete)
    }

    /// The instance of `provider`, created (after its own libraries) on first use; `Ok(None)`
    /// when its imports failed, `Err(path)` when it is already being resolved (a cycle).
    fn instance(&mut self, provider: usize) -> Result<Option<usize>, Vec<Origin>> {
        match self.states.get(&provider) {
            Some(State::Done(instance)) => return Ok(Some(*instance)),
            Some(State::Failed) => return Ok(None),
            Some(State::Visiting) => {
                let start = self
                    .stack
                    .iter()
                    .position(|&p| p == provider)
                    .unwrap_or_default();
                let path = self.stack[start..]
                    .iter()
                    .chain([&provider])
                    .map(|&p| self.catalog.provider(p).origin.clone())
                    .collect();
                return Err(path);
            }
            None => {}
        }
        self.states.insert(provider, State::Visiting);
        self.stack.push(provider);
        let unit = self.catalog.provider(provider);
        let (args, complete) = self.imports_of(unit);
        self.stack.pop();
        if !complete {
            self.states.insert(provider, State::Failed);
            return Ok(None);
        }
        let instance = self.plan.instances.len();
        self.plan.instances.push(PlannedInstance { provider, args });
        self.states.insert(provider, State::Done(instance));
        Ok(Some(instance))
    }

    /// Chooses the provider of one import: the outcome, and on success the provider's index
    /// and the export used.
    fn choose(&mut self, import: &str, kind: ItemKind) -> (Outcome, Option<(usize, String)>) {
        let (candidates, semver) = self.catalog.candidates(import);
        let Some(&(provider, export, export_kind)) = candidates.first() else {
            let outcome = match self.world {
                World::Any => Outcome::Left,
                World::Kinode => Outcome::Unmatched {
                    near: self.catalog.near(import),
                },
            };
            return (outcome, None);
        };
        if candidates.len() > 1 {
            let outcome = Outcome::Ambiguous {
                export: export.to_owned(),
                candidates: candidates
                    .iter()
                    .map(|(p, _, _)| self.catalog.provider(*p).origin.clone())
                    .collect(),
            };
            return (outcome, None);
        }
        let unit = self.catalog.provider(provider);
        let mut checker = SubtypeChecker::new(&mut self.cache);
        match checker.is_subtype(export_kind, self.types, kind, self.types) {
            Ok(()) => {
                let outcome = Outcome::Linked {
                    provider: unit.origin.clone(),
                    export: export.to_owned(),
                    sha256: if self.catalog.hashes {
                        unit.sha256().to_owned()
                    } else {
                        String::new()
                    },
                    semver,
                    source: Source::Given,
                };
                (outcome, Some((provider, export.to_owned())))
            }
            Err(error) => {
                let outcome = Outcome::Rejected {
                    provider: unit.origin.clone(),
                    export: export.to_owned(),
                    reason: format!("{error:#}"),
                };
                (outcome, None)
            }
        }
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Linked {
                provider, export, ..
            } if *export == self.import => write!(f, "{} -> {provider}", self.import),
            Outcome::Linked {
                provider, export, ..
            } => write!(f, "{} -> {provider} (as `{export}`)", self.import),
            Outcome::Unmatched { near } => {
                write!(f, "{} -> no provider{}", self.import, near_note(near))
            }
            Outcome::Rejected {
                provider,
                export,
                reason,
            } => write!(
                f,
                "{} -> rejected `{export}` from {provider}: {reason}",
                self.import
            ),
            Outcome::Ambiguous { candidates, .. } => {
                write!(f, "{} -> ambiguous: {}", self.import, list(candidates))
            }
            Outcome::Cycle { path } => write!(
                f,
                "{} -> cycle: {}",
                self.import,
                path.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
            Outcome::Left => write!(f, "{} -> left as an import", self.import),
        }
    }
}
