//! [`ReplicatedLog`] on one JetStream stream.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::stream::{
    AppendAck, LogEntry, LogState, LogStream, MSG_ID_HEADER, ReplicatedLog,
};
use cluster_core::{Error, Headers, Result, Revision};

use super::LogConfig;
use super::read::read_stream;
use crate::connection::NatsConnection;
use crate::error::{
    describe, is_wrong_last_sequence, jetstream_code, retry_unknown_stream, transient,
    wrong_last_sequence,
};
use crate::transport::{from_header_map, to_header_map};

/// Headers the server may keep on stored messages that are publish conditions, not data.
const CONDITION_HEADER_PREFIX: &str = "Nats-Expected-";

/// Room left for the headers this adapter adds (`Nats-Expected-Last-Sequence`,
/// `Nats-Expected-Stream`) when checking a payload against `max_payload`.
const CONDITION_HEADERS_LEN: usize = 128;

/// A [`ReplicatedLog`] on a JetStream stream with one subject.
///
/// * `append` publishes to the subject with the caller's headers (`Nats-Msg-Id` included),
///   `Nats-Expected-Stream` and, when given, `Nats-Expected-Last-Sequence`; the stream rejects a
///   stale expected sequence ("wrong last sequence", JetStream error 10071) → `Conflict`, and
///   acknowledges a repeated `Nats-Msg-Id` within the duplicate window as a duplicate. A single
///   server checks the expected sequence first; a conflicting append whose message id is the
///   entry at `expected + 1` is therefore reported as that entry's duplicate (the retry of an
///   append whose ack was lost).
/// * `read_from` is an ordered push consumer (ephemeral, no acks, flow control, idle
///   heartbeats) that recreates itself after reconnects and gaps; entries it replays are
///   dropped, so the caller sees each sequence once, in order.
/// * `get`, `state` and `purge_below` go to the stream leader (no direct gets: a lagging
///   replica must not answer a promotion's catch-up).
/// * `max_payload` is the server's `max_payload` (1 MiB by default).
#[derive(Debug, Clone)]
pub struct NatsReplicatedLog {
    connection: NatsConnection,
    stream: stream::Stream,
    config: LogConfig,
}

impl NatsReplicatedLog {
    /// Opens the stream of `config`, creating it when missing.
    ///
    /// Errors: `InvalidArgument` for invalid names or an existing stream with other subjects;
    /// `Unavailable`/`Timeout` when JetStream cannot be reached.
    pub async fn open(connection: &NatsConnection, config: LogConfig) -> Result<Self> {
        config.validate()?;
        NatsConnection::ensure_connected(connection.client())?;
        let js = connection.jetstream();
        let what = format!("open log stream {}", config.stream);
        let stream = match js.get_stream(&config.stream).await {
            Ok(s) => s,
            Err(_) => {
                let cfg = stream::Config {
                    name: config.stream.clone(),
                    description: Some("cluster replicated log".to_owned()),
                    subjects: vec![config.subject.clone()],
                    retention: stream::RetentionPolicy::Limits,
                    storage: if config.memory_storage {
                        stream::StorageType::Memory
                    } else {
                        stream::StorageType::File
                    },
                    num_replicas: config.replicas.max(1),
                    duplicate_window: config.duplicate_window,
                    allow_direct: false,
                    deny_delete: true,
                    ..stream::Config::default()
                };
                match js.create_stream(cfg).await {
                    Ok(s) => s,
                    // A concurrent creator may have won the race.
                    Err(create_err) => js.get_stream(&config.stream).await.map_err(|_| {
                        let text = describe(&create_err);
                        if text.contains("insufficient resources")
                            || text.contains("replicas")
                            || text.contains("subjects overlap")
                        {
                            Error::InvalidArgument(format!("{what}: {text}"))
                        } else {
                            transient(&what, text.contains("timed out"), text)
                        }
                    })?,
                }
            }
        };
        let subjects = &stream.cached_info().config.subjects;
        if subjects.as_slice() != std::slice::from_ref(&config.subject) {
            return Err(Error::InvalidArgument(format!(
                "{what}: the stream exists with subjects {subjects:?}, expected [{}]",
                config.subject
            )));
        }
        Ok(Self {
            connection: connection.clone(),
            stream,
            config,
        })
    }

    /// The stream name.
    pub fn stream_name(&self) -> &str {
        &self.config.stream
    }

    /// The subject appended to.
    pub fn subject(&self) -> &str {
        &self.config.subject
    }

    /// Deletes the stream and every entry (tests and decommissioning).
    pub async fn delete(self) -> Result<()> {
        self.connection
            .jetstream()
            .delete_stream(&self.config.stream)
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable(format!("delete stream: {}", describe(&e))))
    }

    fn stream_max_payload(&self) -> usize {
        let server = self.connection.client().server_info().max_payload;
        match usize::try_from(self.stream.cached_info().config.max_message_size) {
            Ok(m) if m > 0 => m.min(server),
            _ => server,
        }
    }

    fn what(&self, op: &str) -> String {
        format!("{op} on log stream {}", self.config.stream)
    }
}

/// Keeps the caller's headers, drops the publish conditions the server stored with them.
pub(super) fn entry_headers(map: Option<&async_nats::HeaderMap>) -> Headers {
    let all = from_header_map(map);
    let mut kept = Headers::new();
    for (n, v) in all.iter() {
        if !n.starts_with(CONDITION_HEADER_PREFIX) {
            kept.insert(n, v);
        }
    }
    kept
}

