//! Built by `cargo xtask sqlite-external` outside the workspace (no `LIBSQLITE3_FLAGS`): a
//! leader and two standbys (one through the facade's `WithSqlite`) replicate one transaction
//! through an in-memory log; the standbys write pages through `sqlite_dbpage`.

use std::sync::Arc;
use std::time::Duration;

use cluster::sqlite::WithSqlite;
use cluster_memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::{Durability, Follower, FollowerConfig, bootstrap};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("wal-external-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    // The facade's builder opens a standby: this is where `DbpageUnavailable` surfaced.
    let (_resource, db) = WithSqlite::new(dir.join("facade.db"))
        .node_id("x")
        .start(Arc::new(log.clone()), Arc::new(store.clone()))
        .await?;
    let leader = bootstrap(
        dir.join("leader.db"),
        "l",
        1,
        Arc::new(log.clone()),
        Arc::new(store.clone()),
    )
    .await?;
    let follower = Follower::start(
        FollowerConfig::new(dir.join("standby.db")),
        Arc::new(log.clone()),
        Arc::new(store.clone()),
    )?;
    let (_, txid) = leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (42)")
        })
        .await?;
    tokio::time::timeout(Duration::from_secs(20), follower.wait_applied(txid)).await??;
    drop(follower.stop().await?);
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let v = db
                .read(|c| c.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0)))
                .await;
            if v.ok() == Some(42) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let standby = cluster_wal::sqlite::open_readonly(&dir.join("standby.db"))?;
    let v: i64 = standby.query_row("SELECT x FROM t", [], |r| r.get(0))?;
    drop(standby);
    leader.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    if v != 42 {
        return Err(format!("the standby holds {v}, not 42").into());
    }
    println!("OK: sqlite_dbpage available outside the workspace; txid {txid} on two standbys");
    Ok(())
}
