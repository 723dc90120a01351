//! Reports: what was linked, from what, and why; serialised as a linked package's `link.json`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::abilities::{describe, Ability};
use crate::bounds::Bound;
use crate::inspect::Origin;
use crate::package::CopiedFile;
use crate::resolve::{ImportReport, Outcome};

/// What a `.wasm` file is to its package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Role {
    /// A process in `manifest.json`.
    Process {
        /// Its process name.
        name: String,
    },
    /// A terminal script in `scripts.json`.
    Script,
    /// Any other component (a worker, for example).
    Component,
}

/// An input archive, by name and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The name the input was given under.
    pub name: String,
    /// Its SHA-256.
    pub sha256: String,
    /// For an API archive, why it was linked against (omitted when the user named it).
    #[serde(default, skip_serializing_if = "Source::is_given")]
    pub source: Source,
}

/// Why an API archive is among a link's inputs, so a person can see what was chosen for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Named by whoever asked for the link (a command-line argument, a request's `apis`).
    #[default]
    Given,
    /// A dependency the package declares in its `metadata.json`.
    Declared,
    /// Found on the node because it exports an interface that was imported.
    Found,
    /// The package's own `api.zip`.
    Own,
}

impl Source {
    /// Whether the user named the archive (the default, left out of `link.json`).
    pub fn is_given(&self) -> bool {
        *self == Source::Given
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Given => "given",
            Source::Declared => "declared",
            Source::Found => "found on the node",
            Source::Own => "the package's own API",
        })
    }
}

/// One component of the package, and every library import resolved for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// Its path in the package.
    pub path: String,
    /// What it is to the package.
    #[serde(flatten)]
    pub role: Role,
    /// SHA-256 of the component as it came in.
    pub sha256: String,
    /// SHA-256 of the linked component, if linking changed it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub linked_sha256: Option<String>,
    /// Its library imports and those of the libraries linked into it, in resolution order.
    pub imports: Vec<ImportReport>,
    /// Every library linked into it, in instantiation order: what each can do, and its bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libraries: Vec<LibraryReport>,
}

/// One library linked into a component: what its imports let it do as the component, and how
/// the package's `library-bounds.json` bounds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryReport {
    /// The library component.
    pub library: Origin,
    /// Who imports it: the component itself, or libraries that bring it in (nested).
    pub imported_by: Vec<Origin>,
    /// What it can do, from its imports.
    pub abilities: Vec<Ability>,
    /// The package's bound on it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
    /// Whether a guard enforces the bound's `send-to` while the process runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guarded: bool,
    /// Imports the bound forbids (only [`crate::explain`] reports them: linking fails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden: Vec<String>,
}

impl LibraryReport {
    /// What it can do, as a phrase: `spawn processes, send requests and responses`.
    pub fn can(&self) -> String {
        describe(&self.abilities)
    }

    /// The lines that show it, each starting with `indent`: what it can do, then (two spaces
    /// further in) its bound and what the bound forbids. The linker's scripts show a library with
    /// the same lines.
    pub fn lines(&self, indent: &str) -> Vec<String> {
        let mut lines = vec![format!(
            "{indent}{} ({}) can: {}",
            self.library.path,
            self.library.archive,
            self.can()
        )];
        if let Some(bound) = &self.bound {
            let mut limits = Vec::new();
            if let Some(may) = &bound.may {
                let names: Vec<&str> = may.iter().map(|ability| ability.name()).collect();
                limits.push(format!("may only: {}", names.join(", ")));
            }
            if let Some(targets) = &bound.send_to {
                let guard = if self.guarded {
                    ", enforced by a guard"
                } else {
                    ""
                };
                limits.push(format!("requests only to: {}{guard}", targets.join(", ")));
                let spawns = self.abilities.contains(&Ability::Spawn)
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
        if !self.forbidden.is_empty() {
            lines.push(format!(
                "{indent}  forbidden by library-bounds.json: {}",
                self.forbidden.join(", ")
            ));
        }
        lines
    }
}

impl fmt::Display for LibraryReport {
    /// `mathlib-api.wasm (mathlib:test.os) can: print to the terminal`, then its bound (see
    /// [`LibraryReport::lines`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines("").join("\n"))
    }
}

/// The record of one link: written into the linked package as `link.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// The linker that made it, `kinode-link <version>`.
    pub linker: String,
    /// The package that was linked.
    pub package: Digest,
    /// The API archives it was linked against, in the order given.
    pub apis: Vec<Digest>,
    /// Every component of the package, in path order.
    pub components: Vec<ComponentReport>,
    /// Files the API archives added to the package.
    pub copied: Vec<CopiedFile>,
}

