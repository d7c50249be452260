//! Conformance suites for [`ReplicatedLog`] and [`ObjectStore`] (see the contracts on those
//! traits in `cluster_core::stream`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::stream::{
    LogEntry, LogState, LogStream, MSG_ID_HEADER, ObjectStore, ReplicatedLog,
};
use cluster_core::{Error, Headers, Result, Revision};
use futures::StreamExt;

use super::{announce, ok, unique_name, within};

/// Opens logs of one backing implementation.
///
/// # To ensure correctness
///
/// * [`LogFactory::open`] with a name no earlier call used returns an empty log; every call
///   with the same name returns an independent handle ("another client", a separate connection
///   where the implementation has connections) to the **same** log.
#[async_trait]
pub trait LogFactory: Send + Sync {
    /// Opens (creating if needed) the log `name` (`[a-z0-9_]`, at most 40 characters).
    async fn open(&self, name: &str) -> Result<Arc<dyn ReplicatedLog>>;
}

/// Opens object stores of one backing implementation.
///
/// # To ensure correctness
///
/// * [`ObjectStoreFactory::open`] with a new name returns an empty store; every call with the
///   same name returns an independent handle to the **same** store.
#[async_trait]
pub trait ObjectStoreFactory: Send + Sync {
    /// Opens (creating if needed) the store `name` (`[a-z0-9_]`, at most 40 characters).
    async fn open(&self, name: &str) -> Result<Arc<dyn ObjectStore>>;
}

/// Runs every log scenario, in order.
pub async fn run_log_suite(factory: &dyn LogFactory) {
    numbering_get_and_state(factory).await;
    compare_and_append(factory).await;
    concurrent_writers_exactly_one_wins(factory).await;
    dedup_before_expected_sequence(factory).await;
    read_from_replays_then_follows(factory).await;
    purge_below_trims_and_readers_skip(factory).await;
    payload_too_large_stores_nothing(factory).await;
}

/// Runs every object store scenario, in order.
pub async fn run_object_store_suite(factory: &dyn ObjectStoreFactory) {
    object_round_trip_replace_delete(factory).await;
    object_list_and_names(factory).await;
}

