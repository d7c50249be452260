//! One JetStream KV bucket as a `cluster_core::KvBucket`.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::kv::{validate_key, validate_prefix};
use cluster_core::{Error, KvBucket, KvEntry, KvWatch, Result, Revision, WatchOp};
use futures::StreamExt;

use super::watch::watch_bucket;
use super::wire::{self, EXPECTED_LAST_SUBJECT_SEQUENCE, KV_OPERATION, TTL};
use crate::connection::NatsConnection;
use crate::error::{
    WriteFailure, conflict, describe, map_publish_error, retry_unknown_stream, transient,
};

/// How often `create` re-reads and retries when the key's last message is a delete or expiry
/// marker that changes under it.
const CREATE_ATTEMPTS: usize = 3;

/// How many per-key reads `keys` keeps in flight.
const KEYS_CONCURRENCY: usize = 32;

/// A JetStream KV bucket (stream `KV_<name>`, subjects `$KV.<name>.<key>`).
///
/// Revisions are stream sequences. Writes are JetStream publishes with
/// `Nats-Expected-Last-Subject-Sequence` for compare-and-set and `Nats-TTL` for per-key TTLs;
/// reads go to the stream leader (not direct gets), so a connection reads its own writes.
#[derive(Debug)]
pub struct NatsKvBucket {
    connection: NatsConnection,
    store: kv::Store,
    /// The configuration the bucket was opened with: recreates it when the store lost it.
    config: kv::Config,
    ttl_enabled: bool,
    max_value_size: usize,
}

/// The last message stored for a key.
struct Last {
    revision: u64,
    op: WatchOp,
    value: Bytes,
}

impl NatsKvBucket {
    pub(crate) fn new(
        connection: NatsConnection,
        store: kv::Store,
        config: kv::Config,
        ttl_enabled: bool,
        max_value_size: usize,
    ) -> Self {
        Self {
            connection,
            store,
            config,
            ttl_enabled,
            max_value_size,
        }
    }

    /// Whether keys may carry a per-key TTL.
    pub fn per_key_ttl(&self) -> bool {
        self.ttl_enabled
    }

    /// The largest value accepted.
    pub fn max_value_size(&self) -> usize {
        self.max_value_size
    }

    fn check_value(&self, value: &Bytes, headers: &HeaderMap) -> Result<()> {
        if value.len() > self.max_value_size {
            return Err(Error::PayloadTooLarge {
                size: value.len(),
                max: self.max_value_size,
            });
        }
        let header_len: usize = headers
            .iter()
            .map(|(n, vs)| {
                vs.iter()
                    .map(|v| AsRef::<str>::as_ref(n).len() + v.as_str().len() + 4)
                    .sum::<usize>()
            })
            .sum::<usize>()
            + 12;
        let max_payload = self.connection.client().server_info().max_payload;
        let size = value.len() + header_len;
        if size > max_payload {
            return Err(Error::PayloadTooLarge {
                size,
                max: max_payload,
            });
        }
        Ok(())
    }

    fn ttl_headers(&self, headers: &mut HeaderMap, ttl: Option<Duration>) -> Result<()> {
        let Some(ttl) = ttl else {
            return Ok(());
        };
        if !self.ttl_enabled {
            return Err(Error::InvalidArgument(format!(
                "bucket {} was not created with per_key_ttl; TTLs are not allowed",
                self.store.name
            )));
        }
        if ttl.is_zero() {
            return Err(Error::InvalidArgument("a TTL must be positive".to_owned()));
        }
        headers.insert(TTL, wire::ttl_header_value(ttl));
        Ok(())
    }

    /// Publishes one message for `key` and returns its stream sequence.
    async fn write(
        &self,
        key: &str,
        headers: HeaderMap,
        value: Bytes,
    ) -> std::result::Result<u64, WriteFailure> {
        let client = self.connection.client();
        NatsConnection::ensure_connected(client).map_err(WriteFailure::Other)?;
        let max_payload = client.server_info().max_payload;
        let what = format!("write {key:?} in bucket {}", self.store.name);
        let subject = wire::key_subject(&self.store.name, key);
        let js = self.connection.jetstream();
        let publish = || async {
            if headers.is_empty() {
                js.publish(subject.clone(), value.clone()).await?.await
            } else {
                js.publish_with_headers(subject.clone(), headers.clone(), value.clone())
                    .await?
                    .await
            }
        };
        let mut acked = publish().await;
        if acked
            .as_ref()
            .is_err_and(|e: &PublishError| e.kind() == PublishErrorKind::StreamNotFound)
        {
            // The store lost the bucket (reset, deleted): recreate it, then write. A new
            // bucket may not be known to this client's server yet: see retry_unknown_stream.
            self.recreate().await;
            acked = retry_unknown_stream(publish).await;
        }
        acked
            .map(|ack| ack.sequence)
            .map_err(|e| map_publish_error(&what, &e, max_payload))
    }

    /// Recreates the bucket with its configuration after the store lost it (best effort: a
    /// concurrent creator may win; the write that follows tells).
    async fn recreate(&self) {
        let js = self.connection.jetstream();
        match js.create_key_value(self.config.clone()).await {
            Ok(_) => tracing::warn!(bucket = %self.store.name, "bucket was missing; recreated it"),
            Err(e) => tracing::debug!(bucket = %self.store.name, error = %describe(&e),
                "cannot recreate bucket (another node may have)"),
        }
    }

