//! [`AuditSink`] on a JetStream stream `{P}_audit` with subjects
//! `cluster.{P}.audit._by.{node}.{category}.{action}` (see `docs/protocol/audit.md`): in secure
//! mode only `node:{node}` may publish there, so the subject vouches for the writer.
//!
//! * append: JetStream publish, acknowledged; `Nats-Msg-Id` = the record's id, so reports of
//!   one fact by several nodes are stored once within the duplicate window (2 min).
//! * query: an ephemeral pull consumer filtered by category (subjects of both layouts: also
//!   `cluster.{P}.audit.{category}.{action}` of nodes before the writer token) and started at `after + 1`
//!   or at `since` (server time), reading exactly the messages pending at creation; the app
//!   and `since` filters are re-checked on the record; one more match than the limit sets
//!   `truncated`.

use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_trait::async_trait;
use cluster_core::audit::{AuditEntry, AuditFilter, AuditPage, AuditRecord, AuditSink};
use cluster_core::stream::MSG_ID_HEADER;
use cluster_core::{NodeId, PlatformName, Result};
use futures::StreamExt;
use tracing::warn;

use crate::NatsConnection;
use crate::error::{describe, transient};

/// Options of the audit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStreamOptions {
    /// Records older than this are removed (default 7 days).
    pub max_age: Duration,
    /// Stream replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
}

impl Default for AuditStreamOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }
}

/// The audit stream name of `platform`: `{P}_audit`.
pub fn audit_stream_name(platform: &PlatformName) -> String {
    format!("{platform}_audit")
}

/// The token after `cluster.{P}.audit` that introduces the writing node.
const WRITER_TOKEN: &str = "_by";

/// The subject of one record: `cluster.{P}.audit._by.{node}.{category}.{action}`, `node` being
/// the record's emitter (the only identity allowed to publish there in secure mode).
pub fn audit_subject(platform: &PlatformName, record: &AuditRecord) -> String {
    format!(
        "{}.{WRITER_TOKEN}.{}.{}.{}",
        audit_prefix(platform),
        record.node,
        record.category,
        record.action
    )
}

/// The writing node named by a stored record's subject (`None` for the older layout without
/// it).
fn writer_of(platform: &PlatformName, subject: &str) -> Option<NodeId> {
    let rest = subject.strip_prefix(&format!("{}.{WRITER_TOKEN}.", audit_prefix(platform)))?;
    rest.split('.').next()?.parse().ok()
}

fn audit_prefix(platform: &PlatformName) -> String {
    format!(
        "{}.{platform}.audit",
        cluster_core::wire::names::SUBJECT_ROOT
    )
}

/// The platform's audit log on JetStream.
pub struct NatsAuditLog {
    js: async_nats::jetstream::Context,
    stream: tokio::sync::OnceCell<stream::Stream>,
    platform: PlatformName,
    options: AuditStreamOptions,
    /// Whether the stream may be created or updated (false for read-only tools).
    create: bool,
}

impl std::fmt::Debug for NatsAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAuditLog")
            .field("platform", &self.platform)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl NatsAuditLog {
    /// The audit log of `platform`; the stream is created (or its retention updated) on first
    /// use, so this can be wired into a platform builder synchronously.
    pub fn lazy(
        conn: &NatsConnection,
        platform: &PlatformName,
        options: AuditStreamOptions,
    ) -> Self {
        Self {
            js: conn.jetstream().clone(),
            stream: tokio::sync::OnceCell::new(),
            platform: platform.clone(),
            options,
            create: true,
        }
    }

    /// Opens (creating or updating) the audit stream of `platform` now.
    pub async fn open(
        conn: &NatsConnection,
        platform: &PlatformName,
        options: AuditStreamOptions,
    ) -> Result<Self> {
        let log = Self::lazy(conn, platform, options);
        log.stream().await?;
        Ok(log)
    }

    /// Opens the existing audit stream of `platform` without creating or changing it (for
    /// read-only tools); `Unavailable` when no node has created it yet.
    pub async fn existing(conn: &NatsConnection, platform: &PlatformName) -> Result<Self> {
        let log = Self {
            create: false,
            ..Self::lazy(conn, platform, AuditStreamOptions::default())
        };
        log.stream().await?;
        Ok(log)
    }

    async fn stream(&self) -> Result<&stream::Stream> {
        self.stream
            .get_or_try_init(|| async {
                let name = audit_stream_name(&self.platform);
                let what = format!("audit stream {name}");
                if !self.create {
                    return self.js.get_stream(&name).await.map_err(|e| {
                        cluster_core::Error::Unavailable(format!(
                            "{what}: {} (has a node of platform {} run yet?)",
                            describe(&e),
                            self.platform
                        ))
                    });
                }
                let config = stream::Config {
                    name: name.clone(),
                    description: Some("cluster audit records".to_owned()),
                    subjects: vec![format!("{}.>", audit_prefix(&self.platform))],
                    retention: RetentionPolicy::Limits,
                    discard: DiscardPolicy::Old,
                    storage: StorageType::File,
                    max_age: self.options.max_age,
                    num_replicas: self.options.replicas.max(1),
                    duplicate_window: Duration::from_secs(120),
                    ..stream::Config::default()
                };
                match self.js.get_or_create_stream(config.clone()).await {
                    Ok(s) if s.cached_info().config.max_age != self.options.max_age => {
                        self.js
                            .update_stream(config)
                            .await
                            .map_err(|e| transient(&what, false, describe(&e)))?;
                        self.js
                            .get_stream(&name)
                            .await
                            .map_err(|e| transient(&what, false, describe(&e)))
                    }
                    Ok(s) => Ok(s),
                    Err(e) => Err(transient(&what, false, describe(&e))),
                }
            })
            .await
    }

    /// The stream's name.
    pub fn stream_name(&self) -> String {
        audit_stream_name(&self.platform)
    }
}

