//! The guard the linker composes between a library and the Kinode runtime when a package bounds
//! whom that library may message (README "Bounding a library").
//!
//! The guard component is built from `component/` by this crate's build script and shipped here
//! as bytes. It exports `kinode:process/standard@1.0.0` to the library and imports the runtime's:
//! every call passes through, except what would carry a message or a capability past the policy's
//! targets: requests, on-exit requests, and capabilities handed on or saved (README "Every way
//! out"). The policy is written into the component's placeholder by [`configure`]: the same
//! length, so the component stays valid and its layout unchanged.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The guard component, unconfigured (it allows no request until [`configure`]d).
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/linker-guard.wasm"));

/// The placeholder's size, marker included: the component's `CAPACITY`.
const CAPACITY: usize = 4096;
/// The placeholder's first bytes: the component's `MARKER`.
const MARKER: &[u8; 24] = b"\0linker-guard-policy-v1\0";

/// A process a bounded library may send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `library-package`: the processes of the library's own package, on this node.
    LibraryPackage,
    /// `spawned`: the processes the library spawned.
    Spawned,
    /// `[node@]process:package:publisher`, each part a name or `*`; without a node, this node.
    Process {
        /// `None` for this node, `Some("*")` for any node.
        node: Option<String>,
        /// The process name, or `*`.
        process: String,
        /// The package name, or `*`.
        package: String,
        /// The publisher, or `*`.
        publisher: String,
    },
}

/// A target that is not `library-package`, `spawned` or `[node@]process:package:publisher`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{target}` is not a target: write `library-package`, `spawned`, or `process:package:publisher` (optionally `node@` first), each part a name or `*`")]
pub struct TargetError {
    /// The target as written.
    pub target: String,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || TargetError {
            target: text.to_owned(),
        };
        match text {
            "library-package" => return Ok(Target::LibraryPackage),
            "spawned" => return Ok(Target::Spawned),
            _ => {}
        }
        let (node, process) = match text.split_once('@') {
            Some((node, process)) => (Some(node), process),
            None => (None, text),
        };
        let parts: Vec<&str> = process.split(':').collect();
        let valid = |part: &str| {
            !part.is_empty()
                && (part == "*"
                    || part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        };
        match (node, parts.as_slice()) {
            (node, [process, package, publisher])
                if node.is_none_or(valid)
                    && [process, package, publisher].iter().all(|p| valid(p)) =>
            {
                Ok(Target::Process {
                    node: node.map(str::to_owned),
                    process: (*process).to_owned(),
                    package: (*package).to_owned(),
                    publisher: (*publisher).to_owned(),
                })
            }
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::LibraryPackage => f.write_str("library-package"),
            Target::Spawned => f.write_str("spawned"),
            Target::Process {
                node,
                process,
                package,
                publisher,
            } => {
                if let Some(node) = node {
                    write!(f, "{node}@")?;
                }
                write!(f, "{process}:{package}:{publisher}")
            }
        }
    }
}

/// What one guard enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy<'a> {
    /// The library, as the denial line names it: `courier-api.wasm (courier:test.os)`.
    pub library: &'a str,
    /// The library's package id, `package:publisher`, for [`Target::LibraryPackage`].
    pub package: &'a str,
    /// Whom it may send requests to.
    pub targets: &'a [Target],
}

/// A policy that does not fit the guard.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GuardError {
    /// The policy text is longer than the guard's placeholder.
    #[error("the bounds for {library} take {size} bytes, more than the {capacity} a guard holds: allow fewer targets (a `*` pattern covers many)")]
    TooLarge {
        /// The library.
        library: String,
        /// The policy's size.
        size: usize,
        /// What fits.
        capacity: usize,
    },
    /// A name in the policy has a line break, which the policy format cannot carry.
    #[error("the library name `{name}` cannot be written into a guard")]
    BadName {
        /// The name.
        name: String,
    },
}

