//! `cluster::sqlite` on a 2-node Singleton app (in-memory network, log and object store; real
//! SQLite files): `attach` wires the replicated database into the app, `app.db()` finds it on
//! every node, the leader writes with its epoch, the standby reads, and after a step-down the
//! roles swap through the same handles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cluster::runtime::PlatformOptions;
use cluster::sqlite::{AppDbExt, Durability, WalRole, WithSqlite, attach, sqlx};
use cluster::{App, Epoch};
use cluster_testkit::scenario::SimCluster;
use cluster_wal::memory::{MemoryLog, MemoryObjectStore};

async fn count(app: &App) -> i64 {
    let db = app.db().expect("a database is attached");
    let mut conn = db.acquire().await.unwrap();
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(-1)
}

async fn insert(app: &App, token: Epoch, id: i64) -> cluster::sqlite::Result<()> {
    let db = app.db().expect("a database is attached");
    let mut tx = db.begin(token).await?;
    sqlx::query("INSERT INTO orders(id) VALUES (?)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_database_is_reachable_from_the_app_and_follows_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let mut cluster = SimCluster::new("sqlapp", PlatformOptions::fast());
    let mut apps = Vec::new();
    for n in ["n1", "n2"] {
        let app = App::singleton("orders").unwrap();
        assert!(app.db().is_none(), "nothing attached yet");
        let with = WithSqlite::new(dir.path().join(format!("{n}.db")))
            .node_id(n)
            .durability(Durability::CommitWait);
        attach(&app, with, Arc::new(log.clone()), Arc::new(store.clone()))
            .await
            .unwrap();
        cluster.start_node(n, vec![app.clone()]).await.unwrap();
        apps.push((n.to_owned(), app));
    }
    let (first, _) = cluster.wait_leader("orders", Duration::from_secs(20)).await;
    let leader = apps.iter().find(|(n, _)| *n == first).unwrap().1.clone();
    let standby = apps.iter().find(|(n, _)| *n != first).unwrap().1.clone();
    let token = leader.fencing_token().unwrap();
    assert_eq!(leader.wal_db().unwrap().role(), WalRole::Leader(token));
    assert_eq!(standby.wal_db().unwrap().role(), WalRole::Standby);

    let db = leader.db().unwrap();
    let mut tx = db.begin(token).await.unwrap();
    sqlx::query("CREATE TABLE orders(id INTEGER PRIMARY KEY)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for id in 0..20 {
        insert(&leader, token, id).await.unwrap();
    }
    // The app's epoch check fences the database: a stale token and the standby are refused.
    let stale = insert(&leader, Epoch(token.get() - 1), 100)
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), cluster_wal::ErrorKind::Fenced, "{stale}");
    let on_standby = insert(&standby, token, 101).await.unwrap_err();
    assert_eq!(
        on_standby.kind(),
        cluster_wal::ErrorKind::Fenced,
        "{on_standby}"
    );
    eventually("the standby reads 20 rows", async || {
        count(&standby).await == 20
    })
    .await;

    // Step down: the same handles swap roles.
    leader.step_down().await.unwrap();
    let (second, _) = cluster.wait_leader("orders", Duration::from_secs(20)).await;
    assert_ne!(second, first);
    let token2 = standby.fencing_token().unwrap();
    assert!(token2 > token);
    eventually("the new leader's database is promoted", async || {
        standby.wal_db().unwrap().role() == WalRole::Leader(token2)
    })
    .await;
    assert_eq!(count(&standby).await, 20, "every committed row survived");
    for id in 20..30 {
        insert(&standby, token2, id).await.unwrap();
    }
    let old = insert(&leader, token, 200).await.unwrap_err();
    assert_eq!(old.kind(), cluster_wal::ErrorKind::Fenced, "{old}");
    eventually("the old leader follows", async || {
        count(&leader).await == 30
    })
    .await;
    // Both promotions are on the platform's audit stream, each from the promoted node.
    let audit = cluster.node("n1").platform.audit();
    let filter = cluster::core::audit::AuditFilter {
        category: Some("wal".into()),
        ..Default::default()
    };
    let mut promoted = Vec::new();
    eventually("two wal.promoted records", async || {
        audit.flush().await;
        promoted = audit
            .query(&filter)
            .await
            .unwrap()
            .entries
            .into_iter()
            .filter(|e| e.record.action == "promoted")
            .map(|e| (e.record.node.to_string(), e.record.data["epoch"].as_u64()))
            .collect();
        promoted.len() == 2
    })
    .await;
    assert_eq!(
        promoted,
        vec![
            (first.clone(), Some(token.get())),
            (second.clone(), Some(token2.get()))
        ]
    );
    for n in ["n1", "n2"] {
        cluster.stop_node(n).await.unwrap();
    }
}
