//! Verification: a linked component must be something the Kinode runtime can instantiate: it
//! imports only what the runtime provides, and a process exports `init: func(our: string)`.

use thiserror::Error;
use wac_graph::types::{ItemKind, PrimitiveType, Types, ValueType};
use wasmparser::{Parser, Payload};

use crate::inspect::{Unit, World};

/// A component the Kinode runtime would refuse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// After linking, imports remain that the runtime does not provide.
    #[error("`{component}` would still import {}, which the Kinode runtime does not provide (it provides kinode:process/standard@1.0.0 and WASI 0.2 only); a package built for an older runtime must be rebuilt", imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "))]
    ForbiddenImports {
        /// The package file.
        component: String,
        /// The imports the runtime cannot satisfy.
        imports: Vec<String>,
    },
    /// A process or script does not export the entry point the kernel calls.
    #[error("`{component}` is started as a process but does not export `init: func(our: string)`{}", found.as_ref().map(|f| format!(" (its `init` is {f})")).unwrap_or_default())]
    MissingInit {
        /// The package file.
        component: String,
        /// What its `init` export is instead, if it has one.
        found: Option<String>,
    },
    /// The linked bytes cannot be read back.
    #[error("the linked `{component}` cannot be read back: {reason}")]
    Unreadable {
        /// The package file.
        component: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// Checks that `unit`, a process or script, exports `init: func(our: string)`. Composition
/// re-exports the root's exports unchanged, so the root's type decides.
pub(crate) fn check_init(component: &str, unit: &Unit, types: &Types) -> Result<(), VerifyError> {
    let missing = |found: Option<&str>| VerifyError::MissingInit {
        component: component.to_owned(),
        found: found.map(str::to_owned),
    };
    let Some((_, kind)) = unit.exports(types).find(|(name, _)| *name == "init") else {
        return Err(missing(None));
    };
    let ItemKind::Func(id) = kind else {
        return Err(missing(Some(kind.desc(types))));
    };
    let func = &types[id];
    let takes_string = func.params.len() == 1
        && matches!(
            func.params.first(),
            Some((_, ValueType::Primitive(PrimitiveType::String)))
        );
    if !takes_string || func.result.is_some() || func.is_async {
        return Err(missing(Some("a function of another signature")));
    }
    Ok(())
}

/// Checks the imports of a component's final bytes against what the runtime provides.
pub(crate) fn check_imports(
    component: &str,
    bytes: &[u8],
    world: World,
) -> Result<(), VerifyError> {
    if world == World::Any {
        return Ok(());
    }
    let forbidden: Vec<String> = top_level_imports(bytes)
        .map_err(|reason| VerifyError::Unreadable {
            component: component.to_owned(),
            reason,
        })?
        .into_iter()
        .filter(|name| !World::runtime_provides(name))
        .collect();
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::ForbiddenImports {
            component: component.to_owned(),
            imports: forbidden,
        })
    }
}

/// The import names of the outermost component, skipping nested modules and components.
fn top_level_imports(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut parser = Parser::new(0);
    let mut rest = bytes;
    loop {
        let (payload, consumed) = match parser.parse(rest, true).map_err(|e| e.to_string())? {
            wasmparser::Chunk::Parsed { payload, consumed } => (payload, consumed),
            wasmparser::Chunk::NeedMoreData(_) => return Err("truncated".into()),
        };
        rest = &rest[consumed..];
        match payload {
            Payload::ComponentImportSection(section) => {
                for import in section {
                    names.push(import.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                let skip = usize::try_from(unchecked_range.end - unchecked_range.start)
                    .map_err(|e| e.to_string())?;
                rest = rest.get(skip..).ok_or("truncated nested section")?;
            }
            Payload::End(_) => return Ok(names),
            _ => {}
        }
    }
}
