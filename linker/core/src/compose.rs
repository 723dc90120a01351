//! Composition: turning a resolution plan into one component with wac-graph's
//! `CompositionGraph`, libraries instantiated once each, in dependency order, and the result
//! validated, function bodies included, with the features of the world it will run in.
//!
//! The composed component is validated once, in place of wac-graph's own validation (which
//! would accept every proposal): when it fails, the root and each library are validated alone,
//! so the error names the file that is broken.

use std::sync::Arc;

use thiserror::Error;
use wac_graph::types::{Package, Types};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId, PackageId, Processor};

use crate::abilities;
use crate::hashing::{Bytes, Hasher, Pending};
use crate::inspect::{self, InspectError, Unit, World};
use crate::resolve::Catalog;
use crate::resolve::{Arg, Plan};
use crate::LinkError;

/// The composition engine refused the plan, or the composed component failed validation.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ComposeError {
    /// Building the composition graph failed.
    #[error("composing `{component}` failed: {reason}")]
    Graph {
        /// The package file being linked.
        component: String,
        /// The engine's complaint.
        reason: String,
    },
    /// The encoded component does not validate.
    #[error("the composition of `{component}` is not a valid component: {reason}")]
    Invalid {
        /// The package file being linked.
        component: String,
        /// The validator's complaint.
        reason: String,
    },
}

/// Composes `root` with the libraries of `plan` and validates the result for `world`. With a
/// `hasher`, the result is handed to it while it is validated, and its digest comes back
/// pending, for the caller to collect once it has done what else it can. The root's package
/// moves into the composition graph (whose types start as a copy of `types`, where it was
/// decoded), so a large component is neither copied nor decoded again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compose(
    component: &str,
    root: Unit,
    plan: &Plan,
    guards: &[Option<Vec<u8>>],
    catalog: &Catalog<'_>,
    types: &Types,
    world: World,
    hasher: Option<&Hasher<'_, '_>>,
) -> Result<(Arc<Vec<u8>>, Option<Pending>), LinkError> {
    let Unit {
        origin, package, ..
    } = root;
    let (graph, root_package, bytes) = encode(component, package, plan, guards, catalog, types)?;
    let bytes = Arc::new(bytes);
    let pending = hasher.map(|hasher| hasher.hash(Bytes::Shared(Arc::clone(&bytes))));
    let busy = usize::from(pending.as_ref().is_some_and(Pending::is_beside));
    let Err(reason) = inspect::validate_beside(&bytes, world, busy) else {
        return Ok((bytes, pending));
    };
    let parts = std::iter::once((&origin, graph[root_package].bytes())).chain(
        plan.instances.iter().map(|planned| {
            let unit = catalog.provider(planned.provider);
            (&unit.origin, unit.package.bytes())
        }),
    );
    for (origin, bytes) in parts {
        if let Err(reason) = inspect::validate(bytes, world) {
            return Err(InspectError::InvalidComponent {
                origin: origin.clone(),
                reason,
            }
            .into());
        }
    }
    Err(ComposeError::Invalid {
        component: component.to_owned(),
        reason,
    }
    .into())
}

/// Builds and encodes the composition graph, unvalidated; returns the graph, the root's package
/// in it, and the encoded component. A library with a guard gets the guard's `standard` in place
/// of the runtime's.
fn encode(
    component: &str,
    root: Package,
    plan: &Plan,
    guards: &[Option<Vec<u8>>],
    catalog: &Catalog<'_>,
    types: &Types,
) -> Result<(CompositionGraph, PackageId, Vec<u8>), ComposeError> {
    let fail = |reason: String| ComposeError::Graph {
        component: component.to_owned(),
        reason,
    };
    let mut graph = CompositionGraph::new();
    *graph.types_mut() = types.clone();
    // A library's package was decoded into `types`, which the graph's types copy: it is
    // registered as it is, not decoded again.
    let register = |graph: &mut CompositionGraph, unit: &Unit| {
        graph
            .register_package(unit.package.clone())
            .map_err(|error| fail(error.to_string()))
    };

    let mut instances: Vec<NodeId> = Vec::with_capacity(plan.instances.len());
    for (index, planned) in plan.instances.iter().enumerate() {
        let library = catalog.provider(planned.provider);
        let package = register(&mut graph, library)?;
        let instance = graph.instantiate(package);
        connect(&mut graph, instance, &planned.args, &instances).map_err(&fail)?;
        if let Some(guard) = guards.get(index).and_then(Option::as_deref) {
            guard_library(&mut graph, instance, index, guard, library).map_err(&fail)?;
        }
        instances.push(instance);
    }
    let package = graph
        .register_package(root)
        .map_err(|error| fail(error.to_string()))?;
    let instance = graph.instantiate(package);
    connect(&mut graph, instance, &plan.root_args, &instances).map_err(&fail)?;

    let exports: Vec<String> = graph.types()[graph[package].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in exports {
        let alias = graph
            .alias_instance_export(instance, &name)
            .map_err(|error| fail(error.to_string()))?;
        graph
            .export(alias, &name)
            .map_err(|error| fail(error.to_string()))?;
    }

    let options = EncodeOptions {
        processor: Some(Processor {
            name: "kinode-link",
            version: crate::VERSION,
        }),
        validate: false,
        ..EncodeOptions::default()
    };
    let bytes = graph
        .encode(options)
        .map_err(|error| fail(format!("{error:#}")))?;
    Ok((graph, package, bytes))
}

/// Instantiates a configured guard and feeds its `standard` export to the library `instance`
/// in place of the runtime's.
fn guard_library(
    graph: &mut CompositionGraph,
    instance: NodeId,
    index: usize,
    guard: &[u8],
    library: &Unit,
) -> Result<(), String> {
    let package = Package::from_bytes(&format!("guard{index}"), None, guard, graph.types_mut())
        .map_err(|error| format!("the guard for {}: {error:#}", library.origin))?;
    let package = graph
        .register_package(package)
        .map_err(|error| error.to_string())?;
    let guard = graph.instantiate(package);
    let exports: Vec<String> = graph.types()[graph[package].ty()]
        .exports
        .keys()
        .filter(|name| abilities::is_standard(name))
        .cloned()
        .collect();
    let [export] = exports.as_slice() else {
        return Err("the guard component exports no `standard`".to_owned());
    };
    let alias = graph
        .alias_instance_export(guard, export)
        .map_err(|error| error.to_string())?;
    let standard = library_standard(graph, instance)
        .ok_or_else(|| format!("{} imports no `standard` to guard", library.origin))?;
    graph
        .set_instantiation_argument(instance, &standard, alias)
        .map_err(|error| format!("guarding {}: {error:#}", library.origin))
}

/// The name under which the library `instance` imports `standard`.
fn library_standard(graph: &CompositionGraph, instance: NodeId) -> Option<String> {
    let package = graph[instance].package()?;
    graph.types()[graph[package].ty()]
        .imports
        .keys()
        .find(|name| abilities::is_standard(name))
        .cloned()
}

/// Feeds each argument's library export into `instance`.
fn connect(
    graph: &mut CompositionGraph,
    instance: NodeId,
    args: &[Arg],
    instances: &[NodeId],
) -> Result<(), String> {
    for arg in args {
        let alias = graph
            .alias_instance_export(instances[arg.instance], &arg.export)
            .map_err(|error| error.to_string())?;
        graph
            .set_instantiation_argument(instance, &arg.import, alias)
            .map_err(|error| format!("argument `{}`: {error:#}", arg.import))?;
    }
    Ok(())
}
