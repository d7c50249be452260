//! `ReplicatedLog::read_from` on an ordered push consumer.
//!
//! async-nats' ordered consumer recreates itself after a reconnect, a missed heartbeat or a
//! consumer-sequence gap, resuming after the last stream sequence it delivered (from the start
//! of the stream when it had delivered nothing yet). This wrapper drops every message below the
//! requested start and every sequence already delivered, so the caller sees each retained entry
//! from the start once, in order, and then live appends.

use async_nats::jetstream::consumer::push::{OrderedConfig, OrderedErrorKind};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::stream;
use cluster_core::stream::{LogEntry, LogStream};
use cluster_core::{Error, Result};
use futures::StreamExt;

use super::log::{CONSUMER_CREATE_TIMEOUT, entry_headers};
use crate::error::{describe, transient};

/// Starts an ordered consumer on `subject` of `stream` at `start` (≥ 1).
pub(super) async fn read_stream(
    client: &async_nats::Client,
    stream: &stream::Stream,
    subject: &str,
    start: u64,
) -> Result<LogStream> {
    let what = format!(
        "read log stream {} from {start}",
        stream.cached_info().config.name
    );
    let create = stream.create_consumer(OrderedConfig {
        deliver_subject: client.new_inbox(),
        description: Some("cluster log reader".to_owned()),
        filter_subject: subject.to_owned(),
        replay_policy: ReplayPolicy::Instant,
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: start,
        },
        ..OrderedConfig::default()
    });
    let consumer = tokio::time::timeout(CONSUMER_CREATE_TIMEOUT, create)
        .await
        .map_err(|_| Error::Timeout(format!("{what}: consumer creation timed out")))?
        .map_err(|e| transient(&what, describe(&e).contains("timed out"), describe(&e)))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| transient(&what, false, describe(&e)))?;
    let mut delivered = start - 1;
    let entries = messages.filter_map(move |item| {
        let out = match item {
            Ok(m) => match m.info() {
                Ok(info) if info.stream_sequence > delivered => {
                    delivered = info.stream_sequence;
                    Some(Ok(LogEntry {
                        seq: info.stream_sequence,
                        headers: entry_headers(m.headers.as_ref()),
                        payload: m.payload.clone(),
                    }))
                }
                // Replayed after a recreation: already delivered or before the start.
                Ok(_) => None,
                Err(e) => Some(Err(Error::Unavailable(format!(
                    "log message without JetStream metadata: {e}"
                )))),
            },
            // The ordered consumer recreates itself after these; keep reading.
            Err(e)
                if matches!(
                    e.kind(),
                    OrderedErrorKind::MissingHeartbeat | OrderedErrorKind::Recreate
                ) =>
            {
                tracing::debug!(error = %describe(&e), "log reader interrupted, resuming");
                None
            }
            Err(e) => Some(Err(Error::Unavailable(format!(
                "log reader failed: {}",
                describe(&e)
            )))),
        };
        futures::future::ready(out)
    });
    Ok(LogStream::new(entries.boxed()))
}
