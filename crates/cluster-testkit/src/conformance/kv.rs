//! Conformance suite for [`KvStore`]/[`KvBucket`] (see the contract on [`KvBucket`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::{
    BucketConfig, Error, KvBucket, KvStore, KvWatch, Result, Revision, WatchEvent, WatchOp,
};
use futures::StreamExt;
use futures::future::join_all;
use tokio::time::{Instant, sleep_until};

use super::{announce, ok, unique_name, within};

/// Hands out connections to one backing KV store.
///
/// # To ensure correctness
///
/// * Every [`KvFactory::connect`] returns an independent connection ("another client") to the
///   **same** store: a bucket opened on one is the same data on all.
/// * [`KvFactory::bucket_config`] returns a bucket name no earlier scenario used.
#[async_trait]
pub trait KvFactory: Send + Sync {
    /// A new connection to the shared store.
    async fn connect(&self) -> Result<Arc<dyn KvStore>>;

    /// The configuration of a fresh bucket for `scenario` (default: a unique name, defaults of
    /// [`BucketConfig::new`]). Scenarios may enable `per_key_ttl` or lower `max_value_size`.
    fn bucket_config(&self, scenario: &str) -> BucketConfig {
        BucketConfig::new(unique_name(scenario))
    }
}

/// The TTL used by expiry scenarios: short, but a TTL every store supports.
pub const SHORT_TTL: Duration = Duration::from_secs(1);

/// Tolerance for an expiry measured by the client: the store judges expiry with its own clock.
const EARLY: Duration = Duration::from_millis(50);

/// Runs every scenario of the suite, in order.
pub async fn run_all(factory: &dyn KvFactory) {
    create_conflict(factory).await;
    concurrent_create_exactly_one_wins(factory).await;
    update_cas_rejects_stale_revision(factory).await;
    delete_with_expected_revision(factory).await;
    revisions_strictly_increase(factory).await;
    revisions_not_reused_after_expiry(factory).await;
    ttl_expiry_event_and_recreate(factory).await;
    ttl_on_update_renews_lifetime(factory).await;
    watch_ordered_and_sees_other_handle(factory).await;
    keys_by_prefix(factory).await;
    invalid_input_rejected_nothing_written(factory).await;
    reopen_bucket_shares_data(factory).await;
}

async fn two_buckets(
    factory: &dyn KvFactory,
    config: BucketConfig,
) -> (Arc<dyn KvBucket>, Arc<dyn KvBucket>) {
    let a = ok("connect", factory.connect().await);
    let b = ok("connect", factory.connect().await);
    let ba = ok("open bucket", a.bucket(config.clone()).await);
    let bb = ok("open bucket on a second connection", b.bucket(config).await);
    (ba, bb)
}

