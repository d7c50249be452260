//! `[apps.sqlite]`: SQLite replication of an app's database through NATS (`cluster-wal`).
//!
//! The daemon opens the database's JetStream log and snapshot object store, starts the local
//! replica as a standby and attaches the `WalResource` **first**, so that promotion runs before
//! the VIP is claimed and the backend starts (and demotion after they stopped). The backend
//! process is the writer: capture picks its commits up by polling the WAL (25 ms), so only
//! async durability applies. The `wal.*` admin extensions (`cluster snapshot …`) are
//! registered on the app.

use std::sync::Arc;
use std::time::Duration;

use cluster::App;
use cluster::core::runtime::RetryPolicy;
use cluster_nats::{
    LogConfig, NatsConnection, NatsObjectStore, NatsReplicatedLog, ObjectStoreConfig,
};
use cluster_wal::{Durability, WithSqlite};

use crate::config::SqliteConfig;
use crate::exit::{CliResult, Code, Failure};

/// What the WAL of a daemon app needs from the daemon.
pub(crate) struct WalContext<'a> {
    pub(crate) conn: &'a NatsConnection,
    pub(crate) platform: &'a str,
    pub(crate) node: &'a str,
    pub(crate) replicas: usize,
}

/// The database's name in stream and bucket names: the file stem.
fn db_name(cfg: &SqliteConfig) -> String {
    cfg.path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Starts replication of `cfg` for `app` and attaches it (call before VIP and backend).
pub(crate) async fn attach(app: &App, cfg: &SqliteConfig, ctx: &WalContext<'_>) -> CliResult {
    let name = app.name().to_string();
    let db = db_name(cfg);
    let invalid = |e: cluster::Error| {
        Failure::new(
            Code::Invalid,
            format!("app {name}: sqlite.path {}: {e}", cfg.path.display()),
        )
    };
    let log_cfg = LogConfig::for_database(ctx.platform, &name, &db)
        .map_err(invalid)?
        .replicas(ctx.replicas);
    let store_cfg = ObjectStoreConfig::for_database(ctx.platform, &name, &db)
        .map_err(invalid)?
        .replicas(ctx.replicas);
    if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::new(Code::Error, format!("app {name}: {}: {e}", dir.display()))
        })?;
    }
    let log = NatsReplicatedLog::open(ctx.conn, log_cfg).await?;
    let store = NatsObjectStore::open(ctx.conn, store_cfg).await?;
    let mut with = WithSqlite::new(&cfg.path)
        .node_id(ctx.node)
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
    let (wal, handle) = with
        .start(Arc::new(log), Arc::new(store))
        .await
        .map_err(|e| Failure::new(Code::Error, format!("app {name}: sqlite: {e}")))?;
    let check = app.clone();
    handle.set_epoch_check(move |e| check.check_epoch(e));
    cluster_wal::admin::register(app, &handle);
    app.add_resource(
        wal,
        RetryPolicy {
            // Promotion may first wait for catch-up (30 s budget) and restore a snapshot.
            timeout: Duration::from_secs(60),
            ..RetryPolicy::default()
        },
    );
    tracing::info!(app = %name, db = %cfg.path.display(), "SQLite replication attached");
    Ok(())
}
