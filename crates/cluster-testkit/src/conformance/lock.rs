//! Conformance suite for [`Lock`] (see its contract).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvBucket, Lock, NodeId, TokioClock};
use cluster_runtime::{KvLock, LockOptions};
use futures::future::join_all;
use tokio::time::Instant;

use super::kv::KvFactory;
use super::{announce, ok, unique_name, within};

/// Hands out lock handles.
///
/// # To ensure correctness
///
/// * [`LockFactory::handle`] returns a new handle (its own owner and connection) of the lock
///   `name` in `scope`; handles of the same scope and name exclude each other.
/// * [`LockFactory::shared_bucket`] returns a bucket visible to every handle's connection, for
///   the data the scenarios protect.
#[async_trait]
pub trait LockFactory: Send + Sync {
    /// A new handle of lock `name` in `scope`, for node `node`.
    async fn handle(&self, scope: &str, name: &str, node: &str) -> Arc<dyn Lock>;

    /// A plain bucket for the protected data of `scope`.
    async fn shared_bucket(&self, scope: &str) -> Arc<dyn KvBucket>;

    /// The lock TTL.
    fn ttl(&self) -> Duration;
}

/// [`KvLock`] over any [`KvFactory`], one connection per handle.
pub struct KvLockFactory<F> {
    kv: F,
    options: LockOptions,
}

impl<F: KvFactory> KvLockFactory<F> {
    /// Locks over `kv` with a 2 s TTL.
    pub fn new(kv: F) -> Self {
        Self {
            kv,
            options: LockOptions {
                ttl: Duration::from_secs(2),
                safety_margin: 0.1,
            },
        }
    }
}

#[async_trait]
impl<F: KvFactory> LockFactory for KvLockFactory<F> {
    async fn handle(&self, scope: &str, name: &str, node: &str) -> Arc<dyn Lock> {
        let store = ok("connect", self.kv.connect().await);
        let bucket = ok(
            "open lock bucket",
            store
                .bucket(BucketConfig::new(format!("{scope}_locks")).with_per_key_ttl())
                .await,
        );
        let owner = format!("{node}/{}", uuid::Uuid::new_v4().simple());
        Arc::new(ok(
            "lock handle",
            KvLock::new(
                bucket,
                format!("lock.{name}"),
                NodeId::new(node).expect("valid node"),
                owner,
                self.options,
                Arc::new(TokioClock),
            ),
        ))
    }

    async fn shared_bucket(&self, scope: &str) -> Arc<dyn KvBucket> {
        let store = ok("connect", self.kv.connect().await);
        ok(
            "open data bucket",
            store
                .bucket(BucketConfig::new(format!("{scope}_data")))
                .await,
        )
    }

    fn ttl(&self) -> Duration {
        self.options.ttl
    }
}

/// Runs every scenario.
pub async fn run_all(factory: &dyn LockFactory) {
    mutual_exclusion_and_owner_only_release(factory).await;
    blocking_lock_wakes_on_release_and_times_out(factory).await;
    counter_under_lock_is_exact(factory).await;
    renewal_outlives_ttl_and_crash_expires(factory).await;
}

/// Two handles never hold the lock together; a non-holder's unlock fails and releases nothing;
/// fencing tokens increase across holders; `holder` names the holder.
pub async fn mutual_exclusion_and_owner_only_release(factory: &dyn LockFactory) {
    announce("lock", "mutual_exclusion_and_owner_only_release");
    let scope = unique_name("lk_mutex");
    let a = factory.handle(&scope, "m", "n1").await;
    let b = factory.handle(&scope, "m", "n2").await;
    assert!(
        ok("a try_lock", a.try_lock().await),
        "free lock must be acquired"
    );
    assert!(
        ok("a try_lock again", a.try_lock().await),
        "re-entrant try_lock by the holder"
    );
    assert!(
        !ok("b try_lock", b.try_lock().await),
        "held lock must not be acquired"
    );
    assert!(a.is_held() && !b.is_held());
    let t1 = a.fencing_token().expect("holder has a token");
    assert!(
        matches!(b.unlock().await, Err(Error::LockNotHeld)),
        "unlock by a non-holder must fail with LockNotHeld"
    );
    assert!(
        !ok("b try_lock after its failed unlock", b.try_lock().await),
        "still held by a"
    );
    let holder = ok("holder", b.holder().await).expect("someone holds it");
    assert_eq!(holder.node.as_str(), "n1");
    assert_eq!(holder.acquired_revision, t1);
    ok("a unlock", a.unlock().await);
    assert!(!a.is_held());
    assert!(ok("b try_lock after release", b.try_lock().await));
    let t2 = b.fencing_token().expect("token");
    assert!(t2 > t1, "fencing tokens must increase: {t1} then {t2}");
    ok("b unlock", b.unlock().await);
    assert!(ok("holder after release", a.holder().await).is_none());
}

