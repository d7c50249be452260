//! Admin commands against a live platform (NATS request/reply, or the dev daemon's socket).

mod apps;
pub(crate) mod auto_rebalance;
mod channel;
mod node_remove;
pub(crate) mod placement;
pub(crate) mod snapshot;
mod views;
pub(crate) mod wal;

use std::time::Duration;

use cluster::core::wire::admin::{
    AdminMethod, AdminReply, AdminRequest, AppStatusReply, NodeStatus, StatusReply, StepDownReply,
};
use cluster::runtime::AdminTarget;
use cluster::{AppName, Epoch, Error, Mode, NodeId};
use serde::Serialize;
use tokio::time::Instant;

pub(crate) use apps::{app_list, app_status};
pub(crate) use channel::{BridgeRequest, BridgeResponse, Channel, dev_control};
use views::{InstanceSummary, PlatformStatus, merge_views, mode_word, platform_status};

use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, Table, dash, print_json};
use crate::settings::Settings;

/// Runs `f` with an open channel, closing it afterwards.
pub(crate) async fn with_channel<F, Fut>(settings: &Settings, f: F) -> CliResult
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = (Channel, CliResult)>,
{
    let channel = Channel::open(settings).await?;
    let (channel, result) = f(channel).await;
    channel.close().await;
    result
}

fn no_daemon(settings: &Settings, channel: &Channel) -> Failure {
    Failure::new(
        Code::Error,
        format!(
            "no node of platform {} answered on {}. Is a daemon running (`cluster run`)? \
             Check --platform and --nats (or --dev for the in-memory dev platform)",
            settings.platform,
            channel.describe()
        ),
    )
}

async fn gather_status(settings: &Settings, channel: &Channel) -> CliResult<PlatformStatus> {
    let replies = channel
        .send(&AdminTarget::All, &AdminRequest::new(AdminMethod::Status))
        .await?;
    let ok: Vec<StatusReply> = replies
        .into_iter()
        .filter_map(|r| r.into_result::<StatusReply>().ok())
        .collect();
    if ok.is_empty() {
        return Err(no_daemon(settings, channel));
    }
    Ok(platform_status(&settings.platform, ok))
}

