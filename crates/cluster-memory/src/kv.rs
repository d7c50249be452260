//! [`KvStore`] and [`KvBucket`] over the in-memory network.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::kv::{validate_bucket_name, validate_key, validate_prefix};
use cluster_core::{BucketConfig, Error, KvBucket, KvEntry, KvStore, KvWatch, Result, Revision};

use crate::bucket::{BucketShared, Expect};
use crate::delivery::{self, Gate};
use crate::lock::lock;
use crate::network::Shared;

/// One node's connection to the KV store of a [`MemoryNetwork`](crate::MemoryNetwork).
pub struct MemoryKvStore {
    shared: Arc<Shared>,
    node: String,
}

impl std::fmt::Debug for MemoryKvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKvStore")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl MemoryKvStore {
    pub(crate) fn new(shared: Arc<Shared>, node: &str) -> Self {
        Self {
            shared,
            node: node.to_owned(),
        }
    }

    /// The node this connection belongs to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Opens (creating if needed) a bucket with its concrete type.
    ///
    /// An existing bucket keeps the configuration it was created with.
    pub async fn open(&self, config: BucketConfig) -> Result<Arc<MemoryBucket>> {
        validate_bucket_name(&config.name)?;
        if config.max_value_size == 0 {
            return Err(Error::InvalidArgument(
                "max_value_size must be positive".to_owned(),
            ));
        }
        self.shared
            .faults
            .kv_gate(&self.node, self.shared.config.kv_op_timeout)
            .await?;
        let state = lock(&self.shared.buckets)
            .entry(config.name.clone())
            .or_insert_with(|| Arc::new(BucketShared::new(config, self.shared.faults.clone())))
            .clone();
        Ok(Arc::new(MemoryBucket {
            name: state.config.name.clone(),
            state,
            shared: self.shared.clone(),
            node: self.node.clone(),
        }))
    }
}

#[async_trait]
impl KvStore for MemoryKvStore {
    async fn bucket(&self, config: BucketConfig) -> Result<Arc<dyn KvBucket>> {
        Ok(self.open(config).await?)
    }
}

/// One node's handle to an in-memory bucket.
pub struct MemoryBucket {
    name: String,
    state: Arc<BucketShared>,
    shared: Arc<Shared>,
    node: String,
}

impl std::fmt::Debug for MemoryBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBucket")
            .field("name", &self.name)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Removes a watcher from its bucket when the watch stream is dropped.
struct Unwatch {
    bucket: Weak<BucketShared>,
    id: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        if let Some(bucket) = self.bucket.upgrade() {
            bucket.remove_watcher(self.id);
        }
    }
}

impl MemoryBucket {
    /// The bucket's configuration (as created).
    pub fn config(&self) -> &BucketConfig {
        &self.state.config
    }

    async fn gate(&self) -> Result<()> {
        self.shared
            .faults
            .kv_gate(&self.node, self.shared.config.kv_op_timeout)
            .await
    }

    fn check_write(&self, key: &str, value: &Bytes, ttl: Option<Duration>) -> Result<()> {
        validate_key(key)?;
        let max = self.state.config.max_value_size;
        if value.len() > max {
            return Err(Error::PayloadTooLarge {
                size: value.len(),
                max,
            });
        }
        match ttl {
            Some(_) if !self.state.config.per_key_ttl => Err(Error::InvalidArgument(format!(
                "bucket {} was not created with per_key_ttl; a TTL cannot be set",
                self.name
            ))),
            Some(ttl) if ttl.is_zero() => {
                Err(Error::InvalidArgument("a TTL must be positive".to_owned()))
            }
            _ => Ok(()),
        }
    }

    async fn write(
        &self,
        key: &str,
        value: Bytes,
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        self.check_write(key, &value, ttl)?;
        self.gate().await?;
        self.state.write(key, value, expect, ttl)
    }
}

#[async_trait]
impl KvBucket for MemoryBucket {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        validate_key(key)?;
        self.gate().await?;
        Ok(self.state.get(key))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        self.write(key, value, Expect::Any, None).await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision> {
        self.write(key, value, Expect::Absent, ttl).await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        self.write(key, value, Expect::Revision(expected), ttl)
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<()> {
        validate_key(key)?;
        self.gate().await?;
        self.state.delete(key, expected)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        self.gate().await?;
        Ok(self.state.keys(prefix))
    }

    async fn watch(&self, prefix: &str) -> Result<KvWatch> {
        validate_prefix(prefix)?;
        self.gate().await?;
        let id = self.state.reserve_watcher();
        let guard = Unwatch {
            bucket: Arc::downgrade(&self.state),
            id,
        };
        let (tx, stream) = delivery::channel(
            self.shared.faults.clone(),
            &self.node,
            Gate::Hold,
            Box::new(guard),
        );
        self.state.add_watcher(id, prefix, &self.node, tx);
        Ok(KvWatch::new(stream))
    }
}
