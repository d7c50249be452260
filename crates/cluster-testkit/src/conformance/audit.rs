//! Conformance suite for [`AuditSink`] (see its contract): records are read back in storage
//! order from another handle, filters select exactly the matching records, paging never cuts
//! silently, ids deduplicate, invalid records are refused, and garbage in the store is
//! skipped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cluster_core::audit::{AuditFilter, AuditPage, AuditRecord, AuditSink};
use cluster_core::{AppName, NodeId};

use super::{announce, ok, unique_name};

/// Two handles on one audit log ("two nodes").
pub struct AuditLogs {
    /// The handle records are appended through.
    pub writer: Arc<dyn AuditSink>,
    /// Another handle (its own connection) on the same log.
    pub reader: Arc<dyn AuditSink>,
}

/// Opens audit logs.
///
/// # To ensure correctness
///
/// * [`AuditFactory::open`] returns two handles on one new, empty log named `name` (a fresh
///   `[a-z0-9_]` name per scenario); logs of different names share nothing.
#[async_trait]
pub trait AuditFactory: Send + Sync {
    /// Two handles on the empty log `name`.
    async fn open(&self, name: &str) -> AuditLogs;
}

/// A sink that stores bytes (a stream), so a buggy or hostile writer can put anything in it.
#[async_trait]
pub trait RawAuditFactory: AuditFactory {
    /// Stores `bytes` as a record of `category` in log `name`, bypassing the sink's checks.
    async fn store_raw(&self, name: &str, category: &str, bytes: &[u8]);
}

/// Runs every scenario except [`garbage_in_the_store_is_skipped`] (sinks that store bytes
/// run it too, see [`run_all_raw`]).
pub async fn run_all(factory: &dyn AuditFactory) {
    records_are_read_back_in_order_from_another_handle(factory).await;
    filters_select_exactly_the_matching_records(factory).await;
    paging_never_cuts_silently(factory).await;
    records_with_one_id_are_stored_once(factory).await;
    invalid_records_are_refused(factory).await;
}

/// Runs every scenario, including the ones for sinks that store bytes.
pub async fn run_all_raw(factory: &dyn RawAuditFactory) {
    run_all(factory).await;
    garbage_in_the_store_is_skipped(factory).await;
}

/// A record at `secs` after the Unix epoch.
fn record(secs: u64, category: &str, action: &str, app: Option<&str>) -> AuditRecord {
    let node = NodeId::new("n1").expect("valid node");
    let app: Option<AppName> = app.map(|a| a.parse().expect("valid app"));
    AuditRecord::at(
        UNIX_EPOCH + Duration::from_secs(secs),
        category,
        action,
        app.as_ref(),
        &node,
        serde_json::json!({ "n": secs }),
    )
}

async fn append_all(logs: &AuditLogs, records: &[AuditRecord]) {
    for r in records {
        ok("append", logs.writer.append(r).await);
    }
}

fn records(page: &AuditPage) -> Vec<AuditRecord> {
    page.entries.iter().map(|e| e.record.clone()).collect()
}