fn ttl_config(factory: &dyn KvFactory, scenario: &str) -> BucketConfig {
    factory.bucket_config(scenario).with_per_key_ttl()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(watch: &mut KvWatch, what: &str) -> WatchEvent {
    within(what, watch.next())
        .await
        .unwrap_or_else(|| panic!("{what}: watch ended"))
}

/// Waits for the next event on `key`, skipping events of other keys.
async fn next_event_of(watch: &mut KvWatch, key: &str, what: &str) -> WatchEvent {
    loop {
        let ev = next_event(watch, what).await;
        if ev.key == key {
            return ev;
        }
    }
}

fn assert_conflict(what: &str, r: Result<Revision>, expected: Option<Revision>) -> Error {
    match r {
        Err(e @ Error::Conflict { .. }) => {
            if let Error::Conflict { expected: got, .. } = &e {
                assert_eq!(
                    *got, expected,
                    "{what}: conflict must carry the expected revision"
                );
            }
            e
        }
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn current_of(e: &Error) -> Option<Revision> {
    match e {
        Error::Conflict { current, .. } => *current,
        _ => None,
    }
}

/// `create` of an existing key fails with `Conflict { expected: None, current }` and leaves the
/// value alone.
pub async fn create_conflict(factory: &dyn KvFactory) {
    announce("kv", "create_conflict");
    let (a, b2) = two_buckets(factory, factory.bucket_config("create_conflict")).await;
    let r1 = ok("create", a.create("k", b("one"), None).await);
    let e = assert_conflict("second create", b2.create("k", b("two"), None).await, None);
    assert_eq!(
        current_of(&e),
        Some(r1),
        "conflict must carry the current revision"
    );
    let e = assert_conflict(
        "create on same handle",
        a.create("k", b("3"), None).await,
        None,
    );
    assert_eq!(current_of(&e), Some(r1));
    let got = ok("get", b2.get("k").await).expect("key must exist");
    assert_eq!((got.value, got.revision), (b("one"), r1));
}

/// Of many concurrent `create`s of one key on two connections exactly one succeeds; the others
/// get `Conflict` and the winner's value is stored.
pub async fn concurrent_create_exactly_one_wins(factory: &dyn KvFactory) {
    announce("kv", "concurrent_create_exactly_one_wins");
    let (a, b2) = two_buckets(factory, factory.bucket_config("concurrent_create")).await;
    let attempts = (0..16).map(|i| {
        let bucket = if i % 2 == 0 { a.clone() } else { b2.clone() };
        async move { (i, bucket.create("race", b(&format!("v{i}")), None).await) }
    });
    let results = join_all(attempts).await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|rev| (*i, *rev)))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one create must win: {results:?}");
    let (winner, rev) = winners[0];
    for (i, r) in &results {
        if *i != winner {
            match r {
                Err(Error::Conflict {
                    expected: None,
                    current,
                    ..
                }) => assert!(
                    current.is_none_or(|c| c == rev),
                    "loser {i}: current must be the winner's revision, got {current:?}"
                ),
                other => panic!("loser {i}: expected Conflict, got {other:?}"),
            }
        }
    }
    let got = ok("get", a.get("race").await).expect("winner's value");
    assert_eq!((got.value, got.revision), (b(&format!("v{winner}")), rev));
}

/// `update` with a stale revision fails with `Conflict` carrying the current revision and never
/// overwrites; with the current revision it succeeds.
pub async fn update_cas_rejects_stale_revision(factory: &dyn KvFactory) {
    announce("kv", "update_cas_rejects_stale_revision");
    let (a, b2) = two_buckets(factory, factory.bucket_config("update_cas")).await;
    let r1 = ok("create", a.create("k", b("1"), None).await);
    let r2 = ok("update", b2.update("k", b("2"), r1, None).await);
    assert!(r2 > r1, "revisions must increase: {r1} then {r2}");
    let e = assert_conflict(
        "stale update",
        a.update("k", b("x"), r1, None).await,
        Some(r1),
    );
    assert_eq!(
        current_of(&e),
        Some(r2),
        "conflict must carry the current revision"
    );
    let got = ok("get", a.get("k").await).expect("key");
    assert_eq!(
        (got.value, got.revision),
        (b("2"), r2),
        "stale update must not write"
    );
    let r3 = ok("update with current", a.update("k", b("3"), r2, None).await);
    assert!(r3 > r2);
    assert_conflict(
        "update of a missing key",
        a.update("missing", b("x"), r3, None).await,
        Some(r3),
    );
    assert_eq!(ok("get missing", a.get("missing").await), None);
}

/// `delete` with an expected revision is a compare-and-delete; without one it is unconditional
/// and deleting a missing key is not an error.
pub async fn delete_with_expected_revision(factory: &dyn KvFactory) {
    announce("kv", "delete_with_expected_revision");
    let (a, b2) = two_buckets(factory, factory.bucket_config("delete_expected")).await;
    let r1 = ok("put", a.put("k", b("1")).await);
    let r2 = ok("put", b2.put("k", b("2")).await);
    match a.delete("k", Some(r1)).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, Some(r1));
            assert_eq!(
                current,
                Some(r2),
                "conflict must carry the current revision"
            );
        }
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    assert_eq!(ok("get", a.get("k").await).map(|e| e.revision), Some(r2));
    ok("delete with current", b2.delete("k", Some(r2)).await);
    assert_eq!(ok("get after delete", a.get("k").await), None);
    ok(
        "unconditional delete of a missing key",
        a.delete("k", None).await,
    );
    ok(
        "unconditional delete of a never-written key",
        a.delete("nope", None).await,
    );
    let r3 = ok("create after delete", a.create("k", b("3"), None).await);
    assert!(r3 > r2);
    ok("unconditional delete", b2.delete("k", None).await);
    assert!(!ok("keys", a.keys("").await).contains(&"k".to_owned()));
}

