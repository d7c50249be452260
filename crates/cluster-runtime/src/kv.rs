//! An app's private KV store.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{Instrument, info_span};

use super::app::App;
use cluster_core::error::{Error, Result};
use cluster_core::kv::{KvBucket, KvEntry, KvWatch, Revision};

/// The private KV store of one app: a bucket no other app's handle can reach.
#[derive(Clone, Debug)]
pub struct AppKv {
    app: App,
}

impl AppKv {
    pub(crate) fn new(app: App) -> Self {
        Self { app }
    }

    async fn bucket(&self) -> Result<Arc<dyn KvBucket>> {
        let shared = self.app.shared()?;
        let started = shared.started().await?;
        started
            .app_buckets
            .get(self.app.name())
            .cloned()
            .ok_or_else(|| Error::AppNotFound(self.app.name().to_string()))
    }

    /// Runs one operation under a `kv` span and counts it in `gc_kv_operations_total`.
    async fn op<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = info_span!("kv", app = %self.app.name(), op);
        let result = f.instrument(span).await;
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        crate::metrics::kv(self.app.name().as_str(), op, status);
        result
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.op("get", async {
            Ok(self.bucket().await?.get(key).await?.map(|e| e.value))
        })
        .await
    }

    /// The value of `key` with its revision.
    pub async fn entry(&self, key: &str) -> Result<Option<KvEntry>> {
        self.op("get", async { self.bucket().await?.get(key).await })
            .await
    }

    /// Writes `value`.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<Revision> {
        let value = value.into();
        self.op("put", async { self.bucket().await?.put(key, value).await })
            .await
    }

    /// Writes `value` only if `key` does not exist.
    pub async fn create(&self, key: &str, value: impl Into<Bytes>) -> Result<Revision> {
        let value = value.into();
        self.op("create", async {
            self.bucket().await?.create(key, value, None).await
        })
        .await
    }

    /// Writes `value` only if the key's revision is `expected`.
    pub async fn update(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        expected: Revision,
    ) -> Result<Revision> {
        let value = value.into();
        self.op("update", async {
            self.bucket()
                .await?
                .update(key, value, expected, None)
                .await
        })
        .await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.op("delete", async {
            self.bucket().await?.delete(key, None).await
        })
        .await
    }

    /// Keys starting with `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.op("keys", async { self.bucket().await?.keys(prefix).await })
            .await
    }

    /// Watches keys starting with `prefix`.
    pub async fn watch(&self, prefix: &str) -> Result<KvWatch> {
        self.op("watch", async { self.bucket().await?.watch(prefix).await })
            .await
    }
}
