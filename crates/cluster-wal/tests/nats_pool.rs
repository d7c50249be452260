//! The app-facing sqlx pool (`WalDb::pool`) on a 2-node Singleton app over a real
//! nats-server (elections and KV on JetStream, the WAL log on a stream, snapshots in an object
//! store; one connection per node): the leader writes through fenced transactions with its
//! app's token (the app's `check_epoch` is the epoch check inside the commit hook), commit-wait
//! returns after JetStream stored the transaction, the standby reads through its read-only
//! pool, and after a step-down the other node's pool writes with the new token while the old
//! leader's pool turns read-only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cluster_core::Epoch;
use cluster_core::stream::ReplicatedLog;
use cluster_wal::record::H_TXID;
use cluster_wal::sqlx;
use cluster_wal::{Durability, ErrorKind, WalDb, WalError, WalRole};
use common::nats::{NatsEnv, WalNode, wal_node};
use common::{assert_integrity, assert_same_pages};

type Node = WalNode;

async fn node(env: &NatsEnv, name: &str) -> Node {
    wal_node(env, name, |w| w.durability(Durability::CommitWait)).await
}

async fn count(db: &WalDb) -> i64 {
    let mut conn = db.pool().acquire().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(-1)
}

async fn wait_leader(nodes: &[&Node], within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|i| nodes[*i].app.is_leader())
            .collect();
        assert!(leaders.len() <= 1, "two leaders");
        if let Some(i) = leaders.first() {
            return *i;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn insert(db: &WalDb, token: Epoch, id: i64) -> cluster_wal::Result<Option<u64>> {
    let mut tx = db.pool().begin(token).await?;
    sqlx::query("INSERT INTO t(id, v) VALUES (?, randomblob(300))")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlx_pool_over_nats_writes_fenced_replicates_and_follows_failover() {
    let env = NatsEnv::single().await;
    let n1 = node(&env, "n1").await;
    let n2 = node(&env, "n2").await;
    let nodes = [&n1, &n2];
    let first = wait_leader(&nodes, Duration::from_secs(20)).await;
    let (a, b) = (nodes[first], nodes[1 - first]);
    let token = a.app.fencing_token().unwrap();
    assert_eq!(a.db.pool().role(), WalRole::Leader(token));
    let mut tx = a.db.pool().begin(token).await.unwrap();
    sqlx::query("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for i in 0..40 {
        let txid = insert(&a.db, token, i).await.unwrap().unwrap();
        // Commit-wait: JetStream stored the transaction before commit returned.
        let last = env.log.get(env.last_seq().await).await.unwrap().unwrap();
        let logged: u64 = last.headers.get(H_TXID).unwrap().parse().unwrap();
        assert_eq!(logged, txid);
    }
    // The standby's pool is read-only and serves the replicated rows.
    let err = insert(&b.db, token, 999).await.unwrap_err();
    assert!(matches!(err, WalError::NotLeader(_)), "{err}");
    common::nats::eventually(Duration::from_secs(10), async || count(&b.db).await == 40).await;

    // Step down: the other node's pool (same handles) writes under the new token.
    let (pool_a, pool_b) = (a.db.pool(), b.db.pool());
    a.app.step_down().await.unwrap();
    let second = wait_leader(&nodes, Duration::from_secs(20)).await;
    assert_eq!(nodes[second].platform.node_id(), b.platform.node_id());
    let token2 = b.app.fencing_token().unwrap();
    assert!(token2 > token);
    assert_eq!(pool_b.role(), WalRole::Leader(token2));
    assert_eq!(
        pool_b.begin(token).await.unwrap_err().kind(),
        ErrorKind::Fenced,
        "the old token is stale on the new leader"
    );
    for i in 40..60 {
        insert(&b.db, token2, i).await.unwrap();
    }
    assert!(matches!(
        pool_a.begin(token).await.unwrap_err(),
        WalError::NotLeader(_)
    ));
    common::nats::eventually(Duration::from_secs(10), async || count(&a.db).await == 60).await;
    assert_eq!(a.db.status().standby.unwrap().errors, 0);

    for n in [n1, n2] {
        n.platform.shutdown();
        n.run.await.unwrap().unwrap();
        n.wal.shutdown().await;
    }
    assert_same_pages(&env.path("n1.db"), &env.path("n2.db"));
    assert_integrity(&env.path("n2.db"));
}
