//! An app's private KV store.

use std::sync::Arc;

use bytes::Bytes;

use super::app::App;
use crate::error::{Error, Result};
use crate::kv::{KvBucket, KvEntry, KvWatch, Revision};

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

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.bucket().await?.get(key).await?.map(|e| e.value))
    }

    /// The value of `key` with its revision.
    pub async fn entry(&self, key: &str) -> Result<Option<KvEntry>> {
        self.bucket().await?.get(key).await
    }

    /// Writes `value`.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<Revision> {
        self.bucket().await?.put(key, value.into()).await
    }

    /// Writes `value` only if `key` does not exist.
    pub async fn create(&self, key: &str, value: impl Into<Bytes>) -> Result<Revision> {
        self.bucket().await?.create(key, value.into(), None).await
    }

    /// Writes `value` only if the key's revision is `expected`.
    pub async fn update(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        expected: Revision,
    ) -> Result<Revision> {
        self.bucket()
            .await?
            .update(key, value.into(), expected, None)
            .await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.bucket().await?.delete(key, None).await
    }

    /// Keys starting with `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.bucket().await?.keys(prefix).await
    }

    /// Watches keys starting with `prefix`.
    pub async fn watch(&self, prefix: &str) -> Result<KvWatch> {
        self.bucket().await?.watch(prefix).await
    }
}
