//! `WalResource` on a 2-node Singleton app over a real nats-server: elections and app KV on
//! JetStream KV, the WAL log on a JetStream stream, snapshots in a JetStream object store; each
//! node has its own connection. Leader writes with its token, steps down, the other node leads
//! with every committed transaction and continues; the old leader follows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cluster_wal::{Durability, ErrorKind, WalDb, WalRole};
use common::nats::{NatsEnv, WalNode, wal_node};
use common::{assert_integrity, assert_same_pages};

type Node = WalNode;

async fn node(env: &NatsEnv, name: &str) -> Node {
    wal_node(env, name, |w| {
        w.snapshot_interval(Duration::from_millis(500))
            .retention(2, None)
            .durability(Durability::CommitWait)
    })
    .await
}

async fn count(db: &WalDb) -> i64 {
    db.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
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

async fn insert(db: &WalDb, token: cluster_core::Epoch, id: i64) -> cluster_wal::Result<()> {
    db.write(token, move |c| {
        c.execute("INSERT INTO t(id, v) VALUES (?1, randomblob(300))", [id])
            .map(|_| ())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_singleton_over_nats_fails_over_with_all_committed_data() {
    let env = NatsEnv::single().await;
    let n1 = node(&env, "n1").await;
    let n2 = node(&env, "n2").await;
    let nodes = [&n1, &n2];
    let first = wait_leader(&nodes, Duration::from_secs(20)).await;
    let (a, b) = (nodes[first], nodes[1 - first]);
    let token = a.app.fencing_token().unwrap();
    assert_eq!(a.db.role(), WalRole::Leader(token));
    a.db.write(token, |c| {
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    })
    .await
    .unwrap();
    for i in 0..40 {
        insert(&a.db, token, i).await.unwrap();
    }
    let err = insert(&b.db, token, 999).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
    common::nats::eventually(Duration::from_secs(10), async || count(&b.db).await == 40).await;
    common::nats::eventually(Duration::from_secs(10), async || {
        !a.db.snapshots().await.unwrap().is_empty()
    })
    .await;

    let t0 = tokio::time::Instant::now();
    a.app.step_down().await.unwrap();
    let second = wait_leader(&nodes, Duration::from_secs(20)).await;
    assert_eq!(nodes[second].platform.node_id(), b.platform.node_id());
    let token2 = b.app.fencing_token().unwrap();
    assert!(token2 > token);
    assert_eq!(
        count(&b.db).await,
        40,
        "all committed data on the new leader"
    );
    insert(&b.db, token2, 40).await.unwrap();
    println!(
        "step-down to first acknowledged write on the new leader: {:?}",
        t0.elapsed()
    );
    for i in 41..60 {
        insert(&b.db, token2, i).await.unwrap();
    }
    let err = insert(&a.db, token, 2000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
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
