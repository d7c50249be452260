//! The doctor's checks as pure functions.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::parse_version;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but should be fixed (the detail says how).
    Warn,
    /// Broken.
    Fail,
    /// Could not be checked (the detail says what is needed).
    Skip,
}

/// One check: name, outcome, what was found and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`server-version`, `sync-interval`, `replicas:{stream}`, `clock`, …).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found and, unless ok, what to do.
    pub detail: String,
}

/// The first fixed release of each line for the queue-subscription permission bypass
/// (before these, a queue subscription could bypass a subscribe deny; our RPC uses queue
/// groups): 2.11.16, 2.12.7, 2.14.0 (every 2.13 is affected).
pub const SECURE_VERSION_FLOORS: [(u64, u64, u64); 3] = [(2, 11, 16), (2, 12, 7), (2, 14, 0)];

/// Whether `version` has the permission fix.
fn version_is_secure(v: (u64, u64, u64)) -> bool {
    let newest = SECURE_VERSION_FLOORS[SECURE_VERSION_FLOORS.len() - 1];
    v >= newest
        || SECURE_VERSION_FLOORS
            .iter()
            .any(|f| (v.0, v.1) == (f.0, f.1) && v.2 >= f.2)
}

/// The server version against the secure-mode floor.
pub fn version_check(version: &str) -> Check {
    let (status, detail) = match parse_version(version) {
        Some(v) if version_is_secure(v) => (
            Status::Ok,
            format!("{version} has the queue-permission fix"),
        ),
        Some(_) => (
            Status::Warn,
            format!(
                "{version}: a queue subscription can bypass a subscribe deny (the rpc queue group \
                 relies on it); upgrade to 2.11.16, 2.12.7, 2.14.0 or newer before relying on \
                 permissions"
            ),
        ),
        None => (
            Status::Warn,
            format!("cannot parse the server version {version:?}"),
        ),
    };
    Check {
        name: "server-version",
        status,
        detail,
    }
}

/// JetStream's fsync policy from `/varz` (`jetstream.config.sync_interval` in ns,
/// `sync_always`).
pub fn sync_check(varz: Option<&serde_json::Value>) -> Check {
    let name = "sync-interval";
    let Some(varz) = varz else {
        return Check {
            name,
            status: Status::Skip,
            detail: "pass --monitor http://<server>:8222 to read JetStream's sync_interval"
                .to_owned(),
        };
    };
    let config = &varz["jetstream"]["config"];
    if config["sync_always"].as_bool() == Some(true) {
        return Check {
            name,
            status: Status::Ok,
            detail: "sync_interval: always (every acknowledged write is on disk)".to_owned(),
        };
    }
    let interval = config["sync_interval"]
        .as_u64()
        .map_or("the default 2m".to_owned(), |ns| {
            format!("{:?}", Duration::from_nanos(ns))
        });
    Check {
        name,
        status: Status::Warn,
        detail: format!(
            "JetStream fsyncs every {interval}: acknowledged writes can be lost in a coordinated \
             power loss (Jepsen, NATS 2.12.1), and epochs and WAL sequences assume they survive; \
             set `jetstream {{ sync_interval: always }}` on every server"
        ),
    }
}

/// Replicas of each platform stream against the cluster size (`Err`: the stream could not be
/// read, e.g. not created yet).
pub fn replica_checks(
    streams: &[(String, Result<usize, String>)],
    cluster_size: Option<usize>,
) -> Vec<Check> {
    streams
        .iter()
        .map(|(stream, replicas)| {
            let (status, detail) = match (replicas, cluster_size) {
                (Err(e), _) => (Status::Skip, format!("{stream}: {e}")),
                (Ok(r), Some(size)) if *r > size => (
                    Status::Fail,
                    format!(
                        "{stream}: {r} replicas on {size} server(s): the stream cannot be placed"
                    ),
                ),
                (Ok(r), Some(size)) if *r < 3 && size >= 3 => (
                    Status::Warn,
                    format!(
                        "{stream}: {r} replica(s) on a {size}-server cluster: losing one server \
                         loses the stream; set `[nats] replicas = 3`"
                    ),
                ),
                (Ok(r), size) => (
                    Status::Ok,
                    format!(
                        "{stream}: {r} replica(s){}",
                        size.map_or(String::new(), |s| format!(" on {s} server(s)"))
                    ),
                ),
            };
            Check {
                name: "replicas",
                status,
                detail,
            }
        })
        .collect()
}

/// The server's clock (`/varz` `now`) against this host's, for display only.
pub fn clock_check(varz: Option<&serde_json::Value>, now: SystemTime) -> Check {
    let name = "clock";
    let server = varz.and_then(|v| v["now"].as_str()).and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let Some(server) = server else {
        return Check {
            name,
            status: Status::Skip,
            detail: "pass --monitor to compare this host's clock with the server's".to_owned(),
        };
    };
    let local = time::OffsetDateTime::from(now);
    let offset_ms = (local - server).whole_milliseconds();
    Check {
        name,
        status: Status::Ok,
        detail: format!(
            "this host is {offset_ms} ms {} the server (display only: nothing depends on clocks)",
            if offset_ms >= 0 { "ahead of" } else { "behind" }
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_version_floor_follows_each_release_line() {
        let status = |v: &str| version_check(v).status;
        for ok in ["2.11.16", "2.11.20", "2.12.7", "2.14.0", "2.15.1", "3.0.0"] {
            assert_eq!(status(ok), Status::Ok, "{ok}");
        }
        for bad in ["2.11.15", "2.12.6", "2.13.9", "2.10.30", "junk"] {
            assert_eq!(status(bad), Status::Warn, "{bad}");
        }
    }

    #[test]
    fn lazy_fsync_is_a_warning_and_always_is_fine() {
        let lazy = serde_json::json!({"jetstream":{"config":{"sync_interval":120_000_000_000u64}}});
        let c = sync_check(Some(&lazy));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("120s") && c.detail.contains("sync_interval: always"),
            "{}",
            c.detail
        );
        let always = serde_json::json!({"jetstream":{"config":{"sync_always":true}}});
        assert_eq!(sync_check(Some(&always)).status, Status::Ok);
        assert_eq!(sync_check(None).status, Status::Skip);
    }

    #[test]
    fn replicas_are_judged_against_the_cluster_size() {
        let streams = vec![
            ("KV_p_members".to_owned(), Ok(1)),
            ("KV_p_election".to_owned(), Ok(3)),
            ("p_audit".to_owned(), Err("stream not found".to_owned())),
        ];
        let on_three: Vec<Status> = replica_checks(&streams, Some(3))
            .iter()
            .map(|c| c.status)
            .collect();
        assert_eq!(on_three, [Status::Warn, Status::Ok, Status::Skip]);
        let on_one: Vec<Status> = replica_checks(&streams, Some(1))
            .iter()
            .map(|c| c.status)
            .collect();
        assert_eq!(on_one, [Status::Ok, Status::Fail, Status::Skip]);
    }

    #[test]
    fn the_clock_offset_is_shown() {
        let varz = serde_json::json!({"now": "2026-12-03T19:48:36Z"});
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_413_717_500);
        let c = clock_check(Some(&varz), now);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("ms"), "{}", c.detail);
        assert_eq!(clock_check(None, now).status, Status::Skip);
    }
}