#[async_trait]
impl AuditSink for NatsAuditLog {
    async fn append(&self, record: &AuditRecord) -> Result<()> {
        record.validate()?;
        self.stream().await?; // created on first use
        let subject = audit_subject(&self.platform, record);
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = &record.id {
            headers.insert(MSG_ID_HEADER, id.as_str());
        }
        let payload = record.encode()?;
        let what = format!("audit append {}", record.event());
        let ack = self
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| transient(&what, false, describe(&e)))?;
        ack.await
            .map_err(|e| transient(&what, describe(&e).contains("timed out"), describe(&e)))?;
        Ok(())
    }

    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage> {
        let limit = filter.effective_limit();
        let prefix = audit_prefix(&self.platform);
        let filter_subjects = match &filter.category {
            Some(c) => vec![
                format!("{prefix}.{WRITER_TOKEN}.*.{c}.>"),
                format!("{prefix}.{c}.>"),
            ],
            None => vec![format!("{prefix}.>")],
        };
        let deliver_policy = match (filter.after, filter.since) {
            (Some(after), _) => DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            (None, Some(since)) => {
                let nanos = since
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_nanos();
                match time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::try_from(nanos).unwrap_or(0),
                ) {
                    Ok(t) => DeliverPolicy::ByStartTime { start_time: t },
                    Err(_) => DeliverPolicy::All,
                }
            }
            (None, None) => DeliverPolicy::All,
        };
        let what = "audit query";
        let stream = self.stream().await?;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subjects,
                deliver_policy,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                description: Some("cluster audit query".to_owned()),
                ..pull::Config::default()
            })
            .await
            .map_err(|e| transient(what, false, describe(&e)))?;
        let consumer_name = consumer.cached_info().name.clone();
        let mut pending = consumer.cached_info().num_pending;
        let mut page = AuditPage::default();
        'outer: while pending > 0 {
            let batch = usize::try_from(pending.min(256)).unwrap_or(256);
            let mut messages = consumer
                .fetch()
                .max_messages(batch)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| transient(what, false, describe(&e)))?;
            let mut got = 0;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| transient(what, false, describe(&*e)))?;
                got += 1;
                pending = pending.saturating_sub(1);
                let Ok(info) = m.info() else { continue };
                let seq = info.stream_sequence;
                let record = match AuditRecord::decode(&m.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(seq, error = %e, "skipping malformed audit record");
                        continue;
                    }
                };
                if !filter.matches(&record) {
                    continue;
                }
                if page.entries.len() == limit {
                    page.truncated = true;
                    break 'outer;
                }
                page.next_after = Some(seq);
                let writer = writer_of(&self.platform, m.subject.as_str());
                page.entries.push(AuditEntry {
                    seq,
                    writer,
                    record,
                });
            }
            if got == 0 {
                break;
            }
        }
        let _ = stream.delete_consumer(&consumer_name).await;
        Ok(page)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_names_the_writer() {
        let p: PlatformName = "prod".parse().unwrap();
        let node: NodeId = "n2".parse().unwrap();
        let record = AuditRecord::new(
            "operator",
            "node.cordon",
            None,
            &node,
            serde_json::json!({}),
        );
        let subject = audit_subject(&p, &record);
        assert_eq!(subject, "cluster.prod.audit._by.n2.operator.node.cordon");
        assert_eq!(writer_of(&p, &subject).unwrap().as_str(), "n2");
        assert_eq!(
            writer_of(&p, "cluster.prod.audit.operator.node.cordon"),
            None
        );
    }
}