/// Revisions are bucket-wide and strictly increasing, also across keys and after deletes: a
/// watch sees every change with a strictly greater revision and none is reused.
pub async fn revisions_strictly_increase(factory: &dyn KvFactory) {
    announce("kv", "revisions_strictly_increase");
    let (a, b2) = two_buckets(factory, factory.bucket_config("revisions")).await;
    let mut watch = ok("watch", a.watch("").await);
    let mut returned = vec![
        ok("put a", a.put("a", b("1")).await),
        ok("put b", b2.put("b", b("1")).await),
    ];
    ok("delete a", a.delete("a", None).await);
    returned.push(ok("put a again", b2.put("a", b("2")).await));
    returned.push(ok("create c", a.create("c", b("1"), None).await));
    ok("delete c", b2.delete("c", Some(returned[3])).await);
    returned.push(ok("create c again", a.create("c", b("2"), None).await));
    assert!(
        returned.windows(2).all(|w| w[0] < w[1]),
        "returned revisions must strictly increase: {returned:?}"
    );
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(next_event(&mut watch, "watch event").await);
    }
    let revs: Vec<Revision> = seen.iter().map(|e| e.revision).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "watched revisions must strictly increase: {revs:?}"
    );
    let puts: Vec<Revision> = seen
        .iter()
        .filter(|e| e.op == WatchOp::Put)
        .map(|e| e.revision)
        .collect();
    assert_eq!(
        puts, returned,
        "every write's revision is seen once, in order"
    );
    let deletes = seen.iter().filter(|e| e.op == WatchOp::Delete).count();
    assert_eq!(deletes, 2);
}

/// After a key expires, a new write gets a revision greater than the expiry's: revisions are
/// never reused.
pub async fn revisions_not_reused_after_expiry(factory: &dyn KvFactory) {
    announce("kv", "revisions_not_reused_after_expiry");
    let (a, b2) = two_buckets(factory, ttl_config(factory, "revisions_expiry")).await;
    let mut watch = ok("watch", a.watch("").await);
    let r1 = ok(
        "create with ttl",
        a.create("e", b("1"), Some(SHORT_TTL)).await,
    );
    let ev = next_event_of(&mut watch, "e", "put event").await;
    assert_eq!((ev.op, ev.revision), (WatchOp::Put, r1));
    let ev = next_event_of(&mut watch, "e", "expiry event").await;
    assert_eq!(ev.op, WatchOp::Expired);
    assert!(ev.revision > r1, "expiry must have a newer revision");
    let r2 = ok("create after expiry", b2.create("e", b("2"), None).await);
    assert!(
        r2 > ev.revision,
        "revision {r2} reused (expiry was {})",
        ev.revision
    );
}

/// A key created with a TTL is readable until it expires, then disappears with an `Expired`
/// event (never before the TTL) and can be created again; keys without TTL stay.
pub async fn ttl_expiry_event_and_recreate(factory: &dyn KvFactory) {
    announce("kv", "ttl_expiry_event_and_recreate");
    let (a, b2) = two_buckets(factory, ttl_config(factory, "ttl_expiry")).await;
    let mut watch = ok("watch", b2.watch("").await);
    ok("put a key without ttl", a.put("keep", b("k")).await);
    let before = Instant::now();
    let r1 = ok(
        "create with ttl",
        a.create("lease", b("1"), Some(SHORT_TTL)).await,
    );
    let got = ok("get", b2.get("lease").await).expect("key must live until its ttl");
    assert_eq!(got.revision, r1);
    let ev = next_event_of(&mut watch, "lease", "put event").await;
    assert_eq!((ev.op, ev.revision), (WatchOp::Put, r1));
    let ev = next_event_of(&mut watch, "lease", "expiry event").await;
    assert_eq!(
        ev.op,
        WatchOp::Expired,
        "expected an Expired event, got {ev:?}"
    );
    assert!(ev.revision > r1);
    let elapsed = before.elapsed();
    assert!(
        elapsed + EARLY >= SHORT_TTL,
        "expired after {elapsed:?}, before its ttl"
    );
    assert_eq!(ok("get after expiry", a.get("lease").await), None);
    assert_eq!(ok("keys", b2.keys("").await), vec!["keep".to_owned()]);
    let r2 = ok(
        "create after expiry",
        b2.create("lease", b("2"), Some(SHORT_TTL)).await,
    );
    assert!(r2 > ev.revision);
    assert_eq!(
        ok("get", a.get("keep").await).map(|e| e.value),
        Some(b("k"))
    );
}