/// Appended records come back from the other handle, equal, in append order, with strictly
/// increasing sequences; the page is not truncated.
pub async fn records_are_read_back_in_order_from_another_handle(factory: &dyn AuditFactory) {
    announce(
        "audit",
        "records_are_read_back_in_order_from_another_handle",
    );
    let logs = factory.open(&unique_name("au_order")).await;
    let empty = ok(
        "query an empty log",
        logs.reader.query(&AuditFilter::default()).await,
    );
    assert!(
        empty.entries.is_empty() && !empty.truncated,
        "an empty log returns nothing: {empty:?}"
    );
    let written: Vec<AuditRecord> = (0..6)
        .map(|i| {
            let category = ["node", "election", "placement"][i % 3];
            record(1_000 + i as u64, category, "step.done", Some("a1"))
        })
        .collect();
    append_all(&logs, &written).await;
    let page = ok("query", logs.reader.query(&AuditFilter::default()).await);
    assert_eq!(
        records(&page),
        written,
        "records differ or are out of order"
    );
    assert!(
        page.entries.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequences must increase strictly: {:?}",
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert!(!page.truncated, "every record fits: not truncated");
    assert_eq!(page.next_after, page.entries.last().map(|e| e.seq));
}

/// Category, app and `since` filters (alone and combined) return exactly the matching
/// records, in order.
pub async fn filters_select_exactly_the_matching_records(factory: &dyn AuditFactory) {
    announce("audit", "filters_select_exactly_the_matching_records");
    let logs = factory.open(&unique_name("au_filter")).await;
    let written = vec![
        record(100, "node", "cordon", None),
        record(200, "election", "acquired", Some("a1")),
        record(300, "election", "acquired", Some("a2")),
        record(400, "placement", "migration.started", Some("a1")),
        record(500, "election", "lost", Some("a1")),
    ];
    append_all(&logs, &written).await;
    let a1: AppName = "a1".parse().expect("valid app");
    let cases = [
        AuditFilter {
            category: Some("election".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            app: Some(a1.clone()),
            ..AuditFilter::default()
        },
        AuditFilter {
            since: Some(UNIX_EPOCH + Duration::from_secs(300)),
            ..AuditFilter::default()
        },
        AuditFilter {
            category: Some("election".into()),
            app: Some(a1),
            since: Some(UNIX_EPOCH + Duration::from_secs(250)),
            ..AuditFilter::default()
        },
        AuditFilter {
            category: Some("member".into()),
            ..AuditFilter::default()
        },
    ];
    for filter in cases {
        let want: Vec<AuditRecord> = written
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        let page = ok("filtered query", logs.reader.query(&filter).await);
        assert_eq!(records(&page), want, "filter {filter:?}");
        assert!(!page.truncated, "filter {filter:?}: not truncated");
    }
}

/// Pages of `limit` records follow each other with `after = next_after`, `truncated` is set
/// exactly when a further *matching* record exists, and the pages together are every record.
pub async fn paging_never_cuts_silently(factory: &dyn AuditFactory) {
    announce("audit", "paging_never_cuts_silently");
    let logs = factory.open(&unique_name("au_page")).await;
    let written: Vec<AuditRecord> = (0..7)
        .map(|i| record(10 + i, "operator", "drain", Some("a1")))
        .collect();
    append_all(&logs, &written).await;
    // Two records of another app after the a1 records: not "more matching".
    append_all(
        &logs,
        &[
            record(90, "operator", "drain", Some("b1")),
            record(91, "operator", "drain", Some("b1")),
        ],
    )
    .await;
    let a1: AppName = "a1".parse().expect("valid app");
    let mut after = None;
    let mut got = Vec::new();
    let mut flags = Vec::new();
    for _ in 0..10 {
        let page = ok(
            "page",
            logs.reader
                .query(&AuditFilter {
                    app: Some(a1.clone()),
                    after,
                    limit: 3,
                    ..AuditFilter::default()
                })
                .await,
        );
        assert!(page.entries.len() <= 3, "a page exceeds the limit");
        got.extend(records(&page));
        flags.push(page.truncated);
        if !page.truncated {
            break;
        }
        after = page.next_after;
        assert!(after.is_some(), "a truncated page must say where to go on");
    }
    assert_eq!(
        flags,
        vec![true, true, false],
        "7 records in pages of 3: truncated, truncated, complete"
    );
    assert_eq!(got, written, "the pages together are every matching record");
    // A page exactly as large as the matches is complete.
    let exact = ok(
        "exact page",
        logs.reader
            .query(&AuditFilter {
                app: Some(a1),
                limit: 7,
                ..AuditFilter::default()
            })
            .await,
    );
    assert_eq!(exact.entries.len(), 7);
    assert!(
        !exact.truncated,
        "only non-matching records follow: not truncated"
    );
}

/// Records with the same id are stored once (also when another handle appends the copy);
/// records without an id are never deduplicated.
pub async fn records_with_one_id_are_stored_once(factory: &dyn AuditFactory) {
    announce("audit", "records_with_one_id_are_stored_once");
    let logs = factory.open(&unique_name("au_dedup")).await;
    let fact = record(5, "member", "leave", None).with_id(unique_name("fact"));
    ok("append", logs.writer.append(&fact).await);
    ok("append the copy", logs.writer.append(&fact).await);
    ok(
        "append the copy from the other handle",
        logs.reader.append(&fact).await,
    );
    let plain = record(6, "member", "join", None);
    ok("append without id", logs.writer.append(&plain).await);
    ok("append without id again", logs.writer.append(&plain).await);
    let page = ok("query", logs.reader.query(&AuditFilter::default()).await);
    assert_eq!(
        records(&page),
        vec![fact, plain.clone(), plain],
        "one copy of the identified record, both plain ones"
    );
}

/// A record that fails validation (bad category or action, another version) is refused with
/// an error and not stored.
pub async fn invalid_records_are_refused(factory: &dyn AuditFactory) {
    announce("audit", "invalid_records_are_refused");
    let logs = factory.open(&unique_name("au_invalid")).await;
    let mut bad_action = record(1, "node", "x", None);
    bad_action.action = "bad action".into();
    let mut bad_category = record(2, "node", "x", None);
    bad_category.category = "No.De".into();
    let mut other_version = record(3, "node", "x", None);
    other_version.v += 1;
    for bad in [bad_action, bad_category, other_version] {
        assert!(
            logs.writer.append(&bad).await.is_err(),
            "an invalid record must be refused: {bad:?}"
        );
    }
    let good = record(4, "node", "cordon", None);
    ok("append a valid record", logs.writer.append(&good).await);
    let page = ok("query", logs.reader.query(&AuditFilter::default()).await);
    assert_eq!(
        records(&page),
        vec![good],
        "only the valid record is stored"
    );
}

/// Bytes that are not a record (garbage, a record of another version) in the store are
/// skipped by queries, never returned and never an error; records around them are returned.
pub async fn garbage_in_the_store_is_skipped(factory: &dyn RawAuditFactory) {
    announce("audit", "garbage_in_the_store_is_skipped");
    let name = unique_name("au_garbage");
    let logs = factory.open(&name).await;
    let first = record(1, "node", "cordon", None);
    ok("append", logs.writer.append(&first).await);
    factory.store_raw(&name, "node", b"\x00\xffnot json").await;
    let mut future = serde_json::to_value(record(2, "node", "cordon", None)).expect("json");
    future["v"] = serde_json::json!(99);
    factory
        .store_raw(&name, "node", future.to_string().as_bytes())
        .await;
    factory
        .store_raw(&name, "node", br#"{"v":1,"category":"node"}"#)
        .await;
    let last = record(3, "node", "uncordon", None);
    ok("append", logs.writer.append(&last).await);
    let page = ok(
        "query over garbage",
        logs.reader.query(&AuditFilter::default()).await,
    );
    assert_eq!(records(&page), vec![first.clone(), last.clone()]);
    assert!(!page.truncated);
    // Paging over garbage: a limit of 1 still finds the second record.
    let one = ok(
        "first page of one",
        logs.reader
            .query(&AuditFilter {
                limit: 1,
                ..AuditFilter::default()
            })
            .await,
    );
    assert_eq!(records(&one), vec![first]);
    assert!(one.truncated, "a valid record follows the garbage");
    let rest = ok(
        "second page",
        logs.reader
            .query(&AuditFilter {
                after: one.next_after,
                since: Some(SystemTime::UNIX_EPOCH),
                ..AuditFilter::default()
            })
            .await,
    );
    assert_eq!(records(&rest), vec![last]);
}
