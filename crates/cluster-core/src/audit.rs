//! Audit: an append-only, queryable record of what the platform and its operators did
//! (placement, elections, membership, operator actions).
//!
//! The runtime emits [`AuditRecord`]s to the platform's [`AuditSink`] (a JetStream stream in
//! `cluster-nats`, an in-memory log in `cluster-memory`) through one writer task, so emission
//! never blocks the runtime and records of one node keep their order. Readers use
//! `Platform::audit` (`cluster-runtime`) or `cluster audit`. Wire format:
//! `docs/protocol/audit.md`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{AppName, NodeId};

/// Version of the audit record format (`v`).
pub const AUDIT_RECORD_VERSION: u32 = 1;

/// Largest page a query returns; larger limits are clamped (and reported as truncated).
pub const MAX_QUERY_LIMIT: usize = 10_000;

/// Default page size of a query.
pub const DEFAULT_QUERY_LIMIT: usize = 100;

/// Audit categories (the first token after `audit` in the subject).
pub mod category {
    /// Placement: migrations, constraints, rebalancing.
    pub const PLACEMENT: &str = "placement";
    /// Nodes: labels, cordon, drain.
    pub const NODE: &str = "node";
    /// Leader elections.
    pub const ELECTION: &str = "election";
    /// Membership: join, leave.
    pub const MEMBER: &str = "member";
    /// Operator actions (admin requests, CLI).
    pub const OPERATOR: &str = "operator";
    /// SQLite WAL replication: promotion, divergence, restores (`cluster-wal`).
    pub const WAL: &str = "wal";
}

/// One audit record (JSON on the wire, see `docs/protocol/audit.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Format version ([`AUDIT_RECORD_VERSION`]).
    pub v: u32,
    /// Wall-clock time of the event, RFC 3339 UTC (display only, never compared across nodes).
    pub ts: String,
    /// The same instant in milliseconds since the Unix epoch (for filtering by `since`).
    pub ts_ms: u64,
    /// Category: one token, `[a-z0-9-]`.
    pub category: String,
    /// Action within the category: `[a-z0-9-]` tokens joined by `.` (e.g. `migration.started`).
    pub action: String,
    /// The app concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppName>,
    /// The node that emitted the record.
    pub node: NodeId,
    /// Event details (free-form JSON object).
    #[serde(default)]
    pub data: serde_json::Value,
    /// Deduplication id: records with the same id within the sink's dedup window are stored
    /// once (several nodes may report the same fact, e.g. an expired member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl AuditRecord {
    /// A record stamped now (wall clock) on `node`.
    pub fn new(
        category: &str,
        action: &str,
        app: Option<&AppName>,
        node: &NodeId,
        data: serde_json::Value,
    ) -> Self {
        Self::at(SystemTime::now(), category, action, app, node, data)
    }

    /// A record stamped at `time`.
    pub fn at(
        time: SystemTime,
        category: &str,
        action: &str,
        app: Option<&AppName>,
        node: &NodeId,
        data: serde_json::Value,
    ) -> Self {
        let ms = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let ts_ms = u64::try_from(ms).unwrap_or(u64::MAX);
        Self {
            v: AUDIT_RECORD_VERSION,
            ts: rfc3339(ts_ms),
            ts_ms,
            category: category.to_owned(),
            action: action.to_owned(),
            app: app.cloned(),
            node: node.clone(),
            data,
            id: None,
        }
    }

    /// Sets the deduplication id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// `category.action`, e.g. `placement.migration.started`.
    pub fn event(&self) -> String {
        format!("{}.{}", self.category, self.action)
    }

    /// Checks the version and the category/action tokens.
    pub fn validate(&self) -> Result<()> {
        if self.v != AUDIT_RECORD_VERSION {
            return Err(Error::Malformed(format!(
                "audit record version {} (this node reads {AUDIT_RECORD_VERSION})",
                self.v
            )));
        }
        if !is_token(&self.category) {
            return Err(Error::InvalidArgument(format!(
                "audit category {:?} must be one token of [a-z0-9-]",
                self.category
            )));
        }
        if self.action.is_empty() || !self.action.split('.').all(is_token) {
            return Err(Error::InvalidArgument(format!(
                "audit action {:?} must be [a-z0-9-] tokens joined by '.'",
                self.action
            )));
        }
        Ok(())
    }

    /// Encodes as JSON.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Internal(format!("audit record: {e}")))
    }

    /// Decodes and validates JSON.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let r: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("audit record: {e}")))?;
        r.validate()?;
        Ok(r)
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Which records a query returns. Empty fields match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Only records about this app.
    pub app: Option<AppName>,
    /// Only records at or after this time (by the record's `ts_ms`).
    pub since: Option<SystemTime>,
    /// Only records stored after this sequence (paging: the previous page's `next_after`).
    pub after: Option<u64>,
    /// At most this many records (clamped to [`MAX_QUERY_LIMIT`]).
    pub limit: usize,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            category: None,
            app: None,
            since: None,
            after: None,
            limit: DEFAULT_QUERY_LIMIT,
        }
    }
}