/// `update` with a TTL restarts the key's lifetime from the update; a write without TTL
/// removes the lifetime.
pub async fn ttl_on_update_renews_lifetime(factory: &dyn KvFactory) {
    announce("kv", "ttl_on_update_renews_lifetime");
    let ttl = 2 * SHORT_TTL;
    let (a, b2) = two_buckets(factory, ttl_config(factory, "ttl_renew")).await;
    let mut watch = ok("watch", a.watch("").await);
    let t0 = Instant::now();
    let r1 = ok("create", a.create("lease", b("1"), Some(ttl)).await);
    let p1 = ok("create", a.create("pinned", b("1"), Some(ttl)).await);
    sleep_until(t0 + ttl / 2).await;
    let t1 = Instant::now();
    let r2 = ok("renew", b2.update("lease", b("2"), r1, Some(ttl)).await);
    ok("pin", b2.update("pinned", b("2"), p1, None).await);
    // Past the first lifetime (with margin for a store expiring ~100 ms late), before the second.
    sleep_until(t0 + ttl + ttl / 4).await;
    let got = ok("get after first lifetime", a.get("lease").await);
    assert_eq!(
        got.map(|e| e.revision),
        Some(r2),
        "update must renew the lifetime"
    );
    loop {
        let ev = next_event(&mut watch, "expiry of the renewed key").await;
        assert!(
            !(ev.key == "pinned" && ev.op == WatchOp::Expired),
            "a write without ttl must remove the lifetime"
        );
        if ev.key == "lease" && ev.op == WatchOp::Expired {
            assert!(ev.revision > r2);
            break;
        }
    }
    let since_renew = t1.elapsed();
    assert!(
        since_renew + EARLY >= ttl,
        "expired {since_renew:?} after renewal"
    );
    assert_eq!(
        ok("get pinned", b2.get("pinned").await).map(|e| e.value),
        Some(b("2"))
    );
}

/// A watch delivers every change under its prefix made after `watch` returned, by any handle,
/// in revision order, with the right op, value and revision, and nothing outside the prefix.
pub async fn watch_ordered_and_sees_other_handle(factory: &dyn KvFactory) {
    announce("kv", "watch_ordered_and_sees_other_handle");
    let (a, b2) = two_buckets(factory, factory.bucket_config("watch_order")).await;
    ok("put before watch", b2.put("w/old", b("0")).await);
    let mut watch = ok("watch", a.watch("w/").await);
    let r1 = ok("put", b2.put("w/a", b("1")).await);
    let r2 = ok("put", b2.put("w/b", b("2")).await);
    ok("put outside prefix", b2.put("x/c", b("3")).await);
    ok("delete", b2.delete("w/a", Some(r1)).await);
    let r4 = ok("create", b2.create("w/c", b("4"), None).await);
    let r5 = ok("update", b2.update("w/b", b("5"), r2, None).await);
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(next_event(&mut watch, "watch event").await);
    }
    let got: Vec<(&str, WatchOp, &[u8])> = events
        .iter()
        .map(|e| (e.key.as_str(), e.op, e.value.as_ref()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("w/a", WatchOp::Put, &b"1"[..]),
            ("w/b", WatchOp::Put, b"2"),
            ("w/a", WatchOp::Delete, b""),
            ("w/c", WatchOp::Put, b"4"),
            ("w/b", WatchOp::Put, b"5"),
        ]
    );
    let revs: Vec<Revision> = events.iter().map(|e| e.revision).collect();
    assert_eq!((revs[0], revs[1], revs[3], revs[4]), (r1, r2, r4, r5));
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
}

