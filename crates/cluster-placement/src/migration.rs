//! Migrations: the difference between two assignments, as steps a node agent can execute.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::{AppName, Mode, NodeId};
use serde::{Deserialize, Serialize};

use crate::{AppPlacement, Assignment};

/// What a migration does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MigrationKind {
    /// Start an instance on `to`.
    Start,
    /// Stop the instance on `from`.
    Stop,
    /// Replace the instance on `from` by one on `to` (start new, wait healthy, stop old).
    Move,
    /// Hand Singleton leadership from `from` to `to`.
    Leader,
    /// Hand these Ring partitions from `from` (or from nobody) to `to`.
    Partitions {
        /// Partition numbers, ascending.
        partitions: Vec<u32>,
    },
}

/// One step from the current to the desired placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The app.
    pub app: AppName,
    /// Source node (`None` for a start or a first partition grant).
    pub from: Option<NodeId>,
    /// Target node (`None` for a stop).
    pub to: Option<NodeId>,
    /// What happens.
    pub kind: MigrationKind,
}

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let node = |n: &Option<NodeId>| n.as_ref().map_or("-".to_string(), |n| n.to_string());
        let kind = match &self.kind {
            MigrationKind::Start => "start".to_string(),
            MigrationKind::Stop => "stop".to_string(),
            MigrationKind::Move => "move".to_string(),
            MigrationKind::Leader => "leader".to_string(),
            MigrationKind::Partitions { partitions } => format!("{} partitions", partitions.len()),
        };
        write!(
            f,
            "{} {kind} {} -> {}",
            self.app,
            node(&self.from),
            node(&self.to)
        )
    }
}

/// The migrations that turn `current` into `desired`; `modes` tells Singleton apps apart
/// (leader changes) and Ring apps (partition handoffs). Apps are visited in name order.
pub fn diff(
    current: &Assignment,
    desired: &Assignment,
    modes: &BTreeMap<AppName, Mode>,
) -> Vec<Migration> {
    let empty = AppPlacement::default();
    let names: BTreeSet<&AppName> = current.apps.keys().chain(desired.apps.keys()).collect();
    let mut out = Vec::new();
    for app in names {
        let old = current.apps.get(app).unwrap_or(&empty);
        let new = desired.apps.get(app).unwrap_or(&empty);
        diff_app(app, old, new, modes.get(app), &mut out);
    }
    out
}

fn diff_app(
    app: &AppName,
    old: &AppPlacement,
    new: &AppPlacement,
    mode: Option<&Mode>,
    out: &mut Vec<Migration>,
) {
    let m = |from: Option<&NodeId>, to: Option<&NodeId>, kind| Migration {
        app: app.clone(),
        from: from.cloned(),
        to: to.cloned(),
        kind,
    };
    let removed: Vec<&NodeId> = old.nodes.iter().filter(|n| !new.contains(n)).collect();
    let added: Vec<&NodeId> = new.nodes.iter().filter(|n| !old.contains(n)).collect();
    match mode {
        Some(Mode::Singleton) => {
            if let (Some(a), Some(b)) = (old.leader(), new.leader())
                && a != b
            {
                out.push(m(Some(a), Some(b), MigrationKind::Leader));
            }
            out.extend(added.iter().map(|n| m(None, Some(n), MigrationKind::Start)));
            out.extend(
                removed
                    .iter()
                    .map(|n| m(Some(n), None, MigrationKind::Stop)),
            );
        }
        Some(Mode::Replicas { .. }) | Some(Mode::Spread) => {
            let pairs = removed.len().min(added.len());
            for i in 0..pairs {
                out.push(m(Some(removed[i]), Some(added[i]), MigrationKind::Move));
            }
            out.extend(
                added[pairs..]
                    .iter()
                    .map(|n| m(None, Some(n), MigrationKind::Start)),
            );
            out.extend(
                removed[pairs..]
                    .iter()
                    .map(|n| m(Some(n), None, MigrationKind::Stop)),
            );
        }
        Some(Mode::Ring { .. }) | None => {
            out.extend(added.iter().map(|n| m(None, Some(n), MigrationKind::Start)));
            let mut handoffs: BTreeMap<(Option<&NodeId>, &NodeId), Vec<u32>> = BTreeMap::new();
            if let Some(new_parts) = &new.partitions {
                let old_parts = old
                    .partitions
                    .as_ref()
                    .filter(|o| o.len() == new_parts.len());
                for (p, to) in new_parts.iter().enumerate() {
                    let from = old_parts.map(|o| &o[p]);
                    if from != Some(to) {
                        handoffs.entry((from, to)).or_default().push(p as u32);
                    }
                }
            }
            for ((from, to), partitions) in handoffs {
                out.push(m(from, Some(to), MigrationKind::Partitions { partitions }));
            }
            out.extend(
                removed
                    .iter()
                    .map(|n| m(Some(n), None, MigrationKind::Stop)),
            );
        }
    }
}