impl AuditFilter {
    /// Whether `record` matches (ignores `after` and `limit`).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.category.as_ref().is_none_or(|c| *c == record.category)
            && self
                .app
                .as_ref()
                .is_none_or(|a| record.app.as_ref() == Some(a))
            && self.since.is_none_or(|s| {
                let ms = s
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_millis();
                u128::from(record.ts_ms) >= ms
            })
    }

    /// The effective page size.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_QUERY_LIMIT)
    }
}

/// A stored record with its sequence in the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the sink (strictly increasing in storage order).
    pub seq: u64,
    /// The node that wrote the record, as vouched for by the sink (on NATS: the subject only
    /// that node may publish to, `docs/SECURITY.md`); `None` when the sink cannot tell (records
    /// of older nodes, in-memory sinks). The record's own `node` field is what the writer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<NodeId>,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// One page of query results, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Matching records, in storage order.
    pub entries: Vec<AuditEntry>,
    /// True when more matching records exist after this page (ask again with
    /// `after = next_after`).
    pub truncated: bool,
    /// The sequence to pass as `after` for the next page.
    pub next_after: Option<u64>,
}

/// Where audit records are stored.
///
/// # To ensure correctness
///
/// * `append` returns only after the record is stored (or failed); a stored record is returned
///   by every later `query` that matches it, from any node, until retention removes it.
/// * Records with the same `id` appended within the sink's dedup window are stored once.
/// * `query` returns matching records in storage order, never more than the effective limit,
///   and sets `truncated` whenever at least one more matching record exists after the page —
///   never a silent cut.
/// * Malformed stored records are skipped and counted, never returned and never a panic.
/// * A record that fails [`AuditRecord::validate`] is refused with an error and not stored.
///
/// Executable form: `cluster_testkit::conformance::audit`.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Stores one record.
    async fn append(&self, record: &AuditRecord) -> Result<()>;

    /// Reads matching records.
    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage>;
}

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_705_314_600_123), "2024-01-15T10:30:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn records_round_trip_and_validate() {
        let node: NodeId = "n1".parse().unwrap();
        let app: AppName = "convex".parse().unwrap();
        let r = AuditRecord::new(
            "placement",
            "migration.started",
            Some(&app),
            &node,
            serde_json::json!({"from_node": "n1"}),
        );
        assert_eq!(AuditRecord::decode(&r.encode().unwrap()).unwrap(), r);
        assert_eq!(r.event(), "placement.migration.started");
        let mut bad = r.clone();
        bad.action = "migration.>".into();
        assert!(bad.validate().is_err());
        let mut old = r;
        old.v = 9;
        assert!(matches!(
            AuditRecord::decode(&old.encode().unwrap()),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn filters_match() {
        let node: NodeId = "n1".parse().unwrap();
        let app: AppName = "a".parse().unwrap();
        let r = AuditRecord::at(
            UNIX_EPOCH + Duration::from_secs(100),
            "election",
            "acquired",
            Some(&app),
            &node,
            serde_json::Value::Null,
        );
        let f = AuditFilter {
            category: Some("election".into()),
            app: Some(app),
            since: Some(UNIX_EPOCH + Duration::from_secs(100)),
            ..AuditFilter::default()
        };
        assert!(f.matches(&r));
        let later = AuditFilter {
            since: Some(UNIX_EPOCH + Duration::from_secs(101)),
            ..f.clone()
        };
        assert!(!later.matches(&r));
        let other = AuditFilter {
            category: Some("node".into()),
            ..f
        };
        assert!(!other.matches(&r));
    }
}
