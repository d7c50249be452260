//! `cluster_core::KvStore` on JetStream KV buckets.

mod bucket;
mod watch;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use cluster_core::kv::validate_bucket_name;
use cluster_core::{BucketConfig, Error, KvBucket, KvStore, Result};

pub use bucket::NatsKvBucket;

use crate::connection::NatsConnection;
use crate::error::{describe, is_placement_refused};

/// Creates and opens JetStream KV buckets (stream `KV_<name>`, history 1, file storage).
///
/// Buckets with `per_key_ttl` get limit markers: the stream allows per-message TTLs and the
/// server writes a delete marker (reported as `WatchOp::Expired`) when a key's TTL runs out.
#[derive(Clone, Debug)]
pub struct NatsKvStore {
    connection: NatsConnection,
    replicas: Option<usize>,
    marker_ttl: Duration,
}

impl NatsKvStore {
    pub(crate) fn new(connection: NatsConnection, replicas: Option<usize>) -> Self {
        Self {
            connection,
            replicas,
            marker_ttl: wire::DEFAULT_MARKER_TTL,
        }
    }

    /// How long the server keeps the marker of an expired key (default 60 s; at least 1 s).
    /// Only affects buckets created afterwards.
    pub fn with_marker_ttl(mut self, ttl: Duration) -> Self {
        self.marker_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    fn kv_config(&self, config: &BucketConfig) -> Result<kv::Config> {
        let max_value_size = i32::try_from(config.max_value_size).map_err(|_| {
            Error::InvalidArgument(format!(
                "max_value_size {} of bucket {} is too large",
                config.max_value_size, config.name
            ))
        })?;
        Ok(kv::Config {
            bucket: config.name.clone(),
            description: config.description.clone(),
            max_value_size,
            history: 1,
            num_replicas: self.replicas.unwrap_or(config.replicas).max(1),
            storage: async_nats::jetstream::stream::StorageType::File,
            limit_markers: config.per_key_ttl.then_some(self.marker_ttl),
            ..kv::Config::default()
        })
    }
}

#[async_trait]
impl KvStore for NatsKvStore {
    async fn bucket(&self, config: BucketConfig) -> Result<Arc<dyn KvBucket>> {
        validate_bucket_name(&config.name)?;
        let kv_config = self.kv_config(&config)?;
        let client = self.connection.client();
        NatsConnection::ensure_connected(client)?;
        let js = self.connection.jetstream();
        // Open if it exists (one round trip), else create; a concurrent creator may win the
        // race, so open again after a failed create.
        let store = match js.get_key_value(config.name.clone()).await {
            Ok(store) => store,
            Err(_) => match js.create_key_value(kv_config.clone()).await {
                Ok(store) => store,
                Err(create_err) => js.get_key_value(config.name.clone()).await.map_err(|_| {
                    let text = describe(&create_err);
                    if is_placement_refused(&create_err) {
                        Error::InvalidArgument(format!(
                            "cannot create bucket {}: {text}",
                            config.name
                        ))
                    } else {
                        Error::Unavailable(format!("cannot create bucket {}: {text}", config.name))
                    }
                })?,
            },
        };
        let ttl_enabled = store.stream.cached_info().config.allow_message_ttl;
        if config.per_key_ttl && !ttl_enabled {
            return Err(Error::InvalidArgument(format!(
                "bucket {} exists without per-key TTL support; it was created without \
                 per_key_ttl",
                config.name
            )));
        }
        let max_value_size = usize::try_from(store.stream.cached_info().config.max_message_size)
            .ok()
            .filter(|m| *m > 0)
            .unwrap_or(config.max_value_size);
        Ok(Arc::new(NatsKvBucket::new(
            self.connection.clone(),
            store,
            kv_config,
            ttl_enabled,
            max_value_size,
        )))
    }
}
