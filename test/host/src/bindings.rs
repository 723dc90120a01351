//! Host bindings for kinode.wit v1.0.0, world `process-v1`, generated exactly as the Kinode runtime
//! generates them (the kinode repo's `lib/src/lib.rs`): `bindgen!` with `async: true` and
//! `trappable_imports: true`.
//!
//! `build.rs` takes the WIT from the kinode_process_lib 1.0.1 crate source and writes the
//! invocation to `$OUT_DIR/bindings.rs`. The interface lives at [`kinode::process::standard`];
//! [`ProcessV1`] instantiates a process and calls its `init`.

#![allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
