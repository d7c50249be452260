//! The active-resource conformance suite against `WalResource` (real SQLite files) over the
//! in-memory log and object store, and over JetStream on a real nats-server: each scenario its
//! own database and log; "held" is the replica leading (writable) under an epoch, "released" a
//! read-only standby.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::ActiveResource;
use cluster_testkit::conformance::resource::{self, Observed, ResourceFactory, ResourceUnderTest};
use cluster_wal::{WalDb, WalResource, WalRole, WithSqlite};
use common::Env;
use common::nats::NatsEnv;

struct Replica<E> {
    wal: Arc<WalResource>,
    db: WalDb,
    /// Keeps the log, the object store and the files alive.
    _env: E,
}

#[async_trait]
impl<E: Send + Sync> ResourceUnderTest for Replica<E> {
    fn resource(&self) -> Arc<dyn ActiveResource> {
        self.wal.clone()
    }

    async fn observe(&self) -> Observed {
        match self.db.role() {
            WalRole::Leader(epoch) => Observed::Held(Some(epoch)),
            WalRole::Standby => Observed::Released,
            WalRole::Stopped => panic!("the replica stopped"),
        }
    }
}

struct Replicas;

#[async_trait]
impl ResourceFactory for Replicas {
    async fn fresh(&self) -> Box<dyn ResourceUnderTest> {
        let env = Env::new();
        let (wal, db) = WithSqlite::new(env.path("n1.db"))
            .node_id("n1")
            .start(env.log(), env.store())
            .await
            .unwrap();
        Box::new(Replica { wal, db, _env: env })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_suite_wal() {
    resource::run_all(&Replicas).await;
}

struct NatsReplicas;

#[async_trait]
impl ResourceFactory for NatsReplicas {
    async fn fresh(&self) -> Box<dyn ResourceUnderTest> {
        let env = NatsEnv::single().await;
        let (wal, db) = WithSqlite::new(env.path("n1.db"))
            .node_id("n1")
            .start(env.log(), env.store())
            .await
            .unwrap();
        Box::new(Replica { wal, db, _env: env })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_suite_wal_nats() {
    resource::run_all(&NatsReplicas).await;
}
