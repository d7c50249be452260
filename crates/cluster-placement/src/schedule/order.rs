//! Processing order: an app's `WithApp`/`AwayFromApp` targets are placed before it.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::AppName;

use crate::model::AppSpec;

/// Topological order (ties by name) and the apps caught in or behind a dependency cycle.
pub(crate) fn dependency_order<'a>(
    specs: &BTreeMap<&'a AppName, &'a AppSpec>,
) -> (Vec<&'a AppName>, Vec<(&'a AppName, String)>) {
    // deps[a] = registered apps a must wait for.
    let mut waiting: BTreeMap<&AppName, BTreeSet<&AppName>> = BTreeMap::new();
    let mut dependents: BTreeMap<&AppName, Vec<&AppName>> = BTreeMap::new();
    for (name, spec) in specs {
        let deps: BTreeSet<&AppName> = spec
            .constraints
            .iter()
            .filter_map(|c| c.dependency())
            .filter_map(|d| specs.get_key_value(d).map(|(k, _)| *k))
            .collect();
        for d in &deps {
            dependents.entry(d).or_default().push(name);
        }
        waiting.insert(name, deps);
    }
    let mut ready: BTreeSet<&AppName> = waiting
        .iter()
        .filter(|(_, d)| d.is_empty())
        .map(|(n, _)| *n)
        .collect();
    let mut order = Vec::with_capacity(specs.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        waiting.remove(next);
        for dep in dependents.get(next).into_iter().flatten() {
            if let Some(w) = waiting.get_mut(dep) {
                w.remove(next);
                if w.is_empty() {
                    ready.insert(dep);
                }
            }
        }
    }
    let stuck: Vec<&AppName> = waiting.keys().copied().collect();
    let names: Vec<&str> = stuck.iter().map(|a| a.as_str()).collect();
    let reason = format!(
        "WithApp/AwayFromApp dependency cycle among: {}",
        names.join(", ")
    );
    let blocked = stuck.into_iter().map(|a| (a, reason.clone())).collect();
    (order, blocked)
}
