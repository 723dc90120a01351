//! Reports: what was linked, from what, and why; serialised as a linked package's `link.json`.

use std::fmt;

use serde::{Deserialize, Serialize};

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
        write!(f, "{}", self.path)?;
        if self.imports.is_empty() {
            return write!(f, ": nothing to link");
        }
        for (index, import) in self.imports.iter().enumerate() {
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
            if import.importer.path != self.path {
                write!(f, " [for {}]", import.importer.path)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for LinkReport {
    /// One line per component, then one per file copied from an API archive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.components.iter().map(ToString::to_string).chain(
            self.copied
                .iter()
                .map(|copied| format!("{}: copied from {}", copied.path, copied.from)),
        );
        for (index, line) in lines.enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

impl ImportReport {
    /// Whether a provider satisfies the import.
    pub fn is_linked(&self) -> bool {
        matches!(self.outcome, Outcome::Linked { .. })
    }
}
