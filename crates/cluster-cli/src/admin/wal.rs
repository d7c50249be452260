//! `cluster wal resync <app> [--from <node>] [--yes]`: recovery of an app's replicated SQLite
//! database without a leader (admin extension `wal.resync`, served by every standby; see
//! docs/architecture/cluster-wal.md, "Recovery without a leader"). With `--from`, that node
//! publishes its replica as the newest snapshot first (the leader, when `--from` names it, takes
//! a snapshot instead); then every other node running the app except the leader restores the
//! newest snapshot. Each re-synced node audits `wal.resync`.

use std::io::{BufRead, IsTerminal};

use cluster::{AppName, Error, NodeId};
use serde_json::{Value, json};

use super::snapshot::ext_request;
use super::{Channel, app_status_doc, one, parse_app};
use crate::cli::WalCommand;
use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, print_json};
use crate::settings::Settings;

/// Runs a `wal` subcommand.
pub(crate) async fn run(settings: &Settings, channel: &Channel, cmd: &WalCommand) -> CliResult {
    match cmd {
        WalCommand::Resync { app, from, yes } => {
            resync(settings, channel, app, from.as_deref(), *yes).await
        }
    }
}

async fn resync(
    settings: &Settings,
    channel: &Channel,
    app: &str,
    from: Option<&str>,
    yes: bool,
) -> CliResult {
    let app = parse_app(app)?;
    let doc = app_status_doc(settings, channel, &app).await?;
    let nodes: Vec<NodeId> = doc.instances.iter().map(|i| i.node.clone()).collect();
    let from = from
        .map(|f| {
            nodes
                .iter()
                .find(|n| n.as_str() == f)
                .cloned()
                .ok_or_else(|| {
                    Failure::new(
                        Code::NotFound,
                        format!("node {f} does not run app {app} (nodes: {nodes:?})"),
                    )
                })
        })
        .transpose()?;
    // The leader's replica is the log's truth: it is never re-synced (it refuses), but as the
    // source it publishes a snapshot through the leader's own operation.
    let leader = doc.app.leader.clone();
    let targets: Vec<NodeId> = nodes
        .iter()
        .filter(|n| Some(*n) != from.as_ref() && Some(*n) != leader.as_ref())
        .cloned()
        .collect();
    let plan = match &from {
        Some(f) => format!(
            "{app}: node {f} publishes its replica as the newest snapshot; {} restore it and replay the log (their local changes not in the log are discarded)",
            names(&targets)
        ),
        None => format!(
            "{app}: {} restore the newest snapshot and replay the log (their local changes not in the log are discarded)",
            names(&targets)
        ),
    };
    if !yes && !confirm(&plan)? {
        return Err(Failure::new(Code::Invalid, "not confirmed; nothing done"));
    }
    let mut results = Vec::new();
    if let Some(f) = &from {
        let v = if Some(f) == leader.as_ref() {
            let request = ext_request(&app, cluster_wal::admin::SNAPSHOT_CREATE, Value::Null)?;
            let snap = send(channel, &app, f, request).await?;
            json!({"published": snap["id"], "txid": snap["txid"], "restoring": false,
                "was_blocked": false})
        } else {
            call(channel, &app, f, true).await?
        };
        results.push(json!({"node": f, "result": v}));
    }
    for n in &targets {
        let v = call(channel, &app, n, false).await?;
        results.push(json!({"node": n, "result": v}));
    }
    if settings.global.json {
        return print_json(&json!({"v": JSON_VERSION, "app": app, "resync": results}));
    }
    for r in &results {
        let v = &r["result"];
        match v["published"].as_str() {
            Some(id) => println!(
                "{app}: {} published its replica as snapshot {id} (txid {})",
                r["node"].as_str().unwrap_or("-"),
                v["txid"]
            ),
            None => println!(
                "{app}: {} restores the newest snapshot{}",
                r["node"].as_str().unwrap_or("-"),
                if v["was_blocked"] == true {
                    " (promotion block lifted)"
                } else {
                    ""
                }
            ),
        }
    }
    println!("{app}: check `cluster app status {app}` for the new leader");
    Ok(())
}

fn names(nodes: &[NodeId]) -> String {
    if nodes.is_empty() {
        return "no other node".into();
    }
    nodes
        .iter()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks on the terminal; refuses without one (use `--yes` in scripts).
pub(super) fn confirm(plan: &str) -> CliResult<bool> {
    eprintln!("{plan}");
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Code::Invalid,
            "confirmation needed: run on a terminal or pass --yes",
        ));
    }
    eprint!("type yes to continue: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(Code::Error, format!("stdin: {e}")))?;
    Ok(line.trim() == "yes")
}

/// `wal.resync` on `node` for `app`.
async fn call(channel: &Channel, app: &AppName, node: &NodeId, publish: bool) -> CliResult<Value> {
    let request = ext_request(
        app,
        cluster_wal::admin::RESYNC,
        json!({ "publish": publish }),
    )?;
    send(channel, app, node, request).await
}

/// Sends the `app.ext` `request` to `node`.
async fn send(
    channel: &Channel,
    app: &AppName,
    node: &NodeId,
    request: cluster::core::wire::admin::AdminRequest,
) -> CliResult<Value> {
    match one(channel, node, request)
        .await
        .and_then(|r| r.into_result::<Value>())
    {
        Ok(v) => Ok(v),
        Err(Error::UnknownMethod { .. }) => Err(Failure::new(
            Code::NotFound,
            format!("app {app} has no SQLite replication on node {node}"),
        )),
        Err(e) => Err(Failure::new(
            Code::Error,
            format!("{app}: wal resync on {node}: {e}"),
        )),
    }
}
