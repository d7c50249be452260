//! KV contract scenarios (crates/cluster-core/src/kv.rs), run against a single server and a
//! 3-server cluster.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvBucket, KvStore, Revision, WatchOp};

use super::{next_event, no_event, unique};

const EVENT: Duration = Duration::from_secs(5);

async fn bucket(store: &dyn KvStore, ttl: bool) -> Arc<dyn KvBucket> {
    let mut config = BucketConfig::new(unique("kv")).described("cluster-nats test");
    if ttl {
        config = config.with_per_key_ttl();
    }
    store.bucket(config).await.expect("bucket")
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

/// put/get/revisions, missing keys, idempotent open, shared handles.
pub async fn put_get_and_revisions(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    assert_eq!(kv.get("missing").await.unwrap(), None);
    let r1 = kv.put("a", b("1")).await.unwrap();
    let r2 = kv.put("a", b("2")).await.unwrap();
    let r3 = kv.put("b/c=d.e", b("3")).await.unwrap();
    assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
    let e = kv.get("a").await.unwrap().unwrap();
    assert_eq!(
        (e.key.as_str(), e.value.clone(), e.revision),
        ("a", b("2"), r2)
    );
    // Opening the bucket again gives a handle to the same data.
    let again = store
        .bucket(BucketConfig::new(kv.name()).described("cluster-nats test"))
        .await
        .unwrap();
    assert_eq!(again.get("b/c=d.e").await.unwrap().unwrap().revision, r3);
    let r4 = again.put("a", b("4")).await.unwrap();
    assert!(r4 > r3);
    assert_eq!(kv.get("a").await.unwrap().unwrap().value, b("4"));
}

/// create succeeds once; atomic under concurrency; conflicts carry the current revision.
pub async fn create_is_exclusive(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    let r1 = kv.create("k", b("x"), None).await.unwrap();
    match kv.create("k", b("y"), None).await {
        Err(Error::Conflict {
            key,
            expected: None,
            current,
        }) => {
            assert_eq!(key, "k");
            assert_eq!(current, Some(r1));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b("x"));

    // Of concurrent creates exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            kv.create("race", Bytes::from(format!("{i}")), None).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);

    // After a delete, create works again with a newer revision.
    kv.delete("k", None).await.unwrap();
    let r2 = kv.create("k", b("z"), None).await.unwrap();
    assert!(r2 > r1);
}

/// update is a compare-and-set on the revision.
pub async fn update_is_compare_and_set(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    let r1 = kv.put("k", b("1")).await.unwrap();
    let r2 = kv.update("k", b("2"), r1, None).await.unwrap();
    assert!(r2 > r1);
    match kv.update("k", b("stale"), r1, None).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, Some(r1));
            assert_eq!(current, Some(r2));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b("2"));
    // Updating a key that does not exist is a conflict without a current revision.
    match kv.update("nope", b("x"), r1, None).await {
        Err(Error::Conflict { current: None, .. }) => {}
        other => panic!("expected conflict, got {other:?}"),
    }
    // Concurrent updates from the same revision: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            kv.update("k", Bytes::from(format!("{i}")), r2, None).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

/// delete: unconditional, missing key, compare-and-delete.
pub async fn delete_rules(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    kv.delete("never-written", None).await.unwrap();
    let r1 = kv.put("k", b("1")).await.unwrap();
    let r2 = kv.put("k", b("2")).await.unwrap();
    match kv.delete("k", Some(r1)).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, Some(r1));
            assert_eq!(current, Some(r2));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert!(kv.get("k").await.unwrap().is_some());
    kv.delete("k", Some(r2)).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap(), None);
    // Revisions keep increasing after deletes.
    let r3 = kv.put("k", b("3")).await.unwrap();
    assert!(r3 > r2);
}

/// keys(prefix): live keys only, sorted.
pub async fn keys_are_sorted_and_live(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    assert!(kv.keys("").await.unwrap().is_empty());
    for k in ["users/2", "users/1", "lease.app", "users/3", "other"] {
        kv.put(k, b("v")).await.unwrap();
    }
    kv.delete("users/3", None).await.unwrap();
    assert_eq!(kv.keys("users/").await.unwrap(), vec!["users/1", "users/2"]);
    assert_eq!(kv.keys("lease.").await.unwrap(), vec!["lease.app"]);
    assert_eq!(
        kv.keys("").await.unwrap(),
        vec!["lease.app", "other", "users/1", "users/2"]
    );
    assert!(matches!(kv.keys("*").await, Err(Error::InvalidArgument(_))));
}

