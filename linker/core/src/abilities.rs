//! What a library can do as the process it is linked into, derived from its imports: each
//! `kinode:process/standard` function and each WASI package it imports grants an [`Ability`].
//! A linked library runs with its importer's identity and capabilities, so this is what
//! installing it lets it do.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use wac_graph::types::{ItemKind, Types};

use crate::inspect::Unit;

/// Something a linked library can do, in terms a person installing it understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ability {
    /// `send-request`, `send-requests`, `send-and-await-response`.
    SendRequests,
    /// `send-response`.
    SendResponses,
    /// `receive`: take messages sent to the process.
    Receive,
    /// `spawn`.
    Spawn,
    /// `our-capabilities`.
    ReadCapabilities,
    /// `save-capabilities`, `drop-capabilities`.
    ChangeCapabilities,
    /// `get-state`, `set-state`, `clear-state`.
    State,
    /// `has-blob`, `get-blob`, `last-blob`.
    Blobs,
    /// `print-to-terminal`.
    Print,
    /// `get-on-exit`, `set-on-exit`.
    OnExit,
    /// `wasi:filesystem`.
    Files,
    /// `wasi:clocks`.
    Clocks,
    /// `wasi:random`.
    Random,
    /// `wasi:cli`: environment, arguments, standard I/O, exit.
    Environment,
    /// `wasi:sockets`.
    Sockets,
    /// `wasi:io`: streams and polling.
    Streams,
}

impl Ability {
    /// Whether the ability lets a library make a message leave the process or hand on its
    /// capabilities, so that a `send-to` bound needs a guard on it (README "Every way out").
    pub fn reaches_out(self) -> bool {
        matches!(
            self,
            Ability::SendRequests
                | Ability::SendResponses
                | Ability::Spawn
                | Ability::ChangeCapabilities
                | Ability::OnExit
        )
    }

    /// Every ability, in the order reports list them.
    pub const ALL: [Ability; 16] = [
        Ability::SendRequests,
        Ability::SendResponses,
        Ability::Receive,
        Ability::Spawn,
        Ability::ReadCapabilities,
        Ability::ChangeCapabilities,
        Ability::State,
        Ability::Blobs,
        Ability::Print,
        Ability::OnExit,
        Ability::Files,
        Ability::Clocks,
        Ability::Random,
        Ability::Environment,
        Ability::Sockets,
        Ability::Streams,
    ];

    /// Its name in `library-bounds.json` and `link.json`, e.g. `send-requests`.
    pub fn name(self) -> &'static str {
        match self {
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

    /// What it lets the library do, as a phrase: `spawn processes`.
    pub fn phrase(self) -> &'static str {
        match self {
            Ability::SendRequests => "send requests",
            Ability::SendResponses => "send responses",
            Ability::Receive => "receive your messages",
            Ability::Spawn => "spawn processes",
            Ability::ReadCapabilities => "read your capabilities",
            Ability::ChangeCapabilities => "change your capabilities",
            Ability::State => "read and change your saved state",
            Ability::Blobs => "read message blobs",
            Ability::Print => "print to the terminal",
            Ability::OnExit => "change what happens when your process exits",
            Ability::Files => "use files",
            Ability::Clocks => "read clocks",
            Ability::Random => "get random numbers",
            Ability::Environment => "read its environment and use standard I/O",
            Ability::Sockets => "open network sockets",
            Ability::Streams => "use I/O streams",
        }
    }

    /// The ability a `kinode:process/standard` function grants (`our` grants none).
    fn of_standard(function: &str) -> Option<Ability> {
        Some(match function {
            "send-request" | "send-requests" | "send-and-await-response" => Ability::SendRequests,
            "send-response" => Ability::SendResponses,
            "receive" => Ability::Receive,
            "spawn" => Ability::Spawn,
            "our-capabilities" => Ability::ReadCapabilities,
            "save-capabilities" | "drop-capabilities" => Ability::ChangeCapabilities,
            "get-state" | "set-state" | "clear-state" => Ability::State,
            "has-blob" | "get-blob" | "last-blob" => Ability::Blobs,
            "print-to-terminal" => Ability::Print,
            "get-on-exit" | "set-on-exit" => Ability::OnExit,
            _ => return None,
        })
    }

