//! `cluster snapshot create|list|restore|delete --app A`: the `wal.snapshot.*` admin
//! extensions of apps with SQLite replication, sent to the app's leader through the admin
//! service (never through a temporary node).

use std::time::Duration;

use cluster::core::wire::admin::{AdminMethod, AdminRequest, AppExtensionParams};
use cluster::{AppName, Error, NodeId};
use serde_json::{Value, json};

use super::{AppStatusDoc, Channel, Term, app_status_doc, one, parse_app, wait_new_leader};
use crate::cli::SnapshotCommand;
use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, Table, dash, print_json};
use crate::settings::Settings;

/// Runs a `snapshot` subcommand.
pub(crate) async fn run(
    settings: &Settings,
    channel: &Channel,
    cmd: &SnapshotCommand,
) -> CliResult {
    match cmd {
        SnapshotCommand::Create { app } => {
            let app = parse_app(app)?;
            let (node, v) = call(
                settings,
                channel,
                &app,
                cluster_wal::admin::SNAPSHOT_CREATE,
                Value::Null,
            )
            .await?;
            if settings.global.json {
                return print_json(
                    &json!({"v": JSON_VERSION, "app": app, "node": node, "snapshot": v}),
                );
            }
            println!(
                "{app}: snapshot {} created on {node} (txid {}, stream seq {}, {} bytes)",
                s(&v, "id"),
                s(&v, "txid"),
                s(&v, "stream_seq"),
                s(&v, "size")
            );
            Ok(())
        }
        SnapshotCommand::List { app } => {
            let app = parse_app(app)?;
            let (node, v) = call(
                settings,
                channel,
                &app,
                cluster_wal::admin::SNAPSHOT_LIST,
                Value::Null,
            )
            .await?;
            let list = v
                .get("snapshots")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if settings.global.json {
                return print_json(
                    &json!({"v": JSON_VERSION, "app": app, "node": node, "snapshots": list}),
                );
            }
            if list.is_empty() {
                println!("{app}: no snapshots");
                return Ok(());
            }
            let mut t = Table::new(&["ID", "TXID", "STREAM SEQ", "CHECKSUM", "SIZE", "AGE"]);
            for m in &list {
                t.row(vec![
                    s(m, "id"),
                    s(m, "txid"),
                    s(m, "stream_seq"),
                    s(m, "checksum"),
                    s(m, "size"),
                    dash(
                        m.get("age_secs")
                            .and_then(Value::as_u64)
                            .map(|a| format!("{a}s")),
                    ),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        SnapshotCommand::Delete { id, app } => {
            let app = parse_app(app)?;
            let (node, v) = call(
                settings,
                channel,
                &app,
                cluster_wal::admin::SNAPSHOT_DELETE,
                json!({"id": id}),
            )
            .await?;
            if settings.global.json {
                return print_json(
                    &json!({"v": JSON_VERSION, "app": app, "node": node, "deleted": v}),
                );
            }
            println!("{app}: snapshot {} deleted", s(&v, "id"));
            Ok(())
        }
        SnapshotCommand::Restore { id, app, on, yes } => {
            let app = parse_app(app)?;
            let doc = app_status_doc(settings, channel, &app).await?;
            match (&doc.app.leader, on) {
                (Some(_), None) => restore(settings, channel, id, &app, &doc).await,
                (Some(leader), Some(_)) => Err(Failure::new(
                    Code::Invalid,
                    format!("app {app} has a leader ({leader}): restore through it (omit --on)"),
                )),
                (None, None) => Err(Failure::new(
                    Code::Error,
                    format!(
                        "app {app} has no leader right now; retry in a few seconds, or restore \
                         without a leader on a node of your choice with --on <node> (nodes \
                         running it: {}; see docs/OPERATIONS.md)",
                        node_names(&doc)
                    ),
                )),
                (None, Some(on)) => {
                    restore_without_leader(settings, channel, id, &app, &doc, on, *yes).await
                }
            }
        }
    }
}

fn node_names(doc: &AppStatusDoc) -> String {
    let names: Vec<&str> = doc.instances.iter().map(|i| i.node.as_str()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Restore while no node leads the database: on node `on` (a standby of the app), after a
/// confirmation; fenced by the log (a leader appearing meanwhile makes it fail, nothing done).
async fn restore_without_leader(
    settings: &Settings,
    channel: &Channel,
    id: &str,
    app: &AppName,
    doc: &AppStatusDoc,
    on: &str,
    yes: bool,
) -> CliResult {
    let Some(node) = doc
        .instances
        .iter()
        .map(|i| i.node.clone())
        .find(|n| n.as_str() == on)
    else {
        return Err(Failure::new(
            Code::NotFound,
            format!(
                "node {on} does not run app {app} (nodes running it: {})",
                node_names(doc)
            ),
        ));
    };
    let plan = format!(
        "{app}: no node leads the database. Node {node} restores snapshot {id} as a new history: \
         every replica replaces its data by the snapshot (changes after it are discarded) and the \
         next leader starts from it. Refused if a leader appears meanwhile."
    );
    if !yes && !super::wal::confirm(&plan)? {
        return Err(Failure::new(Code::Invalid, "not confirmed; nothing done"));
    }
    let request = ext_request(
        app,
        cluster_wal::admin::SNAPSHOT_RESTORE,
        json!({"id": id, "without_leader": true}),
    )?;
    let v = match one(channel, &node, request)
        .await
        .and_then(|r| r.into_result::<Value>())
    {
        Ok(v) => v,
        Err(Error::NotLeader {
            leader: Some(leader),
            ..
        }) => {
            return Err(Failure::new(
                Code::Error,
                format!(
                    "{app}: node {node} sees a leader ({leader}) now: nothing restored; run the \
                     command again without --on to restore through it"
                ),
            ));
        }
        Err(Error::UnknownMethod { .. }) => {
            return Err(Failure::new(
                Code::NotFound,
                format!("app {app} has no SQLite replication on node {node}"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let next = wait_new_leader(settings, channel, app, &node, None, Duration::from_secs(60)).await;
    report(settings, app, id, &node, &v, next)
}

async fn restore(
    settings: &Settings,
    channel: &Channel,
    id: &str,
    app: &AppName,
    doc: &AppStatusDoc,
) -> CliResult {
    let app = app.clone();
    let old_epoch = doc.app.epoch;
    if !settings.global.json {
        eprintln!(
            "{app}: restoring snapshot {id} on the leader {} (writes after this point are discarded; the app steps down and resumes from the snapshot)",
            dash(doc.app.leader.clone())
        );
    }
    let (node, v) = call(
        settings,
        channel,
        &app,
        cluster_wal::admin::SNAPSHOT_RESTORE,
        json!({"id": id}),
    )
    .await?;
    let next = wait_new_leader(
        settings,
        channel,
        &app,
        &node,
        old_epoch,
        Duration::from_secs(60),
    )
    .await;
    report(settings, &app, id, &node, &v, next)
}

/// Prints the outcome of a restore (steps, new lineage, the leader that resumed).
fn report(
    settings: &Settings,
    app: &AppName,
    id: &str,
    node: &NodeId,
    v: &Value,
    next: Option<Term>,
) -> CliResult {
    if settings.global.json {
        return print_json(
            &json!({"v": JSON_VERSION, "app": app, "node": node, "restore": v, "leader": next}),
        );
    }
    for step in v
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("  {} ({} ms)", s(step, "step"), s(step, "ms"));
    }
    println!(
        "{app}: snapshot {id} restored as lineage {} (checksum {})",
        s(v, "lineage"),
        s(v, "checksum")
    );
    match next {
        Some(t) => println!(
            "{app}: resumed: leader {} (epoch {})",
            t.node,
            dash(t.epoch)
        ),
        None => println!("{app}: no new leader within 60s; check `cluster app status {app}`"),
    }
    Ok(())
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// An `app.ext` request for extension `name` of `app`.
pub(super) fn ext_request(app: &AppName, name: &str, args: Value) -> CliResult<AdminRequest> {
    let request = AdminRequest::with_params(
        AdminMethod::AppExtension,
        &AppExtensionParams {
            name: name.to_owned(),
            args,
        },
    )?;
    Ok(AdminRequest {
        app: Some(app.clone()),
        ..request
    })
}

/// Sends extension `name` to the app's leader (following one not-leader hint).
async fn call(
    settings: &Settings,
    channel: &Channel,
    app: &AppName,
    name: &str,
    args: Value,
) -> CliResult<(NodeId, Value)> {
    let doc = app_status_doc(settings, channel, app).await?;
    let Some(mut leader) = doc.app.leader.clone() else {
        return Err(Failure::new(
            Code::Error,
            format!("app {app} has no leader right now; retry in a few seconds"),
        ));
    };
    let request = ext_request(app, name, args)?;
    let mut result = one(channel, &leader, request.clone())
        .await
        .and_then(|r| r.into_result::<Value>());
    if let Err(Error::NotLeader {
        leader: Some(hint), ..
    }) = &result
        && *hint != leader
    {
        leader = hint.clone();
        result = one(channel, &leader, request)
            .await
            .and_then(|r| r.into_result::<Value>());
    }
    match result {
        Ok(v) => Ok((leader, v)),
        Err(Error::UnknownMethod { .. }) => Err(Failure::new(
            Code::NotFound,
            format!(
                "app {app} has no SQLite replication on node {leader} (add [apps.sqlite] to its configuration)"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