fn msg(id: &str) -> Headers {
    Headers::new()
        .with(MSG_ID_HEADER, id)
        .with("Gc-Test", format!("h-{id}"))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn two(
    factory: &dyn LogFactory,
    scenario: &str,
) -> (Arc<dyn ReplicatedLog>, Arc<dyn ReplicatedLog>) {
    let name = unique_name(scenario);
    let a = ok("open log", factory.open(&name).await);
    let b = ok("open log again", factory.open(&name).await);
    (a, b)
}

fn assert_entry(e: &LogEntry, seq: u64, id: &str, payload: &str, what: &str) {
    assert_eq!(e.seq, seq, "{what}: sequence");
    assert_eq!(e.payload, b(payload), "{what}: payload of seq {seq}");
    assert_eq!(
        e.headers.get(MSG_ID_HEADER),
        Some(id),
        "{what}: msg id of seq {seq}"
    );
    assert_eq!(
        e.headers.get("Gc-Test"),
        Some(format!("h-{id}").as_str()),
        "{what}: headers of seq {seq} are kept"
    );
}

async fn next(s: &mut LogStream, what: &str) -> LogEntry {
    let item = within(what, s.next()).await;
    match item {
        Some(Ok(e)) => e,
        Some(Err(e)) => panic!("{what}: stream error {e:?}"),
        None => panic!("{what}: stream ended"),
    }
}

/// Sequences start at 1 and grow by one; `get` and `state` see every append of any handle.
pub async fn numbering_get_and_state(factory: &dyn LogFactory) {
    announce("log", "numbering_get_and_state");
    let (a, other) = two(factory, "lognum").await;
    assert_eq!(
        ok("state of an empty log", a.state().await),
        LogState {
            first_seq: 1,
            last_seq: 0
        },
        "an empty log"
    );
    assert_eq!(ok("last_sequence", a.last_sequence().await), 0);
    assert!(ok("get on empty log", a.get(1).await).is_none());
    for i in 1..=5u64 {
        let ack = ok(
            "append",
            a.append(msg(&format!("m{i}")), b(&format!("p{i}")), None)
                .await,
        );
        assert_eq!(ack.seq, i, "append #{i}");
        assert!(!ack.duplicate, "append #{i} is not a duplicate");
    }
    let s = ok("state", other.state().await);
    assert_eq!(
        s,
        LogState {
            first_seq: 1,
            last_seq: 5
        },
        "state seen by another handle"
    );
    for i in 1..=5u64 {
        let e = ok("get", other.get(i).await).unwrap_or_else(|| panic!("entry {i} missing"));
        assert_entry(&e, i, &format!("m{i}"), &format!("p{i}"), "get");
    }
    assert!(ok("get beyond the end", other.get(6).await).is_none());
    assert!(ok("get 0", other.get(0).await).is_none());
    // An append without headers is fine too.
    let ack = ok(
        "append without headers",
        a.append(Headers::new(), b("plain"), None).await,
    );
    assert_eq!(ack.seq, 6);
    let e = ok("get", a.get(6).await).expect("entry 6");
    assert_eq!(e.payload, b("plain"));
}

/// `expected_last_seq` must equal the last sequence; otherwise `Conflict` and nothing stored.
pub async fn compare_and_append(factory: &dyn LogFactory) {
    announce("log", "compare_and_append");
    let (a, other) = two(factory, "logcas").await;
    let ack = ok(
        "append on empty log expecting 0",
        a.append(msg("a"), b("1"), Some(0)).await,
    );
    assert_eq!(ack.seq, 1);
    let ack = ok(
        "append expecting 1",
        other.append(msg("b"), b("2"), Some(1)).await,
    );
    assert_eq!(ack.seq, 2);
    for stale in [0u64, 1, 3, 100] {
        match a
            .append(msg(&format!("stale{stale}")), b("x"), Some(stale))
            .await
        {
            Err(Error::Conflict {
                expected, current, ..
            }) => {
                assert_eq!(
                    expected,
                    Some(Revision(stale)),
                    "conflict reports the expectation"
                );
                assert_eq!(
                    current,
                    Some(Revision(2)),
                    "conflict reports the last sequence"
                );
            }
            other => panic!("append expecting {stale} when last is 2: {other:?}"),
        }
    }
    assert_eq!(
        ok("state", a.state().await).last_seq,
        2,
        "a rejected append stored nothing"
    );
    let ack = ok(
        "append expecting 2",
        a.append(msg("c"), b("3"), Some(2)).await,
    );
    assert_eq!(ack.seq, 3);
}

/// Of several writers presenting the same expected sequence, exactly one succeeds.
pub async fn concurrent_writers_exactly_one_wins(factory: &dyn LogFactory) {
    announce("log", "concurrent_writers_exactly_one_wins");
    let (a, other) = two(factory, "lograce").await;
    ok("seed", a.append(msg("seed"), b("0"), Some(0)).await);
    for round in 0..10u64 {
        let expected = 1 + round;
        let fa = a.append(msg(&format!("a{round}")), b("a"), Some(expected));
        let fb = other.append(msg(&format!("b{round}")), b("b"), Some(expected));
        let (ra, rb) = tokio::join!(fa, fb);
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            wins, 1,
            "round {round}: exactly one writer wins: {ra:?} / {rb:?}"
        );
        for r in [ra, rb] {
            match r {
                Ok(ack) => assert_eq!(ack.seq, expected + 1),
                Err(Error::Conflict { .. }) => {}
                Err(e) => panic!("round {round}: the loser must see Conflict, got {e:?}"),
            }
        }
    }
    assert_eq!(ok("state", a.state().await).last_seq, 11);
}

/// A repeated message id is acknowledged as a duplicate of the original, before (and instead
/// of) the expected-sequence check, and nothing is appended.
pub async fn dedup_before_expected_sequence(factory: &dyn LogFactory) {
    announce("log", "dedup_before_expected_sequence");
    let (a, other) = two(factory, "logdup").await;
    ok("append x", a.append(msg("x"), b("1"), Some(0)).await);
    ok("append y", a.append(msg("y"), b("2"), Some(1)).await);
    // A retry of `x` after a lost ack: same id, the same (now stale) expected sequence.
    let dup = ok("retry of x", other.append(msg("x"), b("1"), Some(0)).await);
    assert!(dup.duplicate, "a repeated msg id is a duplicate");
    assert_eq!(dup.seq, 1, "the duplicate ack names the original sequence");
    let dup = ok(
        "retry of y without expectation",
        a.append(msg("y"), b("2"), None).await,
    );
    assert!(dup.duplicate);
    assert_eq!(dup.seq, 2);
    assert_eq!(
        ok("state", a.state().await).last_seq,
        2,
        "duplicates append nothing"
    );
    let ack = ok("new id", a.append(msg("z"), b("3"), Some(2)).await);
    assert_eq!((ack.seq, ack.duplicate), (3, false));
}