/// `keys(prefix)` lists the live keys starting with `prefix`, sorted.
pub async fn keys_by_prefix(factory: &dyn KvFactory) {
    announce("kv", "keys_by_prefix");
    let (a, b2) = two_buckets(factory, factory.bucket_config("keys_prefix")).await;
    for k in ["p/b", "p/a", "p/c/d", "q/a", "pp", "p.x"] {
        ok("put", a.put(k, b("v")).await);
    }
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        ok("keys p/", b2.keys("p/").await),
        strings(&["p/a", "p/b", "p/c/d"])
    );
    assert_eq!(ok("keys p.", b2.keys("p.").await), strings(&["p.x"]));
    assert_eq!(
        ok("keys all", b2.keys("").await),
        strings(&["p.x", "p/a", "p/b", "p/c/d", "pp", "q/a"])
    );
    ok("delete", b2.delete("p/b", None).await);
    assert_eq!(
        ok("keys p/", a.keys("p/").await),
        strings(&["p/a", "p/c/d"])
    );
    assert!(ok("keys z/", a.keys("z/").await).is_empty());
}

/// Invalid bucket names and keys, oversized values and TTLs on a bucket without per-key TTL are
/// rejected with the right error, and nothing is written.
pub async fn invalid_input_rejected_nothing_written(factory: &dyn KvFactory) {
    announce("kv", "invalid_input_rejected_nothing_written");
    let store = ok("connect", factory.connect().await);
    for bad in ["bad name", "a.b", "a*", ""] {
        let mut config = factory.bucket_config("invalid");
        config.name = bad.to_owned();
        match store.bucket(config).await {
            Err(Error::InvalidArgument(_)) => {}
            Err(other) => panic!("bucket {bad:?}: expected InvalidArgument, got {other:?}"),
            Ok(_) => panic!("bucket {bad:?}: expected InvalidArgument, got a bucket"),
        }
    }
    let mut config = factory.bucket_config("invalid");
    config.max_value_size = 1024;
    let (a, b2) = two_buckets(factory, config).await;
    let mut watch = ok("watch", b2.watch("").await);
    for bad in ["bad key", ".a", "a.", "a..b", "a*", "a>", ""] {
        match a.put(bad, b("v")).await {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("put {bad:?}: expected InvalidArgument, got {other:?}"),
        }
        match a.create(bad, b("v"), None).await {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("create {bad:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    for bad in ["*", "a b"] {
        assert!(
            matches!(a.keys(bad).await, Err(Error::InvalidArgument(_))),
            "keys {bad:?}"
        );
        assert!(
            matches!(a.watch(bad).await, Err(Error::InvalidArgument(_))),
            "watch {bad:?}"
        );
    }
    let big = Bytes::from(vec![b'x'; 2048]);
    match a.put("big", big.clone()).await {
        Err(Error::PayloadTooLarge { size, max }) => assert_eq!((size, max), (2048, 1024)),
        other => panic!("oversized put: expected PayloadTooLarge, got {other:?}"),
    }
    assert!(matches!(
        a.create("big", big, None).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    match a.create("ttl", b("v"), Some(SHORT_TTL)).await {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("ttl without per_key_ttl: expected InvalidArgument, got {other:?}"),
    }
    assert!(
        ok("keys", b2.keys("").await).is_empty(),
        "nothing may be written"
    );
    assert_eq!(ok("get", b2.get("big").await), None);
    let r = ok("sentinel", a.put("sentinel", b("s")).await);
    let ev = next_event(&mut watch, "sentinel event").await;
    assert_eq!(
        (ev.key.as_str(), ev.revision),
        ("sentinel", r),
        "nothing else was written"
    );
}

/// Opening an existing bucket again (other connection, same config) returns the same data.
pub async fn reopen_bucket_shares_data(factory: &dyn KvFactory) {
    announce("kv", "reopen_bucket_shares_data");
    let config = factory.bucket_config("reopen");
    let (a, _) = two_buckets(factory, config.clone()).await;
    let r = ok("put", a.put("k", b("v")).await);
    let store = ok("connect", factory.connect().await);
    let again = ok("reopen", store.bucket(config).await);
    assert_eq!(again.name(), a.name());
    assert_eq!(ok("get", again.get("k").await).map(|e| e.revision), Some(r));
    assert_eq!(ok("keys", again.keys("").await), vec!["k".to_owned()]);
}