#[async_trait]
impl ReplicatedLog for NatsReplicatedLog {
    async fn append(
        &self,
        headers: Headers,
        payload: Bytes,
        expected_last_seq: Option<u64>,
    ) -> Result<AppendAck> {
        let max = self.max_payload();
        let size = payload.len() + headers.encoded_len() + CONDITION_HEADERS_LEN;
        if size > max {
            return Err(Error::PayloadTooLarge { size, max });
        }
        let client = self.connection.client();
        NatsConnection::ensure_connected(client)?;
        let msg_id = headers.get(MSG_ID_HEADER).map(str::to_owned);
        let mut msg = PublishMessage::build()
            .headers(to_header_map(&headers)?)
            .payload(payload)
            .expected_stream(&self.config.stream);
        if let Some(seq) = expected_last_seq {
            msg = msg.expected_last_sequence(seq);
        }
        let what = self.what("append");
        let map = |e: async_nats::jetstream::context::PublishError| -> Error {
            let text = describe(&e);
            if is_wrong_last_sequence(&e) {
                return Error::Conflict {
                    key: self.config.stream.clone(),
                    expected: expected_last_seq.map(Revision),
                    current: wrong_last_sequence(&e).map(Revision),
                };
            }
            match e.kind() {
                PublishErrorKind::TimedOut => transient(&what, true, text),
                PublishErrorKind::MaxPayloadExceeded => Error::PayloadTooLarge { size, max },
                _ => transient(&what, text.contains("timed out"), text),
            }
        };
        // A new stream may not be known to this client's server yet: see retry_unknown_stream.
        let sent = retry_unknown_stream(|| async {
            self.connection
                .jetstream()
                .send_publish(self.config.subject.clone(), msg.clone())
                .await?
                .await
        })
        .await
        .map_err(map);
        if let (Err(Error::Conflict { .. }), Some(expected), Some(id)) =
            (&sent, expected_last_seq, msg_id.as_deref())
        {
            // A single server checks the expected sequence before the message id, so the retry
            // of an append whose ack was lost is rejected instead of being acknowledged as a
            // duplicate. The original, appended with the same expectation, sits at
            // `expected + 1`: report the duplicate as the contract requires.
            if let Ok(Some(e)) = self.get(expected + 1).await
                && e.headers.get(MSG_ID_HEADER) == Some(id)
            {
                return Ok(AppendAck {
                    seq: e.seq,
                    duplicate: true,
                });
            }
        }
        let ack = match sent {
            Ok(ack) => ack,
            // The server's error text does not always carry the current sequence: read it
            // (best effort, for the error report only).
            Err(Error::Conflict {
                key,
                expected,
                current: None,
            }) => {
                let current = self.state().await.ok().map(|s| Revision(s.last_seq));
                return Err(Error::Conflict {
                    key,
                    expected,
                    current,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(AppendAck {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn read_from(&self, seq: u64) -> Result<LogStream> {
        NatsConnection::ensure_connected(self.connection.client())?;
        read_stream(
            self.connection.client(),
            &self.stream,
            &self.config.subject,
            seq.max(1),
        )
        .await
    }

    async fn get(&self, seq: u64) -> Result<Option<LogEntry>> {
        if seq == 0 {
            return Ok(None);
        }
        NatsConnection::ensure_connected(self.connection.client())?;
        match self.stream.get_raw_message(seq).await {
            Ok(m) => Ok(Some(LogEntry {
                seq: m.sequence,
                headers: entry_headers(Some(&m.headers)),
                payload: m.payload,
            })),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                _ => {
                    let text = describe(&e);
                    if jetstream_code(&e) == Some(ErrorCode::NO_MESSAGE_FOUND) {
                        Ok(None)
                    } else {
                        Err(transient(
                            &self.what(&format!("get {seq}")),
                            text.contains("timed out"),
                            text,
                        ))
                    }
                }
            },
        }
    }

    async fn state(&self) -> Result<LogState> {
        NatsConnection::ensure_connected(self.connection.client())?;
        let info = self.stream.get_info().await.map_err(|e| {
            let text = describe(&e);
            transient(&self.what("state"), text.contains("timed out"), text)
        })?;
        let s = info.state;
        let first_seq = if s.messages == 0 {
            s.last_sequence + 1
        } else {
            s.first_sequence.max(1)
        };
        Ok(LogState {
            first_seq,
            last_seq: s.last_sequence,
        })
    }

    async fn purge_below(&self, seq: u64) -> Result<u64> {
        let state = self.state().await?;
        // Never purge past the end: JetStream would move the stream's last sequence forward.
        let upto = seq.min(state.last_seq + 1);
        if upto <= state.first_seq {
            return Ok(0);
        }
        let resp = self.stream.purge().sequence(upto).await.map_err(|e| {
            let text = describe(&e);
            transient(&self.what("purge"), text.contains("timed out"), text)
        })?;
        Ok(resp.purged)
    }

    fn max_payload(&self) -> usize {
        self.stream_max_payload()
    }
}

/// How long a reader waits for a consumer to be created.
pub(super) const CONSUMER_CREATE_TIMEOUT: Duration = Duration::from_secs(10);
