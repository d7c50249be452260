//! The health server: `/live`, `/ready`, `/health`, `/health/checks`.
//!
//! * `/live`: 200 while the process serves requests (its async runtime is responsive).
//! * `/ready`: 200 once the platform completed its start and every app is in a settled role
//!   (`leader`, `standby`, `active`, or `stopped` because the latest assignment does not place
//!   it here); 503 while starting, before the first assignment, while an app is between
//!   roles, and during shutdown. JSON per app.
//! * `/health`: 200 only when every check passes (`/health/checks` lists them): the platform
//!   runs, this node is in its own membership view, NATS is connected, every app instance
//!   reports itself healthy, no replicated database of an app has its promotion blocked
//!   (`wal:<app>`, with the reason). 503 otherwise.
//!
//! Checks are cheap reads of in-memory state computed per request: nothing runs twice, nothing
//! is cached stale.

use std::net::SocketAddr;
use std::sync::Arc;

use cluster::HealthStatus;
use cluster::core::election::ElectionState;
use cluster::{App, Platform, Role};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::http::{self, Response};
use crate::exit::CliResult;

/// Whether the NATS connection is up (`None` in dev mode).
pub(crate) type Connected = Arc<dyn Fn() -> bool + Send + Sync>;

struct State {
    platform: Platform,
    apps: Vec<App>,
    connected: Option<Connected>,
}

/// Serves the health endpoints for `platform` on `addr`.
pub(crate) async fn serve(
    addr: SocketAddr,
    platform: Platform,
    apps: Vec<App>,
    connected: Option<Connected>,
) -> CliResult<(SocketAddr, JoinHandle<()>)> {
    let state = Arc::new(State {
        platform,
        apps,
        connected,
    });
    http::serve("health", addr, move |path| {
        let state = state.clone();
        async move { route(&state, &path) }
    })
    .await
}

fn route(state: &State, path: &str) -> Response {
    match path {
        "/live" => Response::json(200, &json!({"status": "alive"})),
        "/ready" => {
            let (ready, body) = ready(state);
            Response::json(if ready { 200 } else { 503 }, &body)
        }
        "/health" => {
            let checks = checks(state);
            let failing: Vec<&str> = checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.as_str())
                .collect();
            let healthy = failing.is_empty();
            Response::json(
                if healthy { 200 } else { 503 },
                &json!({"status": if healthy { "ok" } else { "unhealthy" }, "failing": failing}),
            )
        }
        "/health/checks" => {
            let checks = checks(state);
            let healthy = checks.iter().all(|c| c.ok);
            let list: Vec<Value> = checks
                .iter()
                .map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
                .collect();
            Response::json(
                if healthy { 200 } else { 503 },
                &json!({"v": 1, "healthy": healthy, "node": state.platform.node_id(), "checks": list}),
            )
        }
        _ => Response::text(404, "endpoints: /live /ready /health /health/checks\n"),
    }
}

/// Whether `app`'s role on this node is a settled one, and its name.
fn settled(platform: &Platform, app: &App) -> (bool, Role) {
    let role = app.role();
    let ok = match role {
        Role::Leader | Role::Standby | Role::Active => true,
        // Settled only when the placement (known) does not place it here.
        Role::Stopped => !app.is_running() && platform.placed_here(app.name()) == Some(false),
    };
    (ok, role)
}

fn ready(state: &State) -> (bool, Value) {
    let started = state.platform.is_started();
    let mut all = started;
    let mut apps = serde_json::Map::new();
    for app in &state.apps {
        let (ok, role) = settled(&state.platform, app);
        all &= ok;
        let election = app.election_state();
        apps.insert(
            app.name().to_string(),
            json!({
                "mode": app.mode().to_string(),
                "role": role.to_string(),
                "settled": ok,
                "epoch": app.fencing_token().map(|e| e.0),
                "leader": election.as_ref().and_then(|s| s.leader.as_ref()).map(|l| l.node.to_string()),
            }),
        );
    }
    (
        all,
        json!({
            "v": 1,
            "ready": all,
            "started": started,
            "node": state.platform.node_id(),
            "platform": state.platform.name(),
            "apps": apps,
        }),
    )
}

struct Check {
    name: String,
    ok: bool,
    detail: String,
}

fn check(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

fn checks(state: &State) -> Vec<Check> {
    let p = &state.platform;
    let mut out = vec![check(
        "platform",
        p.is_started(),
        if p.is_started() {
            "running"
        } else {
            "not running (starting or stopping)"
        },
    )];
    let members = p.members();
    let me = members.iter().any(|m| m.node_id == *p.node_id());
    out.push(check(
        "membership",
        me,
        if me {
            format!("{} live member(s), this node included", members.len())
        } else {
            "this node is not in its own membership view".to_owned()
        },
    ));
    if let Some(connected) = &state.connected {
        let up = connected();
        out.push(check(
            "nats",
            up,
            if up { "connected" } else { "disconnected" },
        ));
    }
    for app in &state.apps {
        let (ok, role) = settled(&state.platform, app);
        let (healthy, why) = match app.health() {
            HealthStatus::Healthy => (true, String::new()),
            HealthStatus::Unhealthy(r) => (false, r),
        };
        let detail = if healthy {
            format!("role {role}")
        } else {
            format!("role {role}, unhealthy: {why}")
        };
        out.push(check(format!("app:{}", app.name()), healthy && ok, detail));
        if let Some(election) = app.election_state() {
            out.push(leader_check(app.name().as_str(), &election));
        }
        if let Some(block) = wal_block(app) {
            out.push(check(
                format!("wal:{}", app.name()),
                false,
                format!(
                    "promotion blocked since epoch {}: {} (this node does not stand for leadership \
                     until its replica re-syncs from a snapshot or the node restarts)",
                    block.epoch, block.reason
                ),
            ));
        }
    }
    out
}

/// `leader:<app>`: passes while a lease valid now on this node's clock names a leader.
fn leader_check(app: &str, election: &ElectionState) -> Check {
    let name = format!("leader:{app}");
    match (&election.leader, election.leaderless_since) {
        (Some(l), _) => check(name, true, format!("leader {} (epoch {})", l.node, l.epoch)),
        (None, Some(since)) => check(
            name,
            false,
            format!("no leader (since {:.1} s)", since.elapsed().as_secs_f64()),
        ),
        (None, None) => check(name, false, "no leader"),
    }
}

/// The promotion block of the app's replicated database, if it has one and it is blocked.
fn wal_block(app: &App) -> Option<cluster::sqlite::PromotionBlock> {
    use cluster::sqlite::AppDbExt;
    app.wal_db().and_then(|db| db.status().promotion_blocked)
}
