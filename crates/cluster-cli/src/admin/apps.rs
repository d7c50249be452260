//! `cluster app list` and `cluster app status`: where apps *run* (instances with a role other
//! than `stopped`, from every node's own report), why a pending app is not placed (the
//! controller's reason from the assignment record), and Ring partition ownership.

use std::collections::BTreeMap;

use cluster::core::wire::placement::AssignmentRecord;
use cluster::{AppName, Epoch, Mode, NodeId, Role};
use serde::Serialize;

use super::views::{AppSummary, InstanceSummary, leader_text};
use super::{
    AppStatusDoc, Channel, app_status_doc, gather_status, health_text, parse_app, placement,
};
use crate::exit::CliResult;
use crate::output::{JSON_VERSION, Table, dash, print_json};
use crate::settings::Settings;

/// One running instance in `app list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Running {
    pub(crate) node: NodeId,
    pub(crate) role: Role,
}

/// One app in `app list --json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct AppListEntry {
    pub(crate) name: AppName,
    pub(crate) mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) leader: Option<NodeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) epoch: Option<Epoch>,
    /// How long no valid lease has been seen (Singleton apps without a leader).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) no_leader_ms: Option<u64>,
    /// The nodes where an instance runs (any role but `stopped`).
    pub(crate) nodes: Vec<NodeId>,
    /// The running instances with their role.
    pub(crate) instances: Vec<Running>,
    /// Why the controller cannot place the app (pending apps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pending: Option<String>,
}

/// The `app list` entry of one app: only the instances that run, plus the pending reason.
pub(crate) fn list_entry(app: AppSummary, record: Option<&AssignmentRecord>) -> AppListEntry {
    let instances: Vec<Running> = app
        .instances
        .iter()
        .filter(|i| i.role != Role::Stopped)
        .map(|i| Running {
            node: i.node.clone(),
            role: i.role,
        })
        .collect();
    AppListEntry {
        pending: record.and_then(|r| r.pending.get(&app.name).cloned()),
        nodes: instances.iter().map(|i| i.node.clone()).collect(),
        instances,
        name: app.name,
        mode: app.mode,
        leader: app.leader,
        epoch: app.epoch,
        no_leader_ms: app.no_leader_ms,
    }
}

/// The `RUNNING ON` cell: nodes with their role for Singleton apps, the pending reason when
/// nothing runs.
fn running_cell(e: &AppListEntry) -> String {
    if e.instances.is_empty() {
        return match &e.pending {
            Some(reason) => format!("- (pending: {reason})"),
            None => "-".into(),
        };
    }
    let cells: Vec<String> = e
        .instances
        .iter()
        .map(|i| match i.role {
            Role::Leader | Role::Standby => format!("{} ({})", i.node, i.role),
            _ => i.node.to_string(),
        })
        .collect();
    cells.join(", ")
}

/// The controller's assignment record as seen by `node` (`None` when the node cannot tell,
/// e.g. before the controller's first write).
async fn assignment(
    settings: &Settings,
    channel: &Channel,
    node: Option<&NodeId>,
) -> Option<AssignmentRecord> {
    let node = node?;
    match placement::placement_status(settings, channel, node).await {
        Ok(st) => st.assignment,
        Err(e) => {
            tracing::debug!(%node, error = %e.message, "no placement status");
            None
        }
    }
}

