//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod kv_scenarios;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster_core::{KvWatch, WatchEvent};
use cluster_nats::{ConnectOptions, NatsConnection};
use futures::StreamExt;

/// Connects to `urls` with fast ping/reconnect settings for tests.
pub async fn connect(urls: &[String]) -> NatsConnection {
    NatsConnection::connect(test_options(urls))
        .await
        .expect("connect to nats")
}

/// Options with short ping interval and reconnect backoff.
pub fn test_options(urls: &[String]) -> ConnectOptions {
    ConnectOptions::new(urls.iter().cloned())
        .name("cluster-nats-test")
        .ping_interval(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(3))
}

/// A bucket name unique within the test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::SeqCst))
}

/// The next event within `timeout`, or panic.
pub async fn next_event(watch: &mut KvWatch, timeout: Duration) -> WatchEvent {
    tokio::time::timeout(timeout, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {timeout:?}"))
        .expect("watch ended")
}

/// Asserts no event arrives within `window`.
pub async fn no_event(watch: &mut KvWatch, window: Duration) {
    if let Ok(event) = tokio::time::timeout(window, watch.next()).await {
        panic!("unexpected watch event {event:?}");
    }
}

/// Retries `f` until it returns `Some` or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
