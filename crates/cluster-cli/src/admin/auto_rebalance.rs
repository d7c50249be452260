//! `cluster rebalance status|cancel|approve` and `cluster config set|get`: the controller's
//! auto-rebalance, reached through the admin service of any live node.

use cluster::core::wire::admin::{AdminMethod, AdminRequest};
use cluster::core::wire::rebalance::{
    ApproveParams, ConfigSetParams, PlacementConfig, RebalanceStatus,
};
use cluster::{AppName, Error};
use serde::de::DeserializeOwned;

use super::Channel;
use super::placement::{any_node, request, to_node};
use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, print_json};
use crate::settings::Settings;

async fn call<T: DeserializeOwned>(
    settings: &Settings,
    channel: &Channel,
    req: AdminRequest,
) -> CliResult<T> {
    let node = any_node(settings, channel).await?;
    to_node(settings, channel, &node, &req, None)
        .await?
        .into_result()
        .map_err(|e| match e {
            Error::InvalidArgument(m) => Failure::new(Code::Invalid, m),
            other => other.into(),
        })
}

fn step(m: &cluster::core::wire::placement_admin::PlannedMigration) -> String {
    let node = |n: &Option<cluster::core::NodeId>| n.as_ref().map_or("-".into(), |n| n.to_string());
    format!("{} {} {} -> {}", m.kind, m.app, node(&m.from), node(&m.to))
}

fn print_status(s: &RebalanceStatus) {
    println!(
        "rebalance: {} (run {}, {:?})",
        if s.in_progress { "in progress" } else { "idle" },
        s.run,
        s.phase
    );
    println!("migrations: {}/{}", s.completed, s.total);
    if s.last_run_ms > 0 {
        println!(
            "last run: {} ms since the epoch, reason: {}",
            s.last_run_ms, s.reason
        );
    }
    if let Some(p) = &s.paused {
        println!("paused: {p}");
    }
    for m in &s.active {
        println!("  active   {}", step(m));
    }
    for m in &s.awaiting_approval {
        println!(
            "  awaiting approval   {} (cluster rebalance approve {})",
            step(m),
            m.app
        );
    }
    for f in &s.failed {
        println!("  failed   {}: {}", step(&f.migration), f.reason);
    }
}

/// `cluster rebalance status`.
pub(crate) async fn status(settings: &Settings, channel: &Channel) -> CliResult {
    let s: RebalanceStatus = call(
        settings,
        channel,
        AdminRequest::new(AdminMethod::RebalanceStatus),
    )
    .await?;
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "status": s}));
    }
    print_status(&s);
    Ok(())
}

/// `cluster rebalance cancel`.
pub(crate) async fn cancel(settings: &Settings, channel: &Channel) -> CliResult {
    let s: RebalanceStatus = call(
        settings,
        channel,
        AdminRequest::new(AdminMethod::RebalanceCancel),
    )
    .await?;
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "cancelled": true, "status": s}));
    }
    if s.in_progress {
        println!(
            "rebalance run {} cancelled after {}/{} migrations (those in flight finish)",
            s.run, s.completed, s.total
        );
    } else {
        println!("no rebalance in progress; nothing to cancel");
    }
    Ok(())
}

/// `cluster rebalance approve <app>`.
pub(crate) async fn approve(settings: &Settings, channel: &Channel, app: &str) -> CliResult {
    let app = AppName::new(app).map_err(|e| Failure::new(Code::Invalid, e.to_string()))?;
    let params = ApproveParams { app: app.clone() };
    let _: ApproveParams = call(
        settings,
        channel,
        request(AdminMethod::RebalanceApprove, &params)?,
    )
    .await?;
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "approved": app}));
    }
    println!("next migration of {app} approved");
    Ok(())
}

/// `cluster config set <key> <value>`.
pub(crate) async fn config_set(
    settings: &Settings,
    channel: &Channel,
    key: &str,
    value: &str,
) -> CliResult {
    let params = ConfigSetParams {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    let config: PlacementConfig =
        call(settings, channel, request(AdminMethod::ConfigSet, &params)?).await?;
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "set": key, "config": config}));
    }
    println!("{key} = {value}");
    Ok(())
}

/// `cluster config get`.
pub(crate) async fn config_get(settings: &Settings, channel: &Channel) -> CliResult {
    let config: PlacementConfig =
        call(settings, channel, AdminRequest::new(AdminMethod::ConfigGet)).await?;
    if settings.global.json {
        return print_json(&serde_json::json!({"v": JSON_VERSION, "config": config}));
    }
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Failure::new(Code::Error, e.to_string()))?;
    println!("{text}");
    Ok(())
}
