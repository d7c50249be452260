//! The randomised workload shared by the memory and NATS replication tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use cluster_wal::Durability;
use rusqlite::params;

use super::Rng;

/// One random step of the workload; returns a label for failure messages.
pub async fn step(leader: &cluster_wal::Leader, rng: &mut Rng) -> &'static str {
    let op = rng.below(100);
    let seed = rng.next();
    let dur = if rng.below(4) == 0 {
        Durability::CommitWait
    } else {
        Durability::Async
    };
    match op {
        0..=44 => {
            let rows = 1 + (seed % 5) as i64;
            leader
                .write(dur, move |c| {
                    let tx = c.transaction()?;
                    for i in 0..rows {
                        tx.execute(
                            "INSERT INTO t(n, v) VALUES (?1, randomblob(?2))",
                            params![(seed as i64 + i) % 1000, 10 + (seed % 300) as i64],
                        )?;
                    }
                    tx.commit()
                })
                .await
                .unwrap();
            "insert"
        }
        45..=69 => {
            leader
                .write(dur, move |c| {
                    c.execute(
                        "UPDATE t SET v = randomblob(?1), n = n + 1 WHERE id % 7 = ?2",
                        params![(seed % 500) as i64, (seed % 7) as i64],
                    )
                    .map(|_| ())
                })
                .await
                .unwrap();
            "update"
        }
        70..=79 => {
            leader
                .write(dur, move |c| {
                    c.execute("DELETE FROM t WHERE n % 13 = ?1", [(seed % 13) as i64])
                        .map(|_| ())
                })
                .await
                .unwrap();
            "delete"
        }
        80..=84 => {
            // A big transaction that spills the (tiny) cache into the WAL before committing.
            leader
                .write(dur, move |c| {
                    c.pragma_update(None, "cache_size", 10)?;
                    let tx = c.transaction()?;
                    for i in 0..800 {
                        tx.execute(
                            "INSERT INTO t(n, v) VALUES (?1, randomblob(900))",
                            [(seed as i64 + i) % 1000],
                        )?;
                    }
                    tx.commit()
                })
                .await
                .unwrap();
            "big"
        }
        85..=89 => {
            // A spilled transaction rolled back: its frames must never be shipped.
            leader
                .write(dur, move |c| {
                    c.pragma_update(None, "cache_size", 10)?;
                    let tx = c.transaction()?;
                    for i in 0..600 {
                        tx.execute(
                            "INSERT INTO t(n, v) VALUES (?1, randomblob(900))",
                            [(seed as i64 + i) % 1000],
                        )?;
                    }
                    tx.rollback()
                })
                .await
                .unwrap();
            "rollback"
        }
        90..=92 => {
            leader
                .write(dur, |c| {
                    c.execute_batch("DELETE FROM t WHERE id % 3 = 0; VACUUM;")
                })
                .await
                .unwrap();
            "vacuum"
        }
        93..=95 => {
            leader.checkpoint().await.unwrap();
            "checkpoint"
        }
        _ => {
            leader
                .write(dur, move |c| {
                    c.execute_batch(
                        "CREATE TABLE IF NOT EXISTS extra(a TEXT); INSERT INTO extra VALUES ('x');",
                    )?;
                    if seed.is_multiple_of(2) {
                        c.execute_batch("DROP TABLE extra")?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
            "schema"
        }
    }
}
