//! The audit of one component's libraries: for every library instance of its plan, what the
//! library can do ([`crate::abilities`]), whether the package's bounds forbid any of its
//! imports, and the guard its bound needs while the process runs ([`crate::bounds`]).

use linker_guard::{GuardError, Policy};
use wac_graph::types::Types;

use crate::abilities::{self, Ability};
use crate::bounds::{self, package_of, Bounds, Forbidden};
use crate::inspect::Unit;
use crate::report::LibraryReport;
use crate::resolve::{Catalog, Plan};

/// What the audit found.
pub(crate) struct Audit {
    /// One report per library instance, in plan order.
    pub libraries: Vec<LibraryReport>,
    /// Every import a bound forbids.
    pub forbidden: Vec<Forbidden>,
    /// Per library instance, the guard to put between it and the runtime, configured.
    pub guards: Vec<Option<Vec<u8>>>,
}

/// Audits the libraries of `plan` for `component` (whose decoded root is `root`). Guards are
/// configured only when `guards` is set (linking; explaining needs only the reports).
pub(crate) fn audit(
    component: &str,
    root: &Unit,
    plan: &Plan,
    catalog: &Catalog<'_>,
    types: &Types,
    bounds: &Bounds,
    guards: bool,
) -> Result<Audit, GuardError> {
    let mut audit = Audit {
        libraries: Vec::with_capacity(plan.instances.len()),
        forbidden: Vec::new(),
        guards: Vec::with_capacity(plan.instances.len()),
    };
    for (index, planned) in plan.instances.iter().enumerate() {
        let unit = catalog.provider(planned.provider);
        let mut imported_by = Vec::new();
        if plan.root_args.iter().any(|arg| arg.instance == index) {
            imported_by.push(root.origin.clone());
        }
        for other in &plan.instances {
            if other.args.iter().any(|arg| arg.instance == index) {
                let importer = &catalog.provider(other.provider).origin;
                if !imported_by.contains(importer) {
                    imported_by.push(importer.clone());
                }
            }
        }
        let granted = abilities::granted(unit, types);
        let abilities: Vec<Ability> = granted.keys().copied().collect();
        let bound = bounds.of(&unit.origin.archive);
        let mut forbidden = Vec::new();
        if let Some((bound, _)) = bound {
            for (ability, imports) in &granted {
                let Some(reason) = bounds::forbids(bound, *ability) else {
                    continue;
                };
                forbidden.extend(imports.iter().cloned());
                audit.forbidden.push(Forbidden {
                    component: component.to_owned(),
                    library: unit.origin.clone(),
                    imports: imports.clone(),
                    ability: *ability,
                    may: bound.may.iter().flatten().copied().collect(),
                    send_to: bound.send_to.clone().unwrap_or_default(),
                    reason,
                });
            }
        }
        let targets = bound.and_then(|(_, targets)| targets);
        let guarded = targets.is_some() && granted.keys().any(|ability| ability.reaches_out());
        let guard = match targets {
            Some(targets) if guarded && guards => {
                let package = package_of(&unit.origin.archive);
                Some(linker_guard::configure(&Policy {
                    library: &format!("{} ({package})", unit.origin.path),
                    package,
                    targets,
                })?)
            }
            _ => None,
        };
        audit.guards.push(guard);
        audit.libraries.push(LibraryReport {
            library: unit.origin.clone(),
            imported_by,
            abilities,
            bound: bound.map(|(bound, _)| bound.clone()),
            guarded,
            forbidden,
        });
    }
    Ok(audit)
}
