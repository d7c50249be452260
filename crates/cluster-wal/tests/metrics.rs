//! The `gc_wal_*` metrics reach an installed `metrics` recorder with the `db` label.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_wal::metrics as m;
use cluster_wal::{Durability, bootstrap};
use common::*;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// name{db} → (counter total, last gauge value, histogram samples)
#[derive(Default)]
struct Values(Mutex<BTreeMap<String, (u64, f64, u64)>>);

struct Cell(Arc<Values>, String);

impl Cell {
    fn with(&self, f: impl FnOnce(&mut (u64, f64, u64))) {
        let mut g = self.0.0.lock().unwrap();
        f(g.entry(self.1.clone()).or_default());
    }
}

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.with(|e| e.0 += v);
    }
    fn absolute(&self, v: u64) {
        self.with(|e| e.0 = e.0.max(v));
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        self.with(|e| e.1 += v);
    }
    fn decrement(&self, v: f64) {
        self.with(|e| e.1 -= v);
    }
    fn set(&self, v: f64) {
        self.with(|e| e.1 = v);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _v: f64) {
        self.with(|e| e.2 += 1);
    }
}

struct TestRecorder(Arc<Values>);

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let db = key
            .labels()
            .find(|l| l.key() == "db")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        Arc::new(Cell(self.0.clone(), format!("{}{{{db}}}", key.name())))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_position_lag_bytes_and_errors_are_exported() {
    let values = Arc::new(Values::default());
    metrics::set_global_recorder(TestRecorder(values.clone())).unwrap();
    m::describe();
    let get = |k: &str| values.0.lock().unwrap().get(k).copied().unwrap_or_default();

    let env = Env::new();
    let leader = bootstrap(env.path("leader.db"), "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)").await;
    let f = env.follower("standby.db");
    for _ in 0..20 {
        leader
            .write(Durability::Async, |c| {
                c.execute_batch("INSERT INTO t(v) VALUES (randomblob(500))")
            })
            .await
            .unwrap();
    }
    let txid = converge(&leader, &f).await;
    let p = leader.progress();
    assert_eq!(get("gc_wal_leader_acked_txid{leader}").1, txid as f64);
    assert_eq!(get("gc_wal_leader_captured_txid{leader}").1, txid as f64);
    // The spec's position: acknowledged on the leader, applied on the standby.
    assert!(p.acked_seq > 0);
    assert_eq!(get("gc_wal_position{leader}").1, p.acked_seq as f64);
    assert_eq!(get("gc_wal_position{standby}").1, p.acked_seq as f64);
    assert_eq!(get("gc_wal_shipped_bytes_total{leader}").0, p.bytes_shipped);
    assert_eq!(get("gc_wal_applied_txid{standby}").1, txid as f64);
    assert!(
        get("gc_wal_lag_seconds{standby}").2 >= 21,
        "one lag sample per applied txn"
    );
    // The per-second sample reports no lag in transactions once caught up.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get("gc_wal_lag_transactions{standby}").1, 0.0);
    let has = |k: &str| values.0.lock().unwrap().contains_key(k);
    assert!(
        has("gc_wal_lag_segments{standby}"),
        "the lag in segments is sampled"
    );
    assert_eq!(get("gc_wal_lag_segments{standby}").1, 0.0);
    assert!(!has("gc_wal_leader_acked_seq{leader}") && !has("gc_wal_applied_seq{standby}"));
    assert!(get("gc_wal_seconds_since_apply{standby}").1 >= 0.5);
    assert_eq!(get("gc_wal_apply_errors_total{standby}").0, 0);
    // A standby that cannot read the log counts its errors.
    drop(f.stop().await.unwrap());
    for _ in 0..5 {
        exec(&leader, "INSERT INTO t(v) VALUES (x'01')").await;
    }
    leader
        .wait_acked(leader.progress().captured_txid)
        .await
        .unwrap();
    env.log.set_available(false);
    let f = env.follower("standby.db");
    tokio::time::timeout(Duration::from_secs(10), f.wait_for(|p| p.errors > 0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        get("gc_wal_apply_errors_total{standby}").0 >= 1,
        "errors are counted"
    );
    env.log.set_available(true);
    converge(&leader, &f).await;
    drop(f.stop().await.unwrap());
    leader.shutdown().await;
}