    /// The ability a WASI package grants: `wasi:filesystem/types@0.2.0` is [`Ability::Files`].
    fn of_wasi(import: &str) -> Option<Ability> {
        let package = import
            .split_once('/')
            .map_or(import, |(package, _)| package);
        Some(match package {
            "wasi:filesystem" => Ability::Files,
            "wasi:clocks" => Ability::Clocks,
            "wasi:random" => Ability::Random,
            "wasi:cli" => Ability::Environment,
            "wasi:sockets" => Ability::Sockets,
            "wasi:io" => Ability::Streams,
            _ => return None,
        })
    }
}

impl fmt::Display for Ability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an import is the runtime's `standard` interface.
pub(crate) fn is_standard(import: &str) -> bool {
    import.starts_with("kinode:process/standard@")
}

/// Each ability a component's imports grant, with the imports that grant it (a `standard`
/// function by its name, `spawn`; a WASI interface by its full name).
pub(crate) fn granted(unit: &Unit, types: &Types) -> BTreeMap<Ability, Vec<String>> {
    let mut granted: BTreeMap<Ability, Vec<String>> = BTreeMap::new();
    for (name, kind) in unit.imports(types) {
        if is_standard(name) {
            if let ItemKind::Instance(id) = kind {
                for function in types[id].exports.keys() {
                    if let Some(ability) = Ability::of_standard(function) {
                        granted.entry(ability).or_default().push(function.clone());
                    }
                }
            }
        } else if let Some(ability) = Ability::of_wasi(name) {
            granted.entry(ability).or_default().push(name.to_owned());
        }
    }
    granted
}

/// The abilities as one phrase: `spawn processes, send requests and responses` (the two kinds
/// of sending read as one). Empty abilities read `nothing beyond computing`.
pub fn describe(abilities: &[Ability]) -> String {
    let sends = abilities.contains(&Ability::SendRequests);
    let responds = abilities.contains(&Ability::SendResponses);
    let phrases: Vec<&str> = abilities
        .iter()
        .filter_map(|ability| match ability {
            Ability::SendRequests if responds => Some("send requests and responses"),
            Ability::SendResponses if sends => None,
            other => Some(other.phrase()),
        })
        .collect();
    if phrases.is_empty() {
        "nothing beyond computing".to_owned()
    } else {
        phrases.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_join_sending_and_keep_order() {
        assert_eq!(
            describe(&[
                Ability::SendRequests,
                Ability::SendResponses,
                Ability::Spawn,
                Ability::ReadCapabilities
            ]),
            "send requests and responses, spawn processes, read your capabilities"
        );
        assert_eq!(describe(&[Ability::SendResponses]), "send responses");
        assert_eq!(describe(&[]), "nothing beyond computing");
    }

    #[test]
    fn names_round_trip_through_serde() {
        for ability in Ability::ALL {
            let json = serde_json::to_string(&ability).expect("serialises");
            assert_eq!(json, format!("\"{}\"", ability.name()));
            assert_eq!(
                serde_json::from_str::<Ability>(&json).expect("parses"),
                ability
            );
        }
    }

    #[test]
    fn every_standard_function_but_our_grants_an_ability() {
        for function in [
            "print-to-terminal",
            "get-on-exit",
            "set-on-exit",
            "get-state",
            "set-state",
            "clear-state",
            "spawn",
            "save-capabilities",
            "drop-capabilities",
            "our-capabilities",
            "receive",
            "has-blob",
            "get-blob",
            "last-blob",
            "send-request",
            "send-requests",
            "send-response",
            "send-and-await-response",
        ] {
            assert!(Ability::of_standard(function).is_some(), "{function}");
        }
        assert_eq!(Ability::of_standard("our"), None);
        assert_eq!(
            Ability::of_wasi("wasi:filesystem/preopens@0.2.0"),
            Some(Ability::Files)
        );
    }
}
