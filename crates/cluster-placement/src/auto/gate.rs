//! Whether a run may start or continue now: pauses and the cooldown between runs.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_core::Result;

use super::Members;

/// Why nothing new may start now, if anything, checked in this order: version skew in the
/// membership (a rolling upgrade), a member shutting down, a node being drained (`draining`),
/// outside every maintenance window (`in_window`, asked only when nothing earlier pauses; its
/// error is returned), auto-rebalance disabled.
pub fn pause_reason(
    members: &Members,
    draining: bool,
    in_window: impl FnOnce() -> Result<bool>,
    enabled: bool,
) -> Result<Option<String>> {
    let versions: BTreeSet<&str> = members
        .values()
        .map(|m| m.version.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    if versions.len() > 1 {
        let list: Vec<&str> = versions.into_iter().collect();
        return Ok(Some(format!(
            "version skew in membership ({}): rolling upgrade",
            list.join(", ")
        )));
    }
    if let Some(m) = members.values().find(|m| m.shutting_down) {
        return Ok(Some(format!("node {} is shutting down", m.node_id)));
    }
    if draining {
        return Ok(Some("a node is being drained".to_owned()));
    }
    if !in_window()? {
        return Ok(Some("outside every maintenance window".into()));
    }
    Ok((!enabled).then(|| "auto-rebalance is disabled".into()))
}

/// Whether the cooldown after the last run (`since_run_ended`; `None`: no run ended yet)
/// still holds off the next one.
pub fn cooling(since_run_ended: Option<Duration>, cooldown: Duration) -> bool {
    since_run_ended.is_some_and(|d| d < cooldown)
}
