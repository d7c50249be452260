//! Replicated SQLite databases for apps (`cluster-wal`), enabled by the `sqlite` feature.
//!
//! [`attach`] (any log and object store) or [`attach_nats`] (the JetStream stream and object
//! store of the database) starts the local replica as a standby and adds its
//! [`WalResource`] to the app, so that the replica is promoted (epoch-fenced) before the app's
//! `on_active` and demoted after its `on_passive`. The app reaches the database again with
//! [`AppDbExt::db`] (the sqlx pool: token-fenced writes on the leader, read-only on standbys)
//! or [`AppDbExt::wal_db`] (rusqlite closures, status, snapshots).
//!
//! ```no_run
//! # async fn demo(conn: &cluster::nats::NatsConnection) -> cluster::sqlite::Result<()> {
//! use cluster::App;
//! use cluster::sqlite::{AppDbExt, WithSqlite, attach_nats, sqlx};
//!
//! let app = App::singleton("orders")?;
//! attach_nats(&app, conn, "prod", "node-1", 3, WithSqlite::new("/var/lib/orders/orders.db")).await?;
//! app.on_active(|ctx| async move {
//!     let db = ctx.app.db().ok_or("no database attached")?;
//!     let epoch = ctx.epoch.ok_or("on_active without an epoch")?;
//!     let mut tx = db.begin(epoch).await?;
//!     sqlx::query("INSERT INTO events(kind) VALUES ('promoted')").execute(&mut *tx).await?;
//!     tx.commit().await?;
//!     Ok(())
//! });
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use cluster_core::RetryPolicy;
use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_nats::{
    LogConfig, NatsConnection, NatsObjectStore, NatsReplicatedLog, ObjectStoreConfig,
};
use cluster_runtime::App;

pub use cluster_wal::{
    Durability, FencedTx, PromotionBlock, Result, SnapshotMeta, WalDb, WalError, WalPool,
    WalResource, WalRole, WalStatus, WithSqlite, sqlx,
};

/// How long the app's resource chain gives the database to activate: promotion may first wait
/// for catch-up (30 s by default) and restore a snapshot.
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts replication of `with`'s database for `app` over `log` and `store` and attaches it:
/// the [`WalResource`] is added to the app's resources (add it before a VIP or a backend that
/// needs the database, so that promotion runs first), writes are fenced by the app's
/// leadership epoch ([`App::check_epoch`]), promotions, divergences and restores are audited on
/// the platform's audit stream (category `wal`), the `wal.*` admin operations (`cluster snapshot …`)
/// are registered, and the handle is attached so that [`AppDbExt::db`] finds it. One database
/// per app; attaching a second replaces the handle `db()` returns (both stay replicated).
pub async fn attach(
    app: &App,
    with: WithSqlite,
    log: Arc<dyn ReplicatedLog>,
    store: Arc<dyn ObjectStore>,
) -> Result<WalDb> {
    let (resource, db) = with.audit(Arc::new(app.clone())).start(log, store).await?;
    let check = app.clone();
    db.set_epoch_check(move |epoch| check.check_epoch(epoch));
    cluster_wal::admin::register(app, &db);
    app.add_resource(
        resource,
        RetryPolicy {
            timeout: ACTIVATION_TIMEOUT,
            ..RetryPolicy::default()
        },
    );
    app.set_extension(db.clone());
    Ok(db)
}

/// [`attach`] on NATS: the database's log is the JetStream stream `{P}_repl_{A}_{db}` and its
/// snapshots live in the object store `{P}_snap_{A}_{db}` (`db` = the file stem of the path;
/// `replicas` = their JetStream replica count). `node` is this node's id, written into the
/// records it ships.
pub async fn attach_nats(
    app: &App,
    conn: &NatsConnection,
    platform: &str,
    node: &str,
    replicas: usize,
    with: WithSqlite,
) -> Result<WalDb> {
    let name = app.name().to_string();
    let db = with
        .path()
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let log = NatsReplicatedLog::open(
        conn,
        LogConfig::for_database(platform, &name, &db)?.replicas(replicas),
    )
    .await?;
    let store = NatsObjectStore::open(
        conn,
        ObjectStoreConfig::for_database(platform, &name, &db)?.replicas(replicas),
    )
    .await?;
    attach(app, with.node_id(node), Arc::new(log), Arc::new(store)).await
}

/// The app's replicated database, once attached with [`attach`] or [`attach_nats`].
pub trait AppDbExt {
    /// The app's sqlx pool: writes need the leadership epoch ([`WalPool::begin`]) and are
    /// refused by SQLite itself without it; read-only on standbys. `None` when no database is
    /// attached.
    fn db(&self) -> Option<WalPool>;

    /// The app's database handle (rusqlite closures, role, status, snapshots).
    fn wal_db(&self) -> Option<WalDb>;
}

impl AppDbExt for App {
    fn db(&self) -> Option<WalPool> {
        self.wal_db().map(|db| db.pool())
    }

    fn wal_db(&self) -> Option<WalDb> {
        self.extension::<WalDb>().map(|db| (*db).clone())
    }
}
