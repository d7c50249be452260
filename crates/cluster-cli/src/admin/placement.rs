//! Placement commands: cordon, uncordon, label, drain (with progress), wait-stable, move,
//! evacuate and rebalance. Each goes through the admin service of a running node, which runs
//! the platform's own operation; nothing here acts as a node.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use cluster::core::wire::admin::{AdminMethod, AdminReply, AdminRequest};
use cluster::core::wire::placement_admin::{
    DrainParams, DrainReply, LabelParams, MoveParams, MoveReply, NodeParams, PlacementStatus,
    PlannedMigration, RebalanceParams, RebalancePlan,
};
use cluster::runtime::AdminTarget;
use cluster::{AppName, Error, Labels, Mode, NodeId, Role};
use serde::Serialize;
use tokio::time::Instant;

use super::{Channel, gather_status, join, parse_app, parse_node, unknown_node};
use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, Table, dash, print_json};
use crate::settings::Settings;

/// How often progress is sampled.
const POLL: Duration = Duration::from_millis(250);
/// Extra time a waiting request gets over the operation's own timeout.
const MARGIN: Duration = Duration::from_secs(5);

pub(super) fn request<T: Serialize>(method: AdminMethod, params: &T) -> CliResult<AdminRequest> {
    Ok(AdminRequest::with_params(method, params)?)
}

/// Sends to `node`, mapping "no answer" to exit 3 with the live nodes.
pub(super) async fn to_node(
    settings: &Settings,
    channel: &Channel,
    node: &NodeId,
    req: &AdminRequest,
    wait: Option<Duration>,
) -> CliResult<AdminReply> {
    let target = AdminTarget::Node(node.clone());
    let sent = match wait {
        Some(w) => channel.send_waiting(&target, req, w).await,
        None => channel.send(&target, req).await,
    };
    match sent.map(|r| r.into_iter().next()) {
        Ok(Some(r)) => Ok(r),
        Ok(None) | Err(Error::NodeNotFound(_)) => Err(unknown_node(settings, channel, node).await),
        Err(e) => Err(e.into()),
    }
}

/// Placement status as seen by `node`.
pub(super) async fn placement_status(
    settings: &Settings,
    channel: &Channel,
    node: &NodeId,
) -> CliResult<PlacementStatus> {
    let req = AdminRequest::new(AdminMethod::PlacementStatus);
    Ok(to_node(settings, channel, node, &req, None)
        .await?
        .into_result()?)
}

/// Any live node (the first to answer a status broadcast).
pub(super) async fn any_node(settings: &Settings, channel: &Channel) -> CliResult<NodeId> {
    let st = gather_status(settings, channel).await?;
    st.nodes
        .first()
        .map(|n| n.node.clone())
        .ok_or_else(|| super::no_daemon(settings, channel))
}

fn duration(flag: &str, value: Option<&str>, default: Duration) -> CliResult<Duration> {
    match value {
        Some(v) => crate::config::parse_duration(v)
            .map_err(|e| Failure::new(Code::Invalid, format!("{flag}: {e}"))),
        None => Ok(default),
    }
}

/// `cluster node cordon <id>`.
pub(crate) async fn cordon(
    settings: &Settings,
    channel: &Channel,
    id: &str,
    reason: Option<&str>,
) -> CliResult {
    let node = parse_node(id)?;
    let params = NodeParams {
        node: node.clone(),
        reason: reason.unwrap_or("cluster node cordon").to_owned(),
    };
    to_node(
        settings,
        channel,
        &node,
        &request(AdminMethod::NodeCordon, &params)?,
        None,
    )
    .await?
    .into_result::<NodeParams>()?;
    done(
        settings,
        &node,
        "cordoned",
        "it keeps what it runs and gets nothing new",
    )
}

/// `cluster node uncordon <id>`.
pub(crate) async fn uncordon(settings: &Settings, channel: &Channel, id: &str) -> CliResult {
    let node = parse_node(id)?;
    let params = NodeParams {
        node: node.clone(),
        reason: String::new(),
    };
    to_node(
        settings,
        channel,
        &node,
        &request(AdminMethod::NodeUncordon, &params)?,
        None,
    )
    .await?
    .into_result::<NodeParams>()?;
    done(
        settings,
        &node,
        "uncordoned",
        "it can receive instances again",
    )
}