/// `cluster app list`.
pub(crate) async fn app_list(settings: &Settings, channel: &Channel) -> CliResult {
    let st = gather_status(settings, channel).await?;
    let record = assignment(settings, channel, st.nodes.first().map(|n| &n.node)).await;
    let apps: Vec<AppListEntry> = st
        .apps
        .into_iter()
        .map(|a| list_entry(a, record.as_ref()))
        .collect();
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "apps": apps}));
    }
    let mut t = Table::new(&["APP", "MODE", "LEADER", "EPOCH", "RUNNING ON"]);
    for a in &apps {
        t.row(vec![
            a.name.to_string(),
            a.mode.to_string(),
            leader_text(a.leader.as_ref(), a.no_leader_ms),
            dash(a.epoch),
            running_cell(a),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `cluster app status --json`: the app, every instance, the pending reason and, for Ring
/// apps, partition counts per node (and the map with `--partitions`).
#[derive(Debug, Serialize)]
struct AppStatusOut {
    #[serde(flatten)]
    doc: AppStatusDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_counts: Option<BTreeMap<NodeId, usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<Vec<NodeId>>,
}

/// Partitions owned per node, from the partition → owner map.
pub(crate) fn partition_counts(map: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for owner in map {
        *counts.entry(owner.clone()).or_insert(0) += 1;
    }
    counts
}

/// `cluster app status <app> [--partitions]`.
pub(crate) async fn app_status(
    settings: &Settings,
    channel: &Channel,
    name: &str,
    show_map: bool,
) -> CliResult {
    let app = parse_app(name)?;
    let doc = app_status_doc(settings, channel, &app).await?;
    let asked = doc
        .app
        .nodes
        .first()
        .or(doc.instances.first().map(|i| &i.node));
    let record = assignment(settings, channel, asked).await;
    let pending = record.as_ref().and_then(|r| r.pending.get(&app).cloned());
    let map = record
        .as_ref()
        .and_then(|r| r.assignment.apps.get(&app))
        .and_then(|p| p.partitions.clone());
    let out = AppStatusOut {
        pending,
        partition_counts: map.as_deref().map(partition_counts),
        partitions: map.filter(|_| show_map),
        doc,
    };
    if settings.global.json {
        return print_json(&out);
    }
    print_status(&out);
    Ok(())
}

fn print_status(out: &AppStatusOut) {
    let a = &out.doc.app;
    println!("app {} ({})", a.name, a.mode);
    if a.mode == Mode::Singleton {
        println!(
            "leader: {}   epoch: {}",
            leader_text(a.leader.as_ref(), a.no_leader_ms),
            dash(a.epoch)
        );
    }
    if let Some(reason) = &out.pending {
        println!("pending: {reason}");
    }
    println!();
    let counts = out.partition_counts.as_ref();
    let mut header = vec!["NODE", "ROLE", "EPOCH", "HEALTH"];
    if counts.is_some() {
        header.push("PARTITIONS");
    }
    let mut t = Table::new(&header);
    for i in &out.doc.instances {
        t.row(instance_row(i, counts));
    }
    print!("{}", t.render());
    if let Some(map) = &out.partitions {
        println!();
        let mut t = Table::new(&["PARTITION", "NODE"]);
        for (p, owner) in map.iter().enumerate() {
            t.row(vec![p.to_string(), owner.to_string()]);
        }
        print!("{}", t.render());
    }
}

fn instance_row(i: &InstanceSummary, counts: Option<&BTreeMap<NodeId, usize>>) -> Vec<String> {
    let mut row = vec![
        i.node.to_string(),
        i.role.to_string(),
        dash(i.epoch),
        health_text(i.healthy, i.reason.as_deref()),
    ];
    if let Some(c) = counts {
        row.push(c.get(&i.node).copied().unwrap_or(0).to_string());
    }
    row
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cluster::core::wire::placement::AssignmentView;

    fn n(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    fn inst(node: &str, role: Role) -> InstanceSummary {
        InstanceSummary {
            node: n(node),
            role,
            epoch: None,
            healthy: true,
            reason: None,
        }
    }

    #[test]
    fn the_list_shows_where_an_app_runs_not_where_it_is_declared() {
        let app = AppSummary {
            name: "db".parse().unwrap(),
            mode: Mode::Singleton,
            leader: Some(n("n2")),
            epoch: Some(Epoch(4)),
            no_leader_ms: None,
            nodes: vec![n("n1"), n("n2"), n("n3")],
            instances: vec![
                inst("n1", Role::Stopped),
                inst("n2", Role::Leader),
                inst("n3", Role::Standby),
            ],
        };
        let e = list_entry(app, None);
        assert_eq!(e.nodes, vec![n("n2"), n("n3")]);
        assert_eq!(running_cell(&e), "n2 (leader), n3 (standby)");
    }

    #[test]
    fn a_pending_app_lists_the_controllers_reason() {
        let app = AppSummary {
            name: "pinned".parse().unwrap(),
            mode: Mode::Singleton,
            leader: None,
            epoch: None,
            no_leader_ms: Some(4200),
            nodes: vec![n("n1")],
            instances: vec![inst("n1", Role::Stopped)],
        };
        let record = AssignmentRecord {
            v: 1,
            epoch: 1,
            assignment: AssignmentView::default(),
            pending: [("pinned".parse().unwrap(), "no eligible node".to_owned())].into(),
            blocked: BTreeMap::new(),
        };
        let e = list_entry(app, Some(&record));
        assert!(e.nodes.is_empty());
        assert_eq!(running_cell(&e), "- (pending: no eligible node)");
    }

    #[test]
    fn partition_counts_add_up_per_owner() {
        let c = partition_counts(&[n("a"), n("b"), n("a")]);
        assert_eq!(c[&n("a")], 2);
        assert_eq!(c[&n("b")], 1);
    }
}
