//! A clean start: fresh, empty standbys are already following when the first leader bootstraps
//! the lineage. The bootstrap's `EpochStart` carries the checksum of the leader's (non-empty:
//! page 1 of a WAL-mode file) database, and its snapshot is published right after; a fresh
//! standby that meets the `EpochStart` first must wait for that snapshot quietly, not report a
//! divergence (no `wal.divergence` audit record, no error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use cluster_wal::bootstrap;
use common::{Env, RecordedAudit, assert_same_pages, converge, exec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_standbys_on_a_clean_start_report_no_divergence() {
    for round in 0..5 {
        let env = Env::new();
        let audit = Arc::new(RecordedAudit::default());
        let followers: Vec<_> = (0..2)
            .map(|i| env.follower_audited(&format!("s{i}.db"), Some(audit.clone())))
            .collect();
        // Let the followers reach their live read of the empty log.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let leader = bootstrap(env.path("leader.db"), "n1", 1, env.log(), env.store())
            .await
            .unwrap();
        exec(&leader, "CREATE TABLE t(x); INSERT INTO t VALUES (1)").await;
        for f in &followers {
            converge(&leader, f).await;
        }
        let errors: Vec<_> = followers.iter().map(|f| f.progress()).collect();
        assert!(
            audit.all("divergence").is_empty(),
            "round {round}: false divergence alarm: {:?}",
            audit.all("divergence")
        );
        for p in &errors {
            assert_eq!(
                p.errors, 0,
                "round {round}: standby errors: {:?}",
                p.last_error
            );
        }
        leader.shutdown().await;
        for (i, f) in followers.into_iter().enumerate() {
            drop(f.stop().await.unwrap());
            assert_same_pages(&env.path("leader.db"), &env.path(&format!("s{i}.db")));
        }
    }
}
