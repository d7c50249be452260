//! `cluster doctor`: checks what a client can reach and says what to fix (docs/SECURITY.md,
//! "Doctor"). The checks are pure functions of what was gathered (`checks`); [`run`] gathers
//! it over a connection and, when given, the server's monitoring endpoint.

mod checks;
mod monitor;

use std::time::SystemTime;

use cluster_core::PlatformName;
use cluster_core::wire::names::Names;

pub use checks::{
    Check, SECURE_VERSION_FLOORS, Status, clock_check, replica_checks, sync_check, version_check,
};

use crate::NatsConnection;

/// Runs every check for `platform` over `conn`; `monitor` is the server's monitoring URL
/// (`http://host:8222`), needed for the `sync_interval`, cluster size and clock checks.
pub async fn run(
    conn: &NatsConnection,
    platform: &PlatformName,
    monitor: Option<&str>,
) -> Vec<Check> {
    let info = conn.client().server_info();
    let varz = match monitor {
        Some(url) => {
            let url = url.to_owned();
            Some(
                tokio::task::spawn_blocking(move || monitor::get_json(&url, "/varz"))
                    .await
                    .unwrap_or_else(|e| Err(format!("monitor request failed: {e}"))),
            )
        }
        None => None,
    };
    let varz_ok = varz.as_ref().and_then(|v| v.as_ref().ok());
    let mut checks = vec![Check {
        name: "connection",
        status: Status::Ok,
        detail: format!(
            "server {} {} as {:?}, inbox prefix {}",
            info.server_name,
            info.version,
            conn.options().name,
            conn.options().inbox_prefix.as_deref().unwrap_or("_INBOX"),
        ),
    }];
    checks.push(version_check(&info.version));
    if let Some(Err(e)) = &varz {
        checks.push(Check {
            name: "monitor",
            status: Status::Fail,
            detail: e.clone(),
        });
    }
    checks.push(sync_check(varz_ok));
    let cluster_size = match varz_ok {
        Some(v) => Some(monitor::cluster_size(v)),
        None => Some(info.connect_urls.len().max(1)),
    };
    let names = Names::new(platform.clone());
    let streams = [
        format!("KV_{}", names.members_bucket()),
        format!("KV_{}", names.election_bucket()),
        format!("KV_{}", names.locks_bucket()),
        format!("KV_{}", names.placement_bucket()),
        crate::audit_stream_name(platform),
    ];
    let mut replicas = Vec::new();
    for stream in streams {
        let r = match conn.jetstream().get_stream(&stream).await {
            Ok(s) => Ok(s.cached_info().config.num_replicas),
            Err(e) => Err(crate::error::describe(&e)),
        };
        replicas.push((stream, r));
    }
    checks.extend(replica_checks(&replicas, cluster_size));
    checks.push(clock_check(varz_ok, SystemTime::now()));
    checks
}