/// `read_from(s)` yields every entry from `s` in order, then live appends of other handles.
pub async fn read_from_replays_then_follows(factory: &dyn LogFactory) {
    announce("log", "read_from_replays_then_follows");
    let (a, other) = two(factory, "logread").await;
    // A reader started on the empty log sees the first append.
    let mut early = ok("read_from(1) on an empty log", other.read_from(1).await);
    for i in 1..=4u64 {
        ok(
            "append",
            a.append(msg(&format!("r{i}")), b(&format!("v{i}")), None)
                .await,
        );
    }
    for i in 1..=4u64 {
        let e = next(&mut early, "early reader").await;
        assert_entry(&e, i, &format!("r{i}"), &format!("v{i}"), "early reader");
    }
    let mut mid = ok("read_from(3)", other.read_from(3).await);
    assert_eq!(next(&mut mid, "read_from(3)").await.seq, 3);
    assert_eq!(next(&mut mid, "read_from(3)").await.seq, 4);
    // Reading beyond the end waits for the entry.
    let mut ahead = ok("read_from(6)", other.read_from(6).await);
    ok("append 5", a.append(msg("r5"), b("v5"), None).await);
    ok("append 6", a.append(msg("r6"), b("v6"), None).await);
    let e = next(&mut ahead, "read_from(6) after two appends").await;
    assert_entry(&e, 6, "r6", "v6", "reader ahead of the tail");
    for s in [&mut early, &mut mid] {
        assert_eq!(next(s, "live follow").await.seq, 5);
        assert_eq!(next(s, "live follow").await.seq, 6);
    }
    // A big burst arrives complete and in order.
    for i in 7..=200u64 {
        ok(
            "burst",
            a.append(msg(&format!("r{i}")), b(&format!("v{i}")), None)
                .await,
        );
    }
    for i in 7..=200u64 {
        let e = next(&mut early, "burst").await;
        assert_eq!(
            e.seq, i,
            "entries arrive in order without gaps or duplicates"
        );
    }
    // No duplicate or extra entry follows.
    if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), early.next()).await {
        panic!("unexpected entry after the burst: {item:?}");
    }
}

/// `purge_below(s)` removes exactly the entries below `s`; readers skip trimmed entries.
pub async fn purge_below_trims_and_readers_skip(factory: &dyn LogFactory) {
    announce("log", "purge_below_trims_and_readers_skip");
    let (a, other) = two(factory, "logpurge").await;
    for i in 1..=10u64 {
        ok(
            "append",
            a.append(msg(&format!("p{i}")), b("x"), Some(i - 1)).await,
        );
    }
    assert_eq!(
        ok("purge_below(1)", a.purge_below(1).await),
        0,
        "nothing below 1"
    );
    assert_eq!(ok("purge_below(5)", a.purge_below(5).await), 4);
    assert_eq!(
        ok("state", other.state().await),
        LogState {
            first_seq: 5,
            last_seq: 10
        }
    );
    assert_eq!(
        ok("purge_below(3) again", a.purge_below(3).await),
        0,
        "already trimmed"
    );
    for i in 1..5u64 {
        assert!(
            ok("get purged", other.get(i).await).is_none(),
            "entry {i} was purged"
        );
    }
    assert!(
        ok("get kept", other.get(5).await).is_some(),
        "entry 5 is kept"
    );
    let mut s = ok("read_from(2) after purge", other.read_from(2).await);
    assert_eq!(
        next(&mut s, "reader below first_seq").await.seq,
        5,
        "trimmed entries skipped"
    );
    // Sequences are never reused and compare-and-append still uses the last sequence.
    let ack = ok(
        "append after purge",
        a.append(msg("p11"), b("x"), Some(10)).await,
    );
    assert_eq!(ack.seq, 11);
    // Purging everything keeps the numbering.
    assert_eq!(ok("purge_below(12)", a.purge_below(12).await), 7);
    assert_eq!(
        ok("state after purging everything", other.state().await),
        LogState {
            first_seq: 12,
            last_seq: 11
        }
    );
    let ack = ok(
        "append after purging everything",
        a.append(msg("p12"), b("x"), Some(11)).await,
    );
    assert_eq!(ack.seq, 12);
    // Purging beyond the end never removes an entry that is appended later.
    ok("purge_below(100)", a.purge_below(100).await);
    let ack = ok(
        "append after an over-long purge",
        a.append(msg("p13"), b("y"), None).await,
    );
    assert!(ack.seq > 12, "sequence numbers never go back");
    let e = ok("get", other.get(ack.seq).await).expect("an entry appended after a purge is kept");
    assert_eq!(e.payload, b("y"));
}