/// watch: only changes after it returned, in order, filtered by prefix, with ops.
pub async fn watch_reports_changes_in_order(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    kv.put("app.before", b("old")).await.unwrap();
    let mut all = kv.watch("").await.unwrap();
    let mut dotted = kv.watch("app.").await.unwrap();
    let mut slashed = kv.watch("users/").await.unwrap();
    let r1 = kv.put("app.x", b("1")).await.unwrap();
    let r2 = kv.put("users/1", b("u")).await.unwrap();
    let r3 = kv.put("application", b("not app.")).await.unwrap();
    kv.delete("app.x", None).await.unwrap();

    let e = next_event(&mut all, EVENT).await;
    assert_eq!(
        (e.key.as_str(), e.op, e.revision),
        ("app.x", WatchOp::Put, r1)
    );
    assert_eq!(e.value, b("1"));
    let e = next_event(&mut all, EVENT).await;
    assert_eq!((e.key.as_str(), e.revision), ("users/1", r2));
    let e = next_event(&mut all, EVENT).await;
    assert_eq!((e.key.as_str(), e.revision), ("application", r3));
    let e = next_event(&mut all, EVENT).await;
    assert_eq!((e.key.as_str(), e.op), ("app.x", WatchOp::Delete));
    assert!(e.value.is_empty() && e.revision > r3);

    let e = next_event(&mut dotted, EVENT).await;
    assert_eq!((e.key.as_str(), e.op), ("app.x", WatchOp::Put));
    let e = next_event(&mut dotted, EVENT).await;
    assert_eq!((e.key.as_str(), e.op), ("app.x", WatchOp::Delete));
    no_event(&mut dotted, Duration::from_millis(200)).await;

    let e = next_event(&mut slashed, EVENT).await;
    assert_eq!(e.key, "users/1");
    no_event(&mut slashed, Duration::from_millis(200)).await;

    // A prefix that is not a whole token still filters exactly.
    let mut partial = kv.watch("app").await.unwrap();
    kv.put("apple", b("a")).await.unwrap();
    kv.put("zzz", b("z")).await.unwrap();
    kv.put("app.y", b("y")).await.unwrap();
    assert_eq!(next_event(&mut partial, EVENT).await.key, "apple");
    assert_eq!(next_event(&mut partial, EVENT).await.key, "app.y");
}

/// Per-key TTL: expiry is reported as `Expired`, the key can be created again, an update with
/// a TTL renews the lifetime and one without removes it.
pub async fn ttl_expiry_and_renewal(store: &dyn KvStore) {
    let kv = bucket(store, true).await;
    let mut watch = kv.watch("").await.unwrap();
    let started = tokio::time::Instant::now();
    let r1 = kv
        .create("lease", b("a"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch, EVENT).await.op, WatchOp::Put);
    let e = next_event(&mut watch, EVENT).await;
    assert_eq!((e.key.as_str(), e.op), ("lease", WatchOp::Expired));
    assert!(e.revision > r1);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "expired early"
    );
    assert_eq!(kv.get("lease").await.unwrap(), None);
    assert!(kv.keys("").await.unwrap().is_empty());
    // Expired: create works again.
    let r2 = kv
        .create("lease", b("b"), Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(r2 > e.revision);
    assert_eq!(next_event(&mut watch, EVENT).await.revision, r2);

    // Renew with a TTL (CAS published with Nats-TTL) before it runs out: still there after
    // the original deadline.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r3 = kv
        .update("lease", b("c"), r2, Some(Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch, EVENT).await.revision, r3);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(kv.get("lease").await.unwrap().unwrap().revision, r3);
    // ... and expires after the renewed TTL.
    let e = next_event(&mut watch, EVENT).await;
    assert_eq!((e.key.as_str(), e.op), ("lease", WatchOp::Expired));

    // A stale renewal with TTL is a conflict.
    let r4 = kv
        .create("lease", b("d"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    match kv
        .update("lease", b("x"), r3, Some(Duration::from_secs(5)))
        .await
    {
        Err(Error::Conflict {
            current, expected, ..
        }) => {
            assert_eq!(expected, Some(r3));
            assert_eq!(current, Some(r4));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    // An update without TTL removes the lifetime.
    let r5 = kv.update("lease", b("e"), r4, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(kv.get("lease").await.unwrap().unwrap().revision, r5);
    // A client delete is a Delete, not an expiry.
    let mut w2 = kv.watch("lease").await.unwrap();
    kv.delete("lease", Some(r5)).await.unwrap();
    assert_eq!(next_event(&mut w2, EVENT).await.op, WatchOp::Delete);
}

/// TTLs need a per-key-TTL bucket; bad keys, names and sizes are rejected before writing.
pub async fn rejects_bad_input(store: &dyn KvStore) {
    let kv = bucket(store, false).await;
    assert!(matches!(
        kv.create("k", b("x"), Some(Duration::from_secs(1))).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        kv.update("k", b("x"), Revision(1), Some(Duration::from_secs(1)))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    for bad in ["", ".a", "a.", "a b", "a*", "a>"] {
        assert!(
            matches!(kv.put(bad, b("x")).await, Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        store.bucket(BucketConfig::new("bad.name")).await,
        Err(Error::InvalidArgument(_))
    ));
    let mut small = BucketConfig::new(unique("small"));
    small.max_value_size = 16;
    let small = store.bucket(small).await.unwrap();
    match small.put("k", Bytes::from(vec![0u8; 17])).await {
        Err(Error::PayloadTooLarge { size: 17, max: 16 }) => {}
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(small.get("k").await.unwrap(), None);
    small.put("k", Bytes::from(vec![0u8; 16])).await.unwrap();
    let ttl = bucket(store, true).await;
    assert!(matches!(
        ttl.create("k", b("x"), Some(Duration::ZERO)).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// Every scenario, in sequence.
pub async fn run_all(store: &dyn KvStore) {
    put_get_and_revisions(store).await;
    create_is_exclusive(store).await;
    update_is_compare_and_set(store).await;
    delete_rules(store).await;
    keys_are_sorted_and_live(store).await;
    watch_reports_changes_in_order(store).await;
    rejects_bad_input(store).await;
    ttl_expiry_and_renewal(store).await;
}