/// The guard component with `policy` written into it.
pub fn configure(policy: &Policy<'_>) -> Result<Vec<u8>, GuardError> {
    for name in [policy.library, policy.package] {
        if name.contains(['\n', '\r']) {
            return Err(GuardError::BadName {
                name: name.to_owned(),
            });
        }
    }
    let mut text = format!("library {}\npackage {}\n", policy.library, policy.package);
    for target in policy.targets {
        // The component reads `node@process:package:publisher`, an empty node meaning this one.
        let line = match target {
            Target::Process { node: None, .. } => format!("allow @{target}\n"),
            _ => format!("allow {target}\n"),
        };
        text.push_str(&line);
    }
    let capacity = CAPACITY - MARKER.len() - 4;
    let length = u32::try_from(text.len())
        .ok()
        .filter(|length| (*length as usize) <= capacity)
        .ok_or_else(|| GuardError::TooLarge {
            library: policy.library.to_owned(),
            size: text.len(),
            capacity,
        })?;
    let mut bytes = COMPONENT.to_vec();
    let start = placeholder(&bytes) + MARKER.len();
    bytes[start..start + 4].copy_from_slice(&length.to_le_bytes());
    bytes[start + 4..start + 4 + text.len()].copy_from_slice(text.as_bytes());
    Ok(bytes)
}

/// Where the placeholder starts: the build guarantees exactly one marker followed by zeros.
fn placeholder(component: &[u8]) -> usize {
    component
        .windows(MARKER.len())
        .position(|window| window == MARKER)
        .expect("the guard component is built with its policy placeholder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_has_one_empty_placeholder() {
        let at = placeholder(COMPONENT);
        assert_eq!(
            COMPONENT
                .windows(MARKER.len())
                .filter(|window| window == MARKER)
                .count(),
            1
        );
        assert!(COMPONENT[at + MARKER.len()..at + CAPACITY]
            .iter()
            .all(|byte| *byte == 0));
    }

    #[test]
    fn targets_parse_and_print_back() {
        for text in [
            "library-package",
            "spawned",
            "depot:courier:test.os",
            "*:courier:test.os",
            "*@*:*:*",
            "node.os@depot:courier:test.os",
        ] {
            let target: Target = text.parse().expect(text);
            assert_eq!(target.to_string(), text);
        }
        for bad in [
            "",
            "depot",
            "depot:courier",
            "a:b:c:d",
            "x y:b:c",
            "@a:b:c",
            "a:b:",
        ] {
            assert_eq!(
                bad.parse::<Target>(),
                Err(TargetError {
                    target: bad.to_owned()
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn configuring_writes_the_policy_in_place() {
        let targets = [
            Target::LibraryPackage,
            "echo:echo:test.os".parse().expect("target"),
        ];
        let policy = Policy {
            library: "courier-api.wasm (courier:test.os)",
            package: "courier:test.os",
            targets: &targets,
        };
        let bytes = configure(&policy).expect("fits");
        assert_eq!(bytes.len(), COMPONENT.len());
        let at = placeholder(&bytes) + MARKER.len();
        let text = "library courier-api.wasm (courier:test.os)\npackage courier:test.os\nallow library-package\nallow @echo:echo:test.os\n";
        assert_eq!(bytes[at..at + 4], (text.len() as u32).to_le_bytes());
        assert_eq!(&bytes[at + 4..at + 4 + text.len()], text.as_bytes());
        only_the_placeholder_changed(&bytes);
    }

    /// The configured guard differs from the built one only inside the placeholder.
    fn only_the_placeholder_changed(bytes: &[u8]) {
        let at = placeholder(bytes);
        assert_eq!(bytes[..at], COMPONENT[..at]);
        assert_eq!(bytes[at + CAPACITY..], COMPONENT[at + CAPACITY..]);
    }

    #[test]
    fn too_many_targets_do_not_fit() {
        let targets: Vec<Target> = (0..400)
            .map(|n| {
                format!("process{n}:package:publisher.os")
                    .parse()
                    .expect("target")
            })
            .collect();
        let policy = Policy {
            library: "lib.wasm (lib:test.os)",
            package: "lib:test.os",
            targets: &targets,
        };
        assert!(matches!(
            configure(&policy),
            Err(GuardError::TooLarge { capacity: 4068, .. })
        ));
    }
}