    /// The last message of `key`, read from the stream leader.
    async fn last(&self, key: &str) -> Result<Option<Last>> {
        NatsConnection::ensure_connected(self.connection.client())?;
        let subject = wire::key_subject(&self.store.name, key);
        match self
            .store
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => Ok(Some(Last {
                revision: message.sequence,
                op: wire::classify(Some(&message.headers)),
                value: message.payload,
            })),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                LastRawMessageErrorKind::InvalidSubject => {
                    Err(Error::InvalidArgument(format!("invalid key {key:?}")))
                }
                _ => {
                    let text = describe(&e);
                    let timed_out = text.contains("timed out");
                    Err(transient(&format!("read {key:?}"), timed_out, text))
                }
            },
        }
    }

    /// The revision of the key's live value, for `Conflict` errors (best effort).
    async fn live_revision(&self, key: &str) -> Option<u64> {
        match self.last(key).await {
            Ok(Some(last)) if last.op == WatchOp::Put => Some(last.revision),
            _ => None,
        }
    }
}

#[async_trait]
impl KvBucket for NatsKvBucket {
    fn name(&self) -> &str {
        &self.store.name
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        validate_key(key)?;
        Ok(self.last(key).await?.and_then(|last| {
            (last.op == WatchOp::Put).then(|| KvEntry {
                key: key.to_owned(),
                value: last.value,
                revision: Revision(last.revision),
            })
        }))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        validate_key(key)?;
        let headers = HeaderMap::new();
        self.check_value(&value, &headers)?;
        match self.write(key, headers, value).await {
            Ok(rev) => Ok(Revision(rev)),
            // A plain put has no expectation, so it cannot conflict.
            Err(WriteFailure::Conflict(_)) => Err(Error::Internal(format!(
                "unconditional put of {key:?} reported a sequence conflict"
            ))),
            Err(WriteFailure::Other(e)) => Err(e),
        }
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision> {
        validate_key(key)?;
        let mut base = HeaderMap::new();
        self.ttl_headers(&mut base, ttl)?;
        base.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        self.check_value(&value, &base)?;
        // First assume the subject is empty. If it is not, its last message may be a delete
        // or expiry marker (no live value): then compare-and-set on the marker's revision.
        let mut expected = 0u64;
        let mut last_current = None;
        for _ in 0..CREATE_ATTEMPTS {
            let mut headers = base.clone();
            headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string());
            match self.write(key, headers, value.clone()).await {
                Ok(rev) => return Ok(Revision(rev)),
                Err(WriteFailure::Other(e)) => return Err(e),
                Err(WriteFailure::Conflict(current)) => {
                    last_current = current;
                    match self.last(key).await? {
                        None => expected = 0,
                        Some(last) if last.op == WatchOp::Put => {
                            return Err(conflict(key, None, Some(last.revision)));
                        }
                        Some(last) => expected = last.revision,
                    }
                }
            }
        }
        let current = self.live_revision(key).await.or(last_current);
        Err(conflict(key, None, current))
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        validate_key(key)?;
        let mut headers = HeaderMap::new();
        self.ttl_headers(&mut headers, ttl)?;
        headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, expected.0.to_string());
        self.check_value(&value, &headers)?;
        match self.write(key, headers, value).await {
            Ok(rev) => Ok(Revision(rev)),
            Err(WriteFailure::Other(e)) => Err(e),
            Err(WriteFailure::Conflict(_)) => {
                let current = self.live_revision(key).await;
                Err(conflict(key, Some(expected), current))
            }
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<()> {
        validate_key(key)?;
        let mut headers = HeaderMap::new();
        headers.insert(KV_OPERATION, "DEL");
        if let Some(expected) = expected {
            headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, expected.0.to_string());
        }
        match self.write(key, headers, Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(WriteFailure::Other(e)) => Err(e),
            Err(WriteFailure::Conflict(_)) => {
                let current = self.live_revision(key).await;
                Err(conflict(key, expected, current))
            }
        }
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        NatsConnection::ensure_connected(self.connection.client())?;
        let what = format!("list keys of bucket {}", self.store.name);
        let bucket_prefix = wire::key_subject(&self.store.name, "");
        let filter = if prefix.ends_with('.') {
            format!("{bucket_prefix}{prefix}>")
        } else {
            format!("{bucket_prefix}>")
        };
        // The stream leader lists the subjects holding a message (consistent with acknowledged
        // writes, unlike a consumer on a lagging replica); each subject's last message then
        // tells whether it is a live value or a delete/expiry marker.
        let subjects = self
            .store
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| transient(&what, describe(&e).contains("timed out"), describe(&e)))?;
        let candidates: Vec<String> = subjects
            .filter_map(|item| {
                futures::future::ready(match item {
                    Ok((subject, _count)) => subject
                        .strip_prefix(&bucket_prefix)
                        .filter(|key| key.starts_with(prefix))
                        .map(|key| Ok(key.to_owned())),
                    Err(e) => Some(Err(transient(&what, false, describe(&e)))),
                })
            })
            .collect::<Vec<Result<String>>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let checked: Vec<Result<Option<String>>> = futures::stream::iter(candidates)
            .map(|key| async move {
                Ok(match self.last(&key).await? {
                    Some(last) if last.op == WatchOp::Put => Some(key),
                    _ => None,
                })
            })
            .buffer_unordered(KEYS_CONCURRENCY)
            .collect()
            .await;
        let mut keys = checked
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>>>()?;
        keys.sort();
        Ok(keys)
    }

    async fn watch(&self, prefix: &str) -> Result<KvWatch> {
        validate_prefix(prefix)?;
        NatsConnection::ensure_connected(self.connection.client())?;
        watch_bucket(self.connection.client(), &self.store, prefix).await
    }
}