fn done(settings: &Settings, node: &NodeId, what: &str, note: &str) -> CliResult {
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "node": node, what: true}));
    }
    println!("node {node} {what}: {note}");
    Ok(())
}

/// `cluster node label <id> key=value key- …`.
pub(crate) async fn label(
    settings: &Settings,
    channel: &Channel,
    id: &str,
    changes: &[String],
) -> CliResult {
    let node = parse_node(id)?;
    let mut set = Labels::new();
    let mut remove = Vec::new();
    for c in changes {
        if let Some((k, v)) = c.split_once('=') {
            set.insert(k, v)
                .map_err(|e| Failure::new(Code::Invalid, format!("label {c:?}: {e}")))?;
        } else if let Some(k) = c.strip_suffix('-') {
            Labels::new()
                .insert(k, "x")
                .map_err(|e| Failure::new(Code::Invalid, format!("label key {k:?}: {e}")))?;
            remove.push(k.to_owned());
        } else {
            return Err(Failure::new(
                Code::Invalid,
                format!("{c:?}: write key=value to set a label or key- to remove one"),
            ));
        }
    }
    let params = LabelParams {
        node: node.clone(),
        set,
        remove,
    };
    to_node(
        settings,
        channel,
        &node,
        &request(AdminMethod::NodeLabel, &params)?,
        None,
    )
    .await?
    .into_result::<LabelParams>()?;
    if settings.global.json {
        return print_json(&serde_json::json!({
            "v": JSON_VERSION, "node": node, "set": params.set, "removed": params.remove,
        }));
    }
    println!(
        "node {node}: labels set: {}; removed: {} (placement is re-evaluated)",
        super::labels_text(&params.set),
        if params.remove.is_empty() {
            "-".to_owned()
        } else {
            params.remove.join(",")
        }
    );
    Ok(())
}