/// `lock` returns soon after a release (event-driven) and fails with `Timeout` when the lock
/// stays held.
pub async fn blocking_lock_wakes_on_release_and_times_out(factory: &dyn LockFactory) {
    announce("lock", "blocking_lock_wakes_on_release_and_times_out");
    let scope = unique_name("lk_block");
    let a = factory.handle(&scope, "m", "n1").await;
    let b = factory.handle(&scope, "m", "n2").await;
    assert!(ok("a try_lock", a.try_lock().await));
    let err = b.lock(Duration::from_millis(300)).await;
    assert!(
        matches!(err, Err(Error::Timeout(_))),
        "expected Timeout, got {err:?}"
    );
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released = Instant::now();
    ok("a unlock", a.unlock().await);
    ok(
        "waiter acquires",
        within("waiter acquires", waiter).await.expect("join"),
    );
    assert!(
        released.elapsed() < factory.ttl() / 2,
        "waiter must wake on the release event, took {:?}",
        released.elapsed()
    );
    assert!(b.is_held());
    ok("b unlock", b.unlock().await);
}

/// 3 nodes × 5 tasks increment a counter (read, then write) under the lock: exactly 15.
pub async fn counter_under_lock_is_exact(factory: &dyn LockFactory) {
    announce("lock", "counter_under_lock_is_exact");
    let scope = unique_name("lk_counter");
    let data = factory.shared_bucket(&scope).await;
    ok("init", data.put("counter", Bytes::from_static(b"0")).await);
    let mut tasks = Vec::new();
    for node in 1..=3 {
        for _ in 0..5 {
            let handle = factory.handle(&scope, "counter", &format!("n{node}")).await;
            let data = data.clone();
            tasks.push(tokio::spawn(async move {
                ok("lock", handle.lock(Duration::from_secs(30)).await);
                let current = ok("read", data.get("counter").await).expect("counter exists");
                let n: u64 = std::str::from_utf8(&current.value)
                    .expect("utf8")
                    .parse()
                    .expect("number");
                // Yield so that a broken lock would interleave.
                tokio::time::sleep(Duration::from_millis(2)).await;
                ok(
                    "write",
                    data.put("counter", Bytes::from((n + 1).to_string())).await,
                );
                ok("unlock", handle.unlock().await);
            }));
        }
    }
    for r in within("all increments", join_all(tasks)).await {
        r.expect("task");
    }
    let value = ok("read", data.get("counter").await).expect("counter");
    assert_eq!(
        &value.value[..],
        b"15",
        "increments under the lock must not be lost"
    );
}

/// A held lock outlives several TTLs through renewal; a crashed holder's lock expires after the
/// TTL and is then acquired by another.
pub async fn renewal_outlives_ttl_and_crash_expires(factory: &dyn LockFactory) {
    announce("lock", "renewal_outlives_ttl_and_crash_expires");
    let scope = unique_name("lk_renew");
    let a = factory.handle(&scope, "m", "n1").await;
    let b = factory.handle(&scope, "m", "n2").await;
    assert!(ok("a try_lock", a.try_lock().await));
    tokio::time::sleep(factory.ttl() * 2).await;
    assert!(a.is_held(), "renewal must keep the lock beyond its TTL");
    assert!(
        !ok("b try_lock", b.try_lock().await),
        "renewed lock is still held"
    );
    let crashed = Instant::now();
    drop(a);
    ok("b acquires after expiry", b.lock(factory.ttl() * 3).await);
    assert!(
        crashed.elapsed() >= factory.ttl() / 2,
        "a crashed holder's lock was taken after {:?}, before its TTL",
        crashed.elapsed()
    );
    ok("b unlock", b.unlock().await);
}