impl ComponentReport {
    /// Whether linking changed the component.
    pub fn is_linked(&self) -> bool {
        self.linked_sha256.is_some()
    }
}

impl fmt::Display for ComponentReport {
    /// One line: the component, then each library import and the provider that satisfied it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_imports(f, &self.path, &self.imports)
    }
}

/// What [`compose`](crate::compose()) linked into one component. Unlike a [`ComponentReport`]
/// it carries no hash of the component: composing alone records nothing, so nothing is hashed
/// but the libraries that [`Outcome::Linked`] names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeReport {
    /// The component, as named.
    pub component: String,
    /// Its library imports and those of the libraries linked into it, in resolution order.
    pub imports: Vec<ImportReport>,
    /// Every library linked into it, in instantiation order, with what each can do.
    pub libraries: Vec<LibraryReport>,
}

impl fmt::Display for ComposeReport {
    /// One line, as [`ComponentReport`]'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_imports(f, &self.component, &self.imports)
    }
}

/// `path: import <- provider (archive), ...`, or `path: nothing to link`.
fn write_imports(f: &mut fmt::Formatter<'_>, path: &str, imports: &[ImportReport]) -> fmt::Result {
    write!(f, "{path}")?;
    if imports.is_empty() {
        return write!(f, ": nothing to link");
    }
    for (index, import) in imports.iter().enumerate() {
        let separator = if index == 0 { ":" } else { "," };
        write!(f, "{separator} {}", import.import)?;
        match &import.outcome {
            Outcome::Linked {
                provider, export, ..
            } => {
                write!(f, " <- {} ({})", provider.path, provider.archive)?;
                if *export != import.import {
                    write!(f, " as {export}")?;
                }
            }
            _ => write!(f, " <- unresolved")?,
        }
        if import.importer.path != path {
            write!(f, " [for {}]", import.importer.path)?;
        }
    }
    Ok(())
}

impl fmt::Display for LinkReport {
    /// One line per component, each followed by what its libraries can do (nested libraries
    /// indented under the library that brings them), then one line per file copied from an API.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for component in &self.components {
            lines.push(component.to_string());
            component.library_lines(&mut lines);
        }
        lines.extend(
            self.copied
                .iter()
                .map(|copied| format!("{}: copied from {}", copied.path, copied.from)),
        );
        f.write_str(&lines.join("\n"))
    }
}

impl ComponentReport {
    /// Appends one line per library, depth first from the component, each library once.
    pub fn library_lines(&self, lines: &mut Vec<String>) {
        let mut shown = Vec::new();
        for library in &self.libraries {
            if library.imported_by.iter().any(|by| by.path == self.path) {
                self.library_tree(library, 1, &mut shown, lines);
            }
        }
    }

    fn library_tree<'a>(
        &'a self,
        library: &'a LibraryReport,
        depth: usize,
        shown: &mut Vec<&'a Origin>,
        lines: &mut Vec<String>,
    ) {
        if shown.contains(&&library.library) {
            return;
        }
        shown.push(&library.library);
        lines.extend(library.lines(&"  ".repeat(depth)));
        for nested in &self.libraries {
            if nested.imported_by.contains(&library.library) {
                self.library_tree(nested, depth + 1, shown, lines);
            }
        }
    }
}

impl ImportReport {
    /// Whether a provider satisfies the import.
    pub fn is_linked(&self) -> bool {
        matches!(self.outcome, Outcome::Linked { .. })
    }
}