/// `cluster status`.
pub(crate) async fn status(settings: &Settings, channel: &Channel) -> CliResult {
    let st = gather_status(settings, channel).await?;
    if settings.global.json {
        return print_json(&st);
    }
    println!(
        "platform {}: {} member{}, {} app{}",
        st.platform,
        st.members.len(),
        plural(st.members.len()),
        st.apps.len(),
        plural(st.apps.len())
    );
    println!();
    print!("{}", members_table(&st));
    println!();
    print!("{}", apps_table(&st));
    if !st.unreachable.is_empty() {
        println!();
        println!(
            "unreachable (member records present, no admin reply): {}",
            join(&st.unreachable)
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn age(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

fn labels_text(labels: &cluster::Labels) -> String {
    let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.join(",")
    }
}

fn members_table(st: &PlatformStatus) -> String {
    let mut t = Table::new(&["NODE", "ADDRESS", "HEALTHY", "APPS", "UP", "LABELS"]);
    for m in &st.members {
        t.row(vec![
            m.node.to_string(),
            if m.address.is_empty() {
                "-".into()
            } else {
                m.address.clone()
            },
            if m.healthy { "yes".into() } else { "no".into() },
            m.apps.len().to_string(),
            age(m.joined_at_ms),
            labels_text(&m.labels),
        ]);
    }
    t.render()
}

fn instances_text(instances: &[InstanceSummary]) -> String {
    if instances.is_empty() {
        return "-".to_owned();
    }
    instances
        .iter()
        .map(|i| {
            let health = if i.healthy { "" } else { " (unhealthy)" };
            format!("{}:{}{health}", i.node, i.role)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn apps_table(st: &PlatformStatus) -> String {
    let mut t = Table::new(&["APP", "MODE", "LEADER", "EPOCH", "INSTANCES"]);
    for a in &st.apps {
        let singleton = a.mode == Mode::Singleton;
        t.row(vec![
            a.name.to_string(),
            mode_word(&a.mode),
            if singleton {
                a.leader_text()
            } else {
                "-".into()
            },
            if singleton { dash(a.epoch) } else { "-".into() },
            instances_text(&a.instances),
        ]);
    }
    t.render()
}

/// `cluster node list`.
pub(crate) async fn node_list(settings: &Settings, channel: &Channel) -> CliResult {
    let st = gather_status(settings, channel).await?;
    if settings.global.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            v: u32,
            nodes: &'a [cluster::core::wire::member::MemberRecord],
        }
        return print_json(&Doc {
            v: JSON_VERSION,
            nodes: &st.members,
        });
    }
    print!("{}", members_table(&st));
    Ok(())
}

async fn live_nodes(settings: &Settings, channel: &Channel) -> Vec<NodeId> {
    gather_status(settings, channel)
        .await
        .map(|st| st.members.into_iter().map(|m| m.node).collect())
        .unwrap_or_default()
}

fn parse_node(id: &str) -> CliResult<NodeId> {
    NodeId::new(id).map_err(|e| Failure::new(Code::Invalid, format!("node id {id:?}: {e}")))
}

fn parse_app(name: &str) -> CliResult<AppName> {
    AppName::new(name).map_err(|e| Failure::new(Code::Invalid, format!("app name {name:?}: {e}")))
}

async fn one(channel: &Channel, node: &NodeId, request: AdminRequest) -> Result<AdminReply, Error> {
    channel
        .send(&AdminTarget::Node(node.clone()), &request)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NodeNotFound(node.to_string()))
}

async fn unknown_node(settings: &Settings, channel: &Channel, node: &NodeId) -> Failure {
    let live = live_nodes(settings, channel).await;
    let known = if live.is_empty() {
        "no node answers at all; is a daemon running?".to_owned()
    } else {
        format!("live nodes: {}", join(&live))
    };
    Failure::new(
        Code::NotFound,
        format!(
            "node {node} not found: no live node of platform {} has that id ({known}; see `cluster node list`)",
            settings.platform
        ),
    )
}

/// `cluster node status <id>`.
pub(crate) async fn node_status(settings: &Settings, channel: &Channel, id: &str) -> CliResult {
    let node = parse_node(id)?;
    let status: NodeStatus =
        match one(channel, &node, AdminRequest::new(AdminMethod::NodeStatus)).await {
            Ok(reply) => reply.into_result()?,
            Err(Error::NodeNotFound(_)) => return Err(unknown_node(settings, channel, &node).await),
            Err(e) => return Err(e.into()),
        };
    if settings.global.json {
        return print_json(&status);
    }
    let mut t = Table::new(&["FIELD", "VALUE"]);
    t.row(vec!["node".into(), status.node.to_string()]);
    t.row(vec!["platform".into(), status.platform.to_string()]);
    t.row(vec!["instance".into(), status.instance.clone()]);
    t.row(vec!["version".into(), status.version.clone()]);
    t.row(vec![
        "address".into(),
        if status.address.is_empty() {
            "-".into()
        } else {
            status.address.clone()
        },
    ]);
    t.row(vec!["labels".into(), labels_text(&status.labels)]);
    t.row(vec!["healthy".into(), yes_no(status.healthy)]);
    t.row(vec!["draining".into(), yes_no(status.draining)]);
    t.row(vec!["uptime".into(), format!("{}s", status.uptime_secs)]);
    print!("{}", t.render());
    println!();
    let mut apps = Table::new(&["APP", "MODE", "ROLE", "EPOCH", "LEADER", "HEALTH"]);
    for a in &status.apps {
        apps.row(vec![
            a.name.to_string(),
            mode_word(&a.mode),
            a.role.to_string(),
            dash(a.epoch),
            dash(a.leader.as_ref()),
            health_text(a.health.healthy, a.health.reason.as_deref()),
        ]);
    }
    print!("{}", apps.render());
    Ok(())
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn health_text(healthy: bool, reason: Option<&str>) -> String {
    match (healthy, reason) {
        (true, _) => "healthy".into(),
        (false, Some(r)) => format!("unhealthy: {r}"),
        (false, None) => "unhealthy".into(),
    }
}

/// The platform-wide view of one app, with every instance.
#[derive(Debug, Serialize)]
struct AppStatusDoc {
    v: u32,
    app: cluster::core::wire::admin::AppView,
    instances: Vec<InstanceSummary>,
}

async fn app_status_doc(
    settings: &Settings,
    channel: &Channel,
    app: &AppName,
) -> CliResult<AppStatusDoc> {
    let replies = channel
        .send(
            &AdminTarget::All,
            &AdminRequest::for_app(AdminMethod::AppStatus, app.clone()),
        )
        .await?;
    if replies.is_empty() {
        return Err(no_daemon(settings, channel));
    }
    let mut views = Vec::new();
    let mut instances = Vec::new();
    for r in replies {
        let node = r.node.clone();
        match r.into_result::<AppStatusReply>() {
            Ok(s) => {
                views.push(s.app);
                if let Some(local) = s.local {
                    instances.push(InstanceSummary::from_instance(&node, &local));
                }
            }
            Err(Error::AppNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let Some(view) = merge_views(views).into_values().next() else {
        let known = app_names(settings, channel).await;
        let hint = if known.is_empty() {
            "no app runs on the platform".to_owned()
        } else {
            format!("known apps: {}", join(&known))
        };
        return Err(Failure::new(
            Code::NotFound,
            format!(
                "unknown app {app}: no live node of platform {} runs it ({hint}; see `cluster app list`)",
                settings.platform
            ),
        ));
    };
    instances.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(AppStatusDoc {
        v: JSON_VERSION,
        app: view,
        instances,
    })
}

async fn app_names(settings: &Settings, channel: &Channel) -> Vec<AppName> {
    gather_status(settings, channel)
        .await
        .map(|st| st.apps.into_iter().map(|a| a.name).collect())
        .unwrap_or_default()
}

/// One term: a leader and its epoch.
#[derive(Debug, Clone, Serialize)]
struct Term {
    node: NodeId,
    epoch: Option<Epoch>,
}

/// `cluster stepdown [--app A]`.
pub(crate) async fn stepdown(
    settings: &Settings,
    channel: &Channel,
    app: Option<&str>,
    wait: Duration,
) -> CliResult {
    let Some(app) = app else {
        return stepdown_node(settings, channel).await;
    };
    let app = parse_app(app)?;
    let doc = app_status_doc(settings, channel, &app).await?;
    if doc.app.mode != Mode::Singleton {
        return Err(Failure::new(
            Code::Invalid,
            format!(
                "app {app} is a {} app: only Singleton apps have a leader to step down",
                doc.app.mode
            ),
        ));
    }
    let Some(mut leader) = doc.app.leader.clone() else {
        return Err(Failure::new(
            Code::Error,
            format!(
                "app {app} has no leader right now (an election or a cooldown is in progress); retry in a few seconds"
            ),
        ));
    };
    let mut result = one(
        channel,
        &leader,
        AdminRequest::for_app(AdminMethod::StepDown, app.clone()),
    )
    .await
    .and_then(|r| r.into_result::<StepDownReply>());
    // The leader changed since we looked: follow the hint once.
    if let Err(Error::NotLeader {
        leader: Some(hint), ..
    }) = &result
        && *hint != leader
    {
        leader = hint.clone();
        result = one(
            channel,
            &leader,
            AdminRequest::for_app(AdminMethod::StepDown, app.clone()),
        )
        .await
        .and_then(|r| r.into_result::<StepDownReply>());
    }
    let reply = result.map_err(|e| match e {
        Error::NotLeader { .. } => Failure::new(
            Code::Error,
            format!(
                "{e}: leadership of {app} is changing; run `cluster app status {app}` and retry"
            ),
        ),
        other => other.into(),
    })?;
    let ended = reply
        .stepped_down
        .first()
        .and_then(|s| s.epoch)
        .or(doc.app.epoch);
    let previous = Term {
        node: leader.clone(),
        epoch: ended,
    };
    let next = wait_new_leader(settings, channel, &app, &leader, ended, wait).await;
    if settings.global.json {
        return print_json(&serde_json::json!({
            "v": JSON_VERSION, "app": app, "previous": previous, "leader": next,
        }));
    }
    println!(
        "{app}: {} stepped down (epoch {})",
        previous.node,
        dash(previous.epoch)
    );
    match next {
        Some(t) => println!("{app}: new leader {} (epoch {})", t.node, dash(t.epoch)),
        None => println!(
            "{app}: no new leader within {wait:?}; check `cluster app status {app}` (with a single node, \
             the old leader campaigns again after its cooldown)"
        ),
    }
    Ok(())
}

async fn wait_new_leader(
    settings: &Settings,
    channel: &Channel,
    app: &AppName,
    old: &NodeId,
    old_epoch: Option<Epoch>,
    wait: Duration,
) -> Option<Term> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(doc) = app_status_doc(settings, channel, app).await
            && let Some(l) = doc.app.leader
            && (l != *old || doc.app.epoch > old_epoch)
        {
            return Some(Term {
                node: l,
                epoch: doc.app.epoch,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn stepdown_node(settings: &Settings, channel: &Channel) -> CliResult {
    let node = settings.node()?;
    let reply: StepDownReply =
        match one(channel, &node, AdminRequest::new(AdminMethod::StepDown)).await {
            Ok(r) => r.into_result()?,
            Err(Error::NodeNotFound(_)) => return Err(unknown_node(settings, channel, &node).await),
            Err(e) => return Err(e.into()),
        };
    if settings.global.json {
        return print_json(
            &serde_json::json!({"v": JSON_VERSION, "node": node, "stepped_down": reply.stepped_down}),
        );
    }
    if reply.stepped_down.is_empty() {
        println!("node {node} leads no app; nothing to step down (use --app to name one)");
    }
    for s in &reply.stepped_down {
        println!("{}: {node} stepped down (epoch {})", s.app, dash(s.epoch));
    }
    Ok(())
}

/// `cluster health` (from the nodes' status until the health server exists).
pub(crate) async fn health(settings: &Settings, channel: &Channel) -> CliResult {
    let st = gather_status(settings, channel).await?;
    let mut problems = Vec::new();
    for n in &st.unreachable {
        problems.push(format!("node {n} does not answer admin requests"));
    }
    for n in &st.nodes {
        for a in n.apps.iter().filter(|a| !a.health.healthy) {
            problems.push(format!(
                "app {} on node {} is unhealthy{}",
                a.name,
                n.node,
                a.health
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
    }
    for a in st
        .apps
        .iter()
        .filter(|a| a.mode == Mode::Singleton && a.leader.is_none())
    {
        problems.push(format!("app {} has no leader", a.name));
    }
    let healthy = problems.is_empty();
    if settings.global.json {
        print_json(&serde_json::json!({
            "v": JSON_VERSION,
            "healthy": healthy,
            "nodes": st.nodes.iter().map(|n| serde_json::json!({"node": n.node, "healthy": n.healthy})).collect::<Vec<_>>(),
            "unreachable": st.unreachable,
            "problems": problems,
        }))?;
    } else {
        let mut t = Table::new(&["NODE", "HEALTHY", "APPS"]);
        for n in &st.nodes {
            t.row(vec![
                n.node.to_string(),
                yes_no(n.healthy),
                n.apps.len().to_string(),
            ]);
        }
        print!("{}", t.render());
        println!();
        if healthy {
            println!(
                "healthy: {} node(s) answered, every Singleton app has a leader",
                st.nodes.len()
            );
        } else {
            println!("unhealthy:");
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    match (healthy, settings.global.json) {
        (true, _) => Ok(()),
        // The JSON document already says why.
        (false, true) => Err(Failure::new(Code::Error, "")),
        (false, false) => Err(Failure::new(
            Code::Error,
            format!(
                "platform {} is unhealthy ({} problem(s))",
                st.platform,
                problems.len()
            ),
        )),
    }
}

/// The `node` subcommands beyond list/status (placement).
pub(crate) async fn node_command(
    settings: &Settings,
    channel: &Channel,
    cmd: &crate::cli::NodeCommand,
) -> CliResult {
    use crate::cli::NodeCommand as N;
    match cmd {
        N::List => node_list(settings, channel).await,
        N::Status { id } => node_status(settings, channel, id).await,
        N::Cordon { id, reason } => {
            placement::cordon(settings, channel, id, reason.as_deref()).await
        }
        N::Uncordon { id } => placement::uncordon(settings, channel, id).await,
        N::Remove { id } => node_remove::remove(settings, channel, id).await,
        N::Label { id, changes } => placement::label(settings, channel, id, changes).await,
        N::Drain {
            id,
            timeout,
            force,
            max_concurrent,
        } => {
            let options = (*force, *max_concurrent);
            placement::drain(settings, channel, id, timeout.as_deref(), options).await
        }
        N::WaitStable { id, timeout } => {
            placement::wait_stable(settings, channel, id, timeout.as_deref()).await
        }
    }
}

/// The `app` subcommands beyond list/status (placement).
pub(crate) async fn app_command(
    settings: &Settings,
    channel: &Channel,
    cmd: &crate::cli::AppCommand,
) -> CliResult {
    use crate::cli::AppCommand as A;
    match cmd {
        A::List => app_list(settings, channel).await,
        A::Status { app, partitions } => app_status(settings, channel, app, *partitions).await,
        A::Move {
            app,
            from,
            to,
            timeout,
        } => {
            placement::app_move(
                settings,
                channel,
                app,
                from,
                to.as_deref(),
                timeout.as_deref(),
            )
            .await
        }
        A::Rebalance { app, all, dry_run } => {
            if *all == app.is_some() {
                return Err(Failure::new(
                    Code::Invalid,
                    "app rebalance: name one app, or pass --all",
                ));
            }
            placement::rebalance(settings, channel, app.as_deref(), *dry_run).await
        }
        A::Evacuate {
            label,
            timeout,
            force,
        } => placement::evacuate(settings, channel, label, timeout.as_deref(), *force).await,
    }
}
