//! Placement metrics and audit derived from assignments (gauges on every node, rebalance and
//! constraint events on the controller).

use std::collections::{BTreeMap, BTreeSet};

use crate::platform::Shared;
use cluster_core::audit::category::PLACEMENT;
use cluster_core::id::{AppName, NodeId};
use cluster_core::member::Member;
use cluster_core::mode::Mode;
use cluster_core::wire::placement::AssignmentRecord;

/// Sets the placement gauges from the assignment every node sees.
pub(super) fn gauges(
    record: &AssignmentRecord,
    members: &BTreeMap<NodeId, Member>,
    modes: &BTreeMap<AppName, Mode>,
) {
    let mut apps: BTreeSet<&AppName> = record.assignment.apps.keys().collect();
    apps.extend(record.pending.keys());
    apps.extend(modes.keys());
    for app in apps {
        let placed = record
            .assignment
            .apps
            .get(app)
            .map(|p| p.nodes.len())
            .unwrap_or(0);
        let pending = record.pending.contains_key(app);
        let short = match modes.get(app) {
            Some(Mode::Replicas { n }) => (*n as usize).saturating_sub(placed),
            _ => 0,
        };
        let violations = if pending { short.max(1) } else { short };
        crate::metrics::placement(app.as_str(), pending, violations);
    }
    let mut counts: BTreeMap<&NodeId, usize> = members.keys().map(|n| (n, 0)).collect();
    for p in record.assignment.apps.values() {
        for n in &p.nodes {
            *counts.entry(n).or_default() += 1;
        }
    }
    for (node, count) in &counts {
        crate::metrics::node_app_count(node.as_str(), *count);
    }
    crate::metrics::imbalance(imbalance(counts.values().copied()));
}

/// Max over mean of the per-node counts (0 when nothing is placed).
pub(super) fn imbalance(counts: impl Iterator<Item = usize>) -> f64 {
    let counts: Vec<usize> = counts.collect();
    let total: usize = counts.iter().sum();
    if total == 0 || counts.is_empty() {
        return 0.0;
    }
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    max / (total as f64 / counts.len() as f64)
}

/// The controller wrote `new` over `old`: count and audit the rebalance, and audit apps that
/// became unplaceable.
pub(super) fn assignment_written(
    shared: &Shared,
    old: Option<&AssignmentRecord>,
    new: &AssignmentRecord,
    reason: &'static str,
) {
    let changed = old.is_none_or(|o| o.assignment != new.assignment);
    if changed {
        crate::metrics::rebalance(reason);
        let mut changes = Vec::new();
        for (app, p) in &new.assignment.apps {
            let before: Vec<&NodeId> = old
                .and_then(|o| o.assignment.apps.get(app))
                .map(|p| p.nodes.iter().collect())
                .unwrap_or_default();
            let after: Vec<&NodeId> = p.nodes.iter().collect();
            if before != after {
                changes.push(serde_json::json!({"app": app, "from": before, "to": after}));
            }
        }
        shared.audit(
            PLACEMENT,
            "rebalance.triggered",
            None,
            serde_json::json!({
                "version": new.assignment.version,
                "reason": reason,
                "trigger": "automatic",
                "changes": changes,
            }),
        );
    }
    for (app, why) in &new.pending {
        if old.and_then(|o| o.pending.get(app)) != Some(why) {
            shared.audit(
                PLACEMENT,
                "constraint.invalid",
                Some(app),
                serde_json::json!({"reason": why}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::imbalance;

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance([2, 2, 2].into_iter()), 1.0);
        assert_eq!(imbalance([3, 1, 2].into_iter()), 1.5);
        assert_eq!(imbalance([0, 0].into_iter()), 0.0);
    }
}
