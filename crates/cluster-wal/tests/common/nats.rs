//! A real nats-server (single or 3-server cluster) carrying the log and the object store.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_nats::{
    ConnectOptions, LogConfig, NatsConnection, NatsObjectStore, NatsReplicatedLog,
    ObjectStoreConfig,
};
use cluster_testkit::nats_server::{NatsCluster, NatsServer};
use cluster_wal::{Follower, FollowerConfig, StandbyOptions};

pub struct NatsEnv {
    pub dir: tempfile::TempDir,
    pub server: Option<NatsServer>,
    pub cluster: Option<NatsCluster>,
    pub urls: Vec<String>,
    pub replicas: usize,
    pub log: NatsReplicatedLog,
    pub store: NatsObjectStore,
}

pub fn options(urls: &[String]) -> ConnectOptions {
    ConnectOptions::new(urls.iter().cloned())
        .name("cluster-wal-test")
        .ping_interval(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(5))
}

pub async fn connect(urls: &[String]) -> NatsConnection {
    NatsConnection::connect(options(urls)).await.unwrap()
}

impl NatsEnv {
    pub async fn single() -> Self {
        let server = NatsServer::start();
        let urls = vec![server.url()];
        Self::with(urls, 1, Some(server), None).await
    }

    pub async fn cluster3() -> Self {
        let cluster = NatsCluster::start(3);
        let urls = cluster.urls();
        Self::with(urls, 3, None, Some(cluster)).await
    }

    async fn with(
        urls: Vec<String>,
        replicas: usize,
        server: Option<NatsServer>,
        cluster: Option<NatsCluster>,
    ) -> Self {
        let conn = connect(&urls).await;
        let log = NatsReplicatedLog::open(&conn, Self::log_config(replicas))
            .await
            .unwrap();
        let store = NatsObjectStore::open(&conn, Self::store_config(replicas))
            .await
            .unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            server,
            cluster,
            urls,
            replicas,
            log,
            store,
        }
    }

    pub fn log_config(replicas: usize) -> LogConfig {
        LogConfig::for_database("test", "db", "main")
            .unwrap()
            .replicas(replicas)
    }

    pub fn store_config(replicas: usize) -> ObjectStoreConfig {
        ObjectStoreConfig::for_database("test", "db", "main")
            .unwrap()
            .replicas(replicas)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> Arc<dyn ReplicatedLog> {
        Arc::new(self.log.clone())
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.store.clone())
    }

    /// A log handle on a connection of its own (another node).
    pub async fn node_log(&self) -> (Arc<dyn ReplicatedLog>, Arc<dyn ObjectStore>) {
        let conn = connect(&self.urls).await;
        let log = NatsReplicatedLog::open(&conn, Self::log_config(self.replicas))
            .await
            .unwrap();
        let store = NatsObjectStore::open(&conn, Self::store_config(self.replicas))
            .await
            .unwrap();
        (Arc::new(log), Arc::new(store))
    }

    /// A standby on its own connection.
    pub async fn follower(&self, name: &str) -> Follower {
        let (log, store) = self.node_log().await;
        let mut cfg = FollowerConfig::new(self.path(name));
        cfg.retry_interval = Duration::from_millis(50);
        cfg.options = StandbyOptions {
            fsync_position: false,
        };
        Follower::start(cfg, log, store).unwrap()
    }

    pub async fn last_seq(&self) -> u64 {
        self.log.state().await.unwrap().last_seq
    }
}

/// Polls `f` every 20 ms until it holds, panicking after `within`.
pub async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node of a 2-node Singleton app `db` whose database replicates over `env`'s NATS (own
/// connection; elections and KV on JetStream; the app's `check_epoch` fences the database).
#[allow(dead_code)]
pub struct WalNode {
    pub app: cluster_runtime::App,
    pub db: cluster_wal::WalDb,
    pub wal: Arc<cluster_wal::WalResource>,
    pub platform: cluster_runtime::Platform,
    pub run: tokio::task::JoinHandle<cluster_core::Result<()>>,
}

/// Starts node `name`; `with` adjusts the database options (node id and path are set).
#[allow(dead_code)]
pub async fn wal_node(
    env: &NatsEnv,
    name: &str,
    with: impl FnOnce(cluster_wal::WithSqlite) -> cluster_wal::WithSqlite,
) -> WalNode {
    use cluster_core::RetryPolicy;
    use cluster_runtime::PlatformOptions;
    let conn = connect(&env.urls).await;
    let log = NatsReplicatedLog::open(&conn, NatsEnv::log_config(1))
        .await
        .unwrap();
    let store = NatsObjectStore::open(&conn, NatsEnv::store_config(1))
        .await
        .unwrap();
    let app = cluster_runtime::App::singleton("db").unwrap();
    let (wal, db) =
        with(cluster_wal::WithSqlite::new(env.path(&format!("{name}.db"))).node_id(name))
            .start(Arc::new(log), Arc::new(store))
            .await
            .unwrap();
    let check = app.clone();
    db.set_epoch_check(move |e| check.check_epoch(e));
    app.add_resource(wal.clone(), RetryPolicy::default());
    let platform = cluster_runtime::Platform::builder("walnats", name)
        .options(PlatformOptions {
            replicas: 1,
            ..PlatformOptions::fast()
        })
        .transport(Arc::new(conn.transport()))
        .kv_store(Arc::new(conn.kv_store(Some(1))))
        .build()
        .unwrap();
    platform.register(&app).unwrap();
    let runner = platform.clone();
    let run = tokio::spawn(async move { runner.run().await });
    platform.wait_started().await.unwrap();
    WalNode {
        app,
        db,
        wal,
        platform,
        run,
    }
}