/// Apps running on `node` according to `status`.
fn running_on(status: &PlacementStatus, node: &NodeId) -> Vec<AppName> {
    status
        .members
        .iter()
        .find(|m| &m.node == node)
        .map(|m| {
            m.apps
                .iter()
                .filter(|a| a.running)
                .map(|a| a.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// One drain progress event (`--json`: one JSON line each).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct DrainEvent {
    v: u32,
    event: &'static str,
    node: NodeId,
    total: usize,
    moved: usize,
    remaining: Vec<AppName>,
}

/// Renders progress: JSON lines, a bar redrawn in place on a terminal, or plain lines.
struct Progress {
    json: bool,
    tty: bool,
    last: Option<(NodeId, Vec<AppName>)>,
}

impl Progress {
    fn new(settings: &Settings) -> Self {
        Self {
            json: settings.global.json,
            tty: std::io::stdout().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, e: &DrainEvent) {
        let key = (e.node.clone(), e.remaining.clone());
        if e.event == "progress" && self.last.as_ref() == Some(&key) {
            return;
        }
        self.last = Some(key);
        let mut out = std::io::stdout().lock();
        if self.json {
            if let Ok(line) = serde_json::to_string(e) {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
            return;
        }
        const WIDTH: usize = 30;
        let filled = (e.moved * WIDTH).checked_div(e.total).unwrap_or(WIDTH);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
        let rest = if e.remaining.is_empty() {
            "nothing left".to_owned()
        } else {
            format!("remaining: {}", join(&e.remaining))
        };
        let line = format!(
            "drain {}: [{bar}] {}/{} moved, {rest}",
            e.node, e.moved, e.total
        );
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{line}");
            if e.event != "progress" {
                let _ = writeln!(out);
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

/// Drains `node`, showing progress until the request completes.
async fn drain_one(
    settings: &Settings,
    channel: &Channel,
    node: &NodeId,
    timeout: Duration,
    (force, max_concurrent): (bool, usize),
    progress: &mut Progress,
) -> CliResult<DrainReply> {
    let before = placement_status(settings, channel, node).await?;
    let total = running_on(&before, node).len();
    let params = DrainParams {
        node: node.clone(),
        timeout_ms: timeout.as_millis() as u64,
        force,
        max_concurrent,
    };
    let req = request(AdminMethod::NodeDrain, &params)?;
    let drain = to_node(settings, channel, node, &req, Some(timeout + MARGIN));
    tokio::pin!(drain);
    let event = |event, remaining: Vec<AppName>| DrainEvent {
        v: JSON_VERSION,
        event,
        node: node.clone(),
        total,
        moved: total.saturating_sub(remaining.len()),
        remaining,
    };
    progress.show(&event("progress", running_on(&before, node)));
    let reply = loop {
        tokio::select! {
            r = &mut drain => break r?,
            _ = tokio::time::sleep(POLL) => {
                if let Ok(st) = placement_status(settings, channel, node).await {
                    progress.show(&event("progress", running_on(&st, node)));
                }
            }
        }
    };
    let reply: DrainReply = reply.into_result().map_err(|e| match e {
        Error::Timeout(m) => Failure::new(Code::Error, format!("drain timed out: {m}")),
        other => other.into(),
    })?;
    progress.show(&event("drained", reply.remaining.clone()));
    Ok(reply)
}

/// `cluster node drain <id> [--timeout] [--force] [--max-concurrent N]`.
pub(crate) async fn drain(
    settings: &Settings,
    channel: &Channel,
    id: &str,
    timeout: Option<&str>,
    options: (bool, usize),
) -> CliResult {
    let node = parse_node(id)?;
    let timeout = duration("--timeout", timeout, Duration::from_secs(300))?;
    let mut progress = Progress::new(settings);
    drain_one(settings, channel, &node, timeout, options, &mut progress).await?;
    if !settings.global.json {
        println!(
            "node {node} drained: it runs nothing and stays cordoned (`cluster node uncordon {node}` to reuse it)"
        );
    }
    Ok(())
}

/// `cluster app evacuate --label k=v`: cordons every matching node, then drains them one by
/// one (cordoned first so nothing moves from one evacuated node to another).
pub(crate) async fn evacuate(
    settings: &Settings,
    channel: &Channel,
    selector: &str,
    timeout: Option<&str>,
    force: bool,
) -> CliResult {
    let Some((key, value)) = selector.split_once('=') else {
        return Err(Failure::new(
            Code::Invalid,
            format!("--label {selector:?}: write key=value"),
        ));
    };
    let timeout = duration("--timeout", timeout, Duration::from_secs(300))?;
    let st = gather_status(settings, channel).await?;
    let nodes: Vec<NodeId> = st
        .members
        .iter()
        .filter(|m| m.labels.matches(key, value))
        .map(|m| m.node.clone())
        .collect();
    if nodes.is_empty() {
        return Err(Failure::new(
            Code::NotFound,
            format!("no live node has label {key}={value} (see `cluster node list`)"),
        ));
    }
    for node in &nodes {
        let params = NodeParams {
            node: node.clone(),
            reason: format!("evacuate {key}={value}"),
        };
        to_node(
            settings,
            channel,
            node,
            &request(AdminMethod::NodeCordon, &params)?,
            None,
        )
        .await?
        .into_result::<NodeParams>()?;
    }
    if !settings.global.json {
        println!(
            "evacuating {} node(s) with {key}={value}: {}",
            nodes.len(),
            join(&nodes)
        );
    }
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::new(settings);
    for node in &nodes {
        let left = deadline.saturating_duration_since(Instant::now());
        drain_one(settings, channel, node, left, (force, 0), &mut progress).await?;
    }
    if !settings.global.json {
        println!("evacuated: {} run nothing and stay cordoned", join(&nodes));
    }
    Ok(())
}

/// Why `node` is not settled yet (`None`: settled).
fn unsettled(status: &PlacementStatus, node: &NodeId) -> Option<String> {
    let Some(record) = &status.assignment else {
        return Some("the controller has not written an assignment yet".into());
    };
    if status.draining.contains(node) {
        return Some("it is being drained".into());
    }
    if let Some(m) = status
        .moves
        .iter()
        .find(|m| &m.from == node || m.to.as_ref() == Some(node))
    {
        return Some(format!("a move of {} is in progress", m.app));
    }
    let Some(member) = status.members.iter().find(|m| &m.node == node) else {
        return Some("it is not a live member".into());
    };
    let placed: BTreeSet<&AppName> = record
        .assignment
        .apps
        .iter()
        .filter(|(_, p)| p.nodes.contains(node))
        .map(|(a, _)| a)
        .collect();
    for app in &member.apps {
        let here = placed.contains(&app.name);
        let settled_role = match app.mode {
            Mode::Singleton => matches!(app.role, Role::Leader | Role::Standby),
            _ => app.running,
        };
        if here && !(app.running && settled_role) {
            return Some(format!("{} is placed here but not running yet", app.name));
        }
        if !here && app.running {
            return Some(format!(
                "{} runs here but is no longer placed here",
                app.name
            ));
        }
    }
    None
}

/// `cluster node wait-stable <id> [--timeout]`.
pub(crate) async fn wait_stable(
    settings: &Settings,
    channel: &Channel,
    id: &str,
    timeout: Option<&str>,
) -> CliResult {
    let node = parse_node(id)?;
    let timeout = duration("--timeout", timeout, Duration::from_secs(60))?;
    let deadline = Instant::now() + timeout;
    // Settled in two consecutive samples (a single sample may fall between two steps).
    let mut settled_once = false;
    loop {
        let st = placement_status(settings, channel, &node).await?;
        match unsettled(&st, &node) {
            None if settled_once => {
                let running = running_on(&st, &node);
                let version = st.assignment.as_ref().map(|r| r.assignment.version);
                if settings.global.json {
                    return print_json(&serde_json::json!({
                        "v": JSON_VERSION, "node": node, "stable": true,
                        "version": version, "running": running,
                    }));
                }
                println!(
                    "node {node} is stable: runs {} (assignment version {})",
                    if running.is_empty() {
                        "nothing".to_owned()
                    } else {
                        join(&running)
                    },
                    dash(version)
                );
                return Ok(());
            }
            None => settled_once = true,
            Some(why) => {
                settled_once = false;
                if Instant::now() >= deadline {
                    return Err(Failure::new(
                        Code::Error,
                        format!("node {node} not stable within {timeout:?}: {why}"),
                    ));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `cluster app move <app> --from <node> [--to <node>]`.
pub(crate) async fn app_move(
    settings: &Settings,
    channel: &Channel,
    app: &str,
    from: &str,
    to: Option<&str>,
    timeout: Option<&str>,
) -> CliResult {
    let app = parse_app(app)?;
    let from = parse_node(from)?;
    let to = to.map(parse_node).transpose()?;
    let timeout = duration("--timeout", timeout, Duration::from_secs(60))?;
    let reply = move_once(settings, channel, &app, &from, to.as_ref(), timeout).await?;
    if settings.global.json {
        return print_json(&serde_json::json!({
            "v": JSON_VERSION, "app": reply.app, "from": reply.from, "to": reply.to,
        }));
    }
    println!("{}: moved from {} to {}", reply.app, reply.from, reply.to);
    Ok(())
}

async fn move_once(
    settings: &Settings,
    channel: &Channel,
    app: &AppName,
    from: &NodeId,
    to: Option<&NodeId>,
    timeout: Duration,
) -> CliResult<MoveReply> {
    let params = MoveParams {
        app: app.clone(),
        from: from.clone(),
        to: to.cloned(),
        timeout_ms: timeout.as_millis() as u64,
    };
    let req = request(AdminMethod::AppMove, &params)?;
    let reply = to_node(settings, channel, from, &req, Some(timeout + MARGIN)).await?;
    reply.into_result::<MoveReply>().map_err(|e| match e {
        Error::AppNotFound(m) => Failure::new(
            Code::NotFound,
            format!("app not found: {m} (see `cluster app list`)"),
        ),
        other => other.into(),
    })
}

fn plan_table(plan: &RebalancePlan) -> String {
    let mut t = Table::new(&["#", "APP", "KIND", "FROM", "TO"]);
    for (i, m) in plan.migrations.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            m.app.to_string(),
            m.kind.clone(),
            dash(m.from.as_ref()),
            dash(m.to.as_ref()),
        ]);
    }
    t.render()
}

/// `cluster rebalance --all|--app X [--dry-run]` and `cluster app rebalance <app>`: asks a
/// node for a plan (`cluster-placement`'s rebalance with hysteresis), prints it, and unless
/// `dry_run` executes it step by step as moves.
pub(crate) async fn rebalance(
    settings: &Settings,
    channel: &Channel,
    app: Option<&str>,
    dry_run: bool,
) -> CliResult {
    let app = app.map(parse_app).transpose()?;
    let node = any_node(settings, channel).await?;
    let params = RebalanceParams {
        app: app.clone(),
        threshold: None,
    };
    let plan: RebalancePlan = to_node(
        settings,
        channel,
        &node,
        &request(AdminMethod::RebalancePlan, &params)?,
        None,
    )
    .await?
    .into_result()
    .map_err(|e| match e {
        Error::AppNotFound(m) => Failure::new(
            Code::NotFound,
            format!("unknown app {m} (see `cluster app list`)"),
        ),
        other => other.into(),
    })?;
    let json = settings.global.json;
    if json {
        print_json(&serde_json::json!({
            "v": JSON_VERSION, "event": "plan", "dry_run": dry_run, "app": app, "plan": plan,
        }))?;
    } else {
        println!(
            "rebalance plan{}: {} step(s), imbalance {:.3} -> {:.3}",
            app.as_ref().map(|a| format!(" of {a}")).unwrap_or_default(),
            plan.migrations.len(),
            plan.imbalance_before,
            plan.imbalance_after
        );
        if plan.migrations.is_empty() {
            println!("balanced: nothing to move");
        } else {
            print!("{}", plan_table(&plan));
        }
        for r in &plan.rejected {
            println!("rejected: {r}");
        }
    }
    if dry_run || plan.migrations.is_empty() {
        return Ok(());
    }
    let total = plan.migrations.len();
    for (i, step) in plan.migrations.iter().enumerate() {
        let result = run_step(settings, channel, step).await;
        let status = match &result {
            Ok(Some(to)) => format!("moved to {to}"),
            Ok(None) => "skipped (not a move)".to_owned(),
            Err(f) => format!("failed: {}", f.message),
        };
        if json {
            print_json(&serde_json::json!({
                "v": JSON_VERSION, "event": "step", "index": i + 1, "total": total,
                "migration": step, "ok": result.is_ok(),
            }))?;
        } else {
            println!(
                "[{}/{total}] {} {} {} -> {}: {status}",
                i + 1,
                step.app,
                step.kind,
                dash(step.from.as_ref()),
                dash(step.to.as_ref())
            );
        }
        result?;
    }
    if !json {
        println!("rebalance done: {total} step(s)");
    }
    Ok(())
}

async fn run_step(
    settings: &Settings,
    channel: &Channel,
    step: &PlannedMigration,
) -> CliResult<Option<NodeId>> {
    match (step.kind.as_str(), &step.from) {
        ("move" | "leader", Some(from)) => {
            let r = move_once(
                settings,
                channel,
                &step.app,
                from,
                step.to.as_ref(),
                Duration::from_secs(60),
            )
            .await?;
            Ok(Some(r.to))
        }
        _ => Ok(None),
    }
}

/// `cluster placement [--from <node>]`.
pub(crate) async fn show(settings: &Settings, channel: &Channel, from: Option<&str>) -> CliResult {
    let node = match from {
        Some(n) => parse_node(n)?,
        None => any_node(settings, channel).await?,
    };
    let st = placement_status(settings, channel, &node).await?;
    if settings.global.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            v: u32,
            node: &'a NodeId,
            #[serde(flatten)]
            status: &'a PlacementStatus,
        }
        return print_json(&Doc {
            v: JSON_VERSION,
            node: &node,
            status: &st,
        });
    }
    let record = st.assignment.as_ref();
    println!(
        "placement as seen by {node}: controller {}, assignment version {} (epoch {})",
        dash(st.controller.as_ref()),
        dash(record.map(|r| r.assignment.version)),
        dash(record.map(|r| r.epoch))
    );
    println!("cordoned: {}", list_or_dash(&st.cordoned));
    println!("draining: {}", list_or_dash(&st.draining));
    for m in &st.moves {
        println!(
            "move in progress: {} from {} to {}",
            m.app,
            m.from,
            dash(m.to.as_ref())
        );
    }
    println!();
    let mut t = Table::new(&["APP", "NODES", "RUNNING ON", "PENDING"]);
    if let Some(r) = record {
        let mut apps: BTreeSet<&AppName> = r.assignment.apps.keys().collect();
        apps.extend(r.pending.keys());
        for app in apps {
            let placed = r
                .assignment
                .apps
                .get(app)
                .map(|p| list_or_dash(&p.nodes))
                .unwrap_or_else(|| "-".into());
            let running: Vec<NodeId> = st
                .members
                .iter()
                .filter(|m| m.apps.iter().any(|a| &a.name == app && a.running))
                .map(|m| m.node.clone())
                .collect();
            t.row(vec![
                app.to_string(),
                placed,
                list_or_dash(&running),
                r.pending.get(app).cloned().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    print!("{}", t.render());
    Ok(())
}

fn list_or_dash<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        join(items)
    }
}
