//! KV watches on an ordered push consumer that survive reconnects.
//!
//! async-nats' ordered consumer recreates itself after a reconnect, a missed heartbeat or a
//! sequence gap, resuming after the last stream sequence it delivered. Before it has delivered
//! anything it resumes from the start of the stream, so this wrapper drops every message at or
//! below the stream sequence the watch started after (and any already delivered): the caller
//! sees each change committed after `watch` returned exactly once, in order.

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv;
use cluster_core::{KvWatch, Result, WatchEvent, WatchOp};
use futures::StreamExt;

use super::wire;
use crate::error::{describe, transient};

/// Starts a watch of keys starting with `prefix` in `store`.
pub(crate) async fn watch_bucket(
    client: &async_nats::Client,
    store: &kv::Store,
    prefix: &str,
) -> Result<KvWatch> {
    let bucket_prefix = format!("$KV.{}.", store.name);
    // A prefix ending in '.' is a whole-token prefix the server can filter; anything else is
    // filtered here.
    let filter_subject = if prefix.ends_with('.') {
        format!("{bucket_prefix}{prefix}>")
    } else {
        format!("{bucket_prefix}>")
    };
    let what = format!("watch bucket {} prefix {prefix:?}", store.name);
    let consumer = store
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some("cluster kv watch".to_owned()),
            filter_subject,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::New,
            ..OrderedConfig::default()
        })
        .await
        .map_err(|e| transient(&what, describe(&e).contains("timed out"), describe(&e)))?;
    // With DeliverPolicy::New the consumer starts after the stream's last sequence, which the
    // server reports as "delivered" in the consumer info.
    let start_after = consumer.cached_info().delivered.stream_sequence;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| transient(&what, false, describe(&e)))?;
    let key_prefix = prefix.to_owned();
    let mut delivered = start_after;
    let events = messages.filter_map(move |item| {
        let event = match item {
            Ok(message) => match message.info() {
                Ok(info) if info.stream_sequence > delivered => {
                    delivered = info.stream_sequence;
                    message
                        .subject
                        .as_str()
                        .strip_prefix(&bucket_prefix)
                        .filter(|key| key.starts_with(&key_prefix))
                        .map(|key| {
                            let op = wire::classify(message.headers.as_ref());
                            WatchEvent {
                                key: key.to_owned(),
                                op,
                                value: if op == WatchOp::Put {
                                    message.payload.clone()
                                } else {
                                    bytes::Bytes::new()
                                },
                                revision: cluster_core::Revision(info.stream_sequence),
                            }
                        })
                }
                // Replayed after a consumer recreation: already delivered or older than the
                // watch.
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "kv watch: message without JetStream metadata");
                    None
                }
            },
            Err(e) => {
                // The ordered consumer recreates itself after this; keep going.
                tracing::debug!(error = %describe(&e), "kv watch: consumer interrupted, resuming");
                None
            }
        };
        futures::future::ready(event)
    });
    Ok(KvWatch::new(events.boxed()))
}
