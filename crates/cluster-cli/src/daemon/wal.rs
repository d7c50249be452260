//! `[apps.sqlite]`: SQLite replication of an app's database through NATS (`cluster-wal`).
//!
//! The daemon opens the database's JetStream log and snapshot object store, starts the local
//! replica as a standby and attaches the `WalResource` **first**, so that promotion runs before
//! the VIP is claimed and the backend starts (and demotion after they stopped). The backend
//! process is the writer: capture picks its commits up by polling the WAL (25 ms), so only
//! async durability applies. The `wal.*` admin extensions (`cluster snapshot …`) are
//! registered on the app.

use cluster::App;
use cluster::sqlite::{Durability, WithSqlite, attach_nats};

use crate::config::SqliteConfig;
use crate::exit::{CliResult, Code, Failure};

/// What the WAL of a daemon app needs from the daemon.
pub(crate) struct WalContext<'a> {
    pub(crate) conn: &'a cluster_nats::NatsConnection,
    pub(crate) platform: &'a str,
    pub(crate) node: &'a str,
    pub(crate) replicas: usize,
}

/// Starts replication of `cfg` for `app` and attaches it (call before VIP and backend).
pub(crate) async fn attach(app: &App, cfg: &SqliteConfig, ctx: &WalContext<'_>) -> CliResult {
    let name = app.name().to_string();
    if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::new(Code::Error, format!("app {name}: {}: {e}", dir.display()))
        })?;
    }
    let db = cfg
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut with = WithSqlite::new(&cfg.path)
        .retention(cfg.retention_count, cfg.retention_age)
        .durability(if cfg.commit_wait {
            Durability::CommitWait
        } else {
            Durability::Async
        })
        .metrics_name(format!("{name}_{db}"));
    if let Some(every) = cfg.snapshot_interval {
        with = with.snapshot_interval(every);
    }
    attach_nats(app, ctx.conn, ctx.platform, ctx.node, ctx.replicas, with)
        .await
        .map_err(|e| {
            let code = match e {
                cluster::sqlite::WalError::Log(cluster::Error::InvalidArgument(_)) => Code::Invalid,
                _ => Code::Error,
            };
            Failure::new(
                code,
                format!("app {name}: sqlite.path {}: {e}", cfg.path.display()),
            )
        })?;
    tracing::info!(app = %name, db = %cfg.path.display(), "SQLite replication attached");
    Ok(())
}
