//! Replication metrics through the `metrics` crate facade (no-ops until the application
//! installs a recorder, e.g. a Prometheus exporter). Every metric carries the label `db` (the
//! database's metrics name, by default the file stem). Names and meanings are listed in
//! `docs/architecture/cluster-wal.md`.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Last txid captured from the leader's WAL (gauge).
pub const LEADER_CAPTURED_TXID: &str = "gc_wal_leader_captured_txid";
/// Last txid acknowledged by the log (gauge).
pub const LEADER_ACKED_TXID: &str = "gc_wal_leader_acked_txid";
/// Bytes of records appended to the log (counter).
pub const SHIPPED_BYTES: &str = "gc_wal_shipped_bytes_total";
/// Leaders stopped because the log rejected their append (fenced) (counter).
pub const FENCED: &str = "gc_wal_fenced_total";
/// Last txid applied on a standby (gauge).
pub const APPLIED_TXID: &str = "gc_wal_applied_txid";
/// The node's replication position, a log sequence (gauge, labels `db` and `role`): on the
/// leader (`role="leader"`) the last entry the log acknowledged, on a standby
/// (`role="standby"`) the last entry applied. The spec's name.
pub const POSITION: &str = "gc_wal_position";
/// Log entries (segments of WAL frames, one or more transactions each) the standby is behind
/// the log tail (gauge, sampled every second). The spec's name.
pub const LAG_SEGMENTS: &str = "gc_wal_lag_segments";
/// Leader commit → standby apply, seconds (histogram; same-host clocks only).
pub const LAG_SECONDS: &str = "gc_wal_lag_seconds";
/// Transactions the standby is behind the log tail (gauge, sampled every second).
pub const LAG_TRANSACTIONS: &str = "gc_wal_lag_transactions";
/// Seconds since the standby last applied a transaction (gauge, sampled every second).
pub const SINCE_APPLY_SECONDS: &str = "gc_wal_seconds_since_apply";
/// Standby errors: refused records, log failures, failed restores (counter).
pub const APPLY_ERRORS: &str = "gc_wal_apply_errors_total";
/// Snapshot restores on a standby (counter).
pub const RESTORES: &str = "gc_wal_snapshot_restores_total";
/// Snapshots published (counter).
pub const SNAPSHOTS: &str = "gc_wal_snapshots_total";
/// Age of the newest published snapshot, seconds (gauge, set by the snapshot scheduler).
pub const SNAPSHOT_AGE_SECONDS: &str = "gc_wal_snapshot_age_seconds";

/// 1 while this node does not stand for leadership because its promotion failed for a reason
/// that repeats, 0 otherwise (gauge).
pub const PROMOTION_BLOCKED: &str = "gc_wal_promotion_blocked";
/// Failed promotions (counter).
pub const PROMOTION_FAILURES: &str = "gc_wal_promotion_failures_total";

/// Registers the descriptions of every metric with the installed recorder.
pub fn describe() {
    describe_gauge!(
        LEADER_CAPTURED_TXID,
        "last txid captured from the leader's WAL"
    );
    describe_gauge!(
        LEADER_ACKED_TXID,
        "last txid acknowledged by the replication log"
    );
    describe_counter!(
        SHIPPED_BYTES,
        "bytes of records appended to the replication log"
    );
    describe_counter!(
        FENCED,
        "leaders stopped because the log accepted another writer"
    );
    describe_gauge!(APPLIED_TXID, "last txid applied on the standby");
    describe_gauge!(
        POSITION,
        "replication position (log sequence): acknowledged on the leader, applied on a standby"
    );
    describe_gauge!(
        LAG_SEGMENTS,
        "log entries the standby is behind the log tail"
    );
    describe_histogram!(LAG_SECONDS, "leader commit to standby apply, seconds");
    describe_gauge!(
        LAG_TRANSACTIONS,
        "transactions the standby is behind the log tail"
    );
    describe_gauge!(
        SINCE_APPLY_SECONDS,
        "seconds since the standby last applied"
    );
    describe_counter!(
        APPLY_ERRORS,
        "standby errors (refused records, log failures)"
    );
    describe_counter!(RESTORES, "snapshot restores on the standby");
    describe_counter!(SNAPSHOTS, "snapshots published");
    describe_gauge!(
        SNAPSHOT_AGE_SECONDS,
        "age of the newest published snapshot, seconds"
    );
    describe_gauge!(
        PROMOTION_BLOCKED,
        "1 while a failed promotion keeps this node from standing for leadership"
    );
    describe_counter!(PROMOTION_FAILURES, "failed promotions");
}

pub(crate) fn set(name: &'static str, db: &str, v: f64) {
    gauge!(name, "db" => db.to_owned()).set(v);
}

/// Sets the `gc_wal_position` of `db` as seen in `role` (`leader` or `standby`).
pub(crate) fn set_position(db: &str, role: &'static str, seq: u64) {
    gauge!(POSITION, "db" => db.to_owned(), "role" => role).set(seq as f64);
}

pub(crate) fn add(name: &'static str, db: &str, n: u64) {
    counter!(name, "db" => db.to_owned()).increment(n);
}

pub(crate) fn observe(name: &'static str, db: &str, v: f64) {
    histogram!(name, "db" => db.to_owned()).record(v);
}

/// The default metrics name of a database: its file stem.
pub(crate) fn name_of(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".to_owned())
}
