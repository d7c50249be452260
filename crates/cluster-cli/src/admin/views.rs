//! Platform-wide views built from the nodes' admin replies, and their JSON schemas
//! (documented in docs/CLI.md; every document has `"v": 1`).

use std::collections::BTreeMap;

use cluster::core::wire::admin::{AppInstance, AppView, NodeStatus, StatusReply};
use cluster::core::wire::member::MemberRecord;
use cluster::{AppName, Epoch, Mode, NodeId, PlatformName, Role};
use serde::Serialize;

use super::super::output::JSON_VERSION;

/// One app instance on one node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct InstanceSummary {
    pub(crate) node: NodeId,
    pub(crate) role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) epoch: Option<Epoch>,
    pub(crate) healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

impl InstanceSummary {
    pub(crate) fn from_instance(node: &NodeId, i: &AppInstance) -> Self {
        Self {
            node: node.clone(),
            role: i.role,
            epoch: i.epoch,
            healthy: i.health.healthy,
            reason: i.health.reason.clone(),
        }
    }
}

/// One app, platform-wide.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct AppSummary {
    pub(crate) name: AppName,
    pub(crate) mode: Mode,
    pub(crate) leader: Option<NodeId>,
    pub(crate) epoch: Option<Epoch>,
    /// While no node reports a valid lease: for how long (milliseconds, the shortest any node
    /// reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) no_leader_ms: Option<u64>,
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) instances: Vec<InstanceSummary>,
}

impl AppSummary {
    /// The leader column: the node, `no leader (since 4.2 s)`, or `-`.
    pub(crate) fn leader_text(&self) -> String {
        leader_text(self.leader.as_ref(), self.no_leader_ms)
    }
}

/// A leader for display: the node, `no leader (since 4.2 s)` when none is known, else `-`.
pub(crate) fn leader_text(leader: Option<&NodeId>, no_leader_ms: Option<u64>) -> String {
    match (leader, no_leader_ms) {
        (Some(l), _) => l.to_string(),
        (None, Some(ms)) => format!("no leader (since {:.1} s)", ms as f64 / 1000.0),
        (None, None) => "-".to_owned(),
    }
}

/// `cluster status --json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlatformStatus {
    pub(crate) v: u32,
    pub(crate) platform: PlatformName,
    pub(crate) members: Vec<MemberRecord>,
    pub(crate) apps: Vec<AppSummary>,
    pub(crate) nodes: Vec<NodeStatus>,
    /// Members that did not answer.
    pub(crate) unreachable: Vec<NodeId>,
}

/// Merges app views from several nodes: the union of nodes, and the leader of the newest
/// term any node reports.
pub(crate) fn merge_views(views: impl IntoIterator<Item = AppView>) -> BTreeMap<AppName, AppView> {
    let mut merged: BTreeMap<AppName, AppView> = BTreeMap::new();
    for v in views {
        match merged.get_mut(&v.name) {
            None => {
                merged.insert(v.name.clone(), v);
            }
            Some(m) => {
                for n in v.nodes {
                    if !m.nodes.contains(&n) {
                        m.nodes.push(n);
                    }
                }
                m.nodes.sort();
                if v.epoch > m.epoch && v.leader.is_some() {
                    m.leader = v.leader;
                    m.epoch = v.epoch;
                }
                m.no_leader_ms = match (m.no_leader_ms, v.no_leader_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if m.leader.is_some() {
                    m.no_leader_ms = None;
                }
            }
        }
    }
    merged
}

/// Builds the platform status from the `status` replies of the nodes that answered.
pub(crate) fn platform_status(
    platform: &PlatformName,
    replies: Vec<StatusReply>,
) -> PlatformStatus {
    let mut members: BTreeMap<NodeId, MemberRecord> = BTreeMap::new();
    for r in &replies {
        for m in &r.members {
            let newer = members
                .get(&m.node)
                .is_none_or(|old| old.last_seen_ms < m.last_seen_ms);
            if newer {
                members.insert(m.node.clone(), m.clone());
            }
        }
    }
    let views = merge_views(replies.iter().flat_map(|r| r.apps.clone()));
    let nodes: Vec<NodeStatus> = replies.iter().map(|r| r.node.clone()).collect();
    let apps = views
        .into_values()
        .map(|v| {
            let mut instances: Vec<InstanceSummary> = nodes
                .iter()
                .flat_map(|n| {
                    n.apps
                        .iter()
                        .filter(|a| a.name == v.name)
                        .map(|a| InstanceSummary::from_instance(&n.node, a))
                })
                .collect();
            instances.sort_by(|a, b| a.node.cmp(&b.node));
            AppSummary {
                name: v.name,
                mode: v.mode,
                leader: v.leader,
                epoch: v.epoch,
                no_leader_ms: v.no_leader_ms,
                nodes: v.nodes,
                instances,
            }
        })
        .collect();
    let unreachable = members
        .keys()
        .filter(|m| !nodes.iter().any(|n| &n.node == *m))
        .cloned()
        .collect();
    PlatformStatus {
        v: JSON_VERSION,
        platform: platform.clone(),
        members: members.into_values().collect(),
        apps,
        nodes,
        unreachable,
    }
}

/// The mode as one word for tables.
pub(crate) fn mode_word(mode: &Mode) -> String {
    mode.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view(leader: Option<&str>, epoch: Option<u64>, nodes: &[&str]) -> AppView {
        AppView {
            name: "db".parse().unwrap(),
            mode: Mode::Singleton,
            nodes: nodes.iter().map(|n| n.parse().unwrap()).collect(),
            leader: leader.map(|l| l.parse().unwrap()),
            epoch: epoch.map(Epoch),
            no_leader_ms: None,
        }
    }

    #[test]
    fn no_leader_shows_for_how_long() {
        let mut a = view(None, None, &["n1"]);
        a.no_leader_ms = Some(4_200);
        let mut b = view(None, None, &["n2"]);
        b.no_leader_ms = Some(6_000);
        let merged = merge_views([a, b]);
        let db = &merged[&"db".parse::<AppName>().unwrap()];
        assert_eq!(db.no_leader_ms, Some(4_200));
        assert_eq!(
            leader_text(db.leader.as_ref(), db.no_leader_ms),
            "no leader (since 4.2 s)"
        );
        let mut c = view(Some("n3"), Some(7), &["n3"]);
        c.no_leader_ms = None;
        let mut d = view(None, None, &["n1"]);
        d.no_leader_ms = Some(1);
        let merged = merge_views([d, c]);
        let db = &merged[&"db".parse::<AppName>().unwrap()];
        assert_eq!(
            (db.leader.as_ref().map(|l| l.as_str()), db.no_leader_ms),
            (Some("n3"), None)
        );
    }

    #[test]
    fn merging_keeps_the_newest_term_and_all_nodes() {
        let merged = merge_views([
            view(Some("n1"), Some(5), &["n1", "n2"]),
            view(Some("n2"), Some(9), &["n2", "n3"]),
            view(None, None, &["n1"]),
        ]);
        let db = &merged[&"db".parse::<AppName>().unwrap()];
        assert_eq!(db.leader.as_ref().unwrap().as_str(), "n2");
        assert_eq!(db.epoch, Some(Epoch(9)));
        assert_eq!(db.nodes.len(), 3);
    }
}