/// A payload over `max_payload` is refused with `PayloadTooLarge` and nothing is stored;
/// one comfortably below it is accepted.
pub async fn payload_too_large_stores_nothing(factory: &dyn LogFactory) {
    announce("log", "payload_too_large_stores_nothing");
    let (a, _) = two(factory, "logbig").await;
    let max = a.max_payload();
    assert!(max >= 64 * 1024, "max_payload {max} is implausibly small");
    let err = a
        .append(msg("big"), Bytes::from(vec![7u8; max + 1]), Some(0))
        .await
        .expect_err("an oversized append must fail");
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert_eq!(ok("state", a.state().await).last_seq, 0, "nothing stored");
    let fits = Bytes::from(vec![9u8; max - 1024]);
    let ack = ok(
        "append just below max",
        a.append(msg("fits"), fits.clone(), Some(0)).await,
    );
    let e = ok("get", a.get(ack.seq).await).expect("stored");
    assert_eq!(e.payload, fits);
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn two_stores(
    factory: &dyn ObjectStoreFactory,
    scenario: &str,
) -> (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) {
    let name = unique_name(scenario);
    let a = ok("open store", factory.open(&name).await);
    let b = ok("open store again", factory.open(&name).await);
    (a, b)
}

/// Exact bytes and metadata round trip (also for objects larger than any chunk); `put`
/// replaces; `delete` removes and is idempotent.
pub async fn object_round_trip_replace_delete(factory: &dyn ObjectStoreFactory) {
    announce("object store", "object_round_trip_replace_delete");
    let (a, other) = two_stores(factory, "objrt").await;
    assert!(ok("get missing", a.get("snap/none").await).is_none());
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let m = meta(&[("txid", "42"), ("checksum", "00ff")]);
    let info = ok(
        "put",
        a.put("snap/a/1.img", Bytes::from(big.clone()), m.clone())
            .await,
    );
    assert_eq!(info.name, "snap/a/1.img");
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(info.metadata, m);
    let (info, data) = ok("get", other.get("snap/a/1.img").await).expect("object exists");
    assert_eq!(data.len(), big.len());
    assert!(data == big, "exact bytes");
    assert_eq!(info.metadata, m, "exact metadata");
    assert_eq!(info.size, big.len() as u64);
    // Replace with a smaller object and other metadata.
    let m2 = meta(&[("txid", "43")]);
    ok(
        "replace",
        other.put("snap/a/1.img", b("small"), m2.clone()).await,
    );
    let (info, data) = ok("get replaced", a.get("snap/a/1.img").await).expect("exists");
    assert_eq!((data, info.metadata), (b("small"), m2));
    // An empty object.
    ok(
        "put empty",
        a.put("empty", Bytes::new(), BTreeMap::new()).await,
    );
    let (info, data) = ok("get empty", other.get("empty").await).expect("empty object exists");
    assert!(data.is_empty());
    assert_eq!(info.size, 0);
    ok("delete", a.delete("snap/a/1.img").await);
    assert!(ok("get deleted", other.get("snap/a/1.img").await).is_none());
    ok("delete again", a.delete("snap/a/1.img").await);
    ok("delete never written", a.delete("never").await);
    let err = a
        .put("", b("x"), BTreeMap::new())
        .await
        .expect_err("an empty name is invalid");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

/// `list` returns exactly the existing objects with their metadata.
pub async fn object_list_and_names(factory: &dyn ObjectStoreFactory) {
    announce("object store", "object_list_and_names");
    let (a, other) = two_stores(factory, "objlist").await;
    assert!(ok("list empty", a.list().await).is_empty());
    for i in 0..5 {
        ok(
            "put",
            a.put(
                &format!("snap/lineage-x/{i:020}-1.img"),
                Bytes::from(vec![i as u8; 1000 + i]),
                meta(&[("i", &i.to_string())]),
            )
            .await,
        );
    }
    ok(
        "delete one",
        a.delete(&format!("snap/lineage-x/{:020}-1.img", 2)).await,
    );
    let mut listed = ok("list", other.list().await);
    listed.sort_by(|x, y| x.name.cmp(&y.name));
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [0, 1, 3, 4]
            .iter()
            .map(|i| format!("snap/lineage-x/{i:020}-1.img"))
            .collect::<Vec<_>>(),
        "listed names"
    );
    for o in &listed {
        let i: usize = o.metadata["i"].parse().unwrap();
        assert_eq!(o.size, 1000 + i as u64, "size of {}", o.name);
    }
}
