//! An in-memory [`AuditSink`]: one log per network, shared by every node, with the same
//! contract as the JetStream stream (storage order, dedup by id, paging with a truncation flag).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::Result;
use cluster_core::audit::{AuditEntry, AuditFilter, AuditPage, AuditRecord, AuditSink};

/// How long a record id suppresses duplicates (JetStream's default duplicate window).
const DEDUP_WINDOW: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Inner {
    entries: VecDeque<AuditEntry>,
    next_seq: u64,
    ids: HashMap<String, tokio::time::Instant>,
}

/// An in-memory audit log (see the module documentation).
#[derive(Default)]
pub struct MemoryAuditLog {
    inner: Mutex<Inner>,
    /// Records kept at most (oldest dropped first); 0 = unlimited.
    max_records: usize,
}

impl std::fmt::Debug for MemoryAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAuditLog").finish_non_exhaustive()
    }
}

impl MemoryAuditLog {
    /// An unbounded log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log keeping at most `max_records` records.
    pub fn bounded(max_records: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_records,
        }
    }

    /// Every stored record, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.lock()
            .entries
            .iter()
            .map(|e| e.record.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl AuditSink for MemoryAuditLog {
    async fn append(&self, record: &AuditRecord) -> Result<()> {
        record.validate()?;
        let now = tokio::time::Instant::now();
        let mut inner = self.lock();
        inner
            .ids
            .retain(|_, at| now.duration_since(*at) < DEDUP_WINDOW);
        if let Some(id) = &record.id {
            if inner.ids.contains_key(id) {
                return Ok(());
            }
            inner.ids.insert(id.clone(), now);
        }
        inner.next_seq += 1;
        let seq = inner.next_seq;
        inner.entries.push_back(AuditEntry {
            writer: None,
            seq,
            record: record.clone(),
        });
        if self.max_records > 0 && inner.entries.len() > self.max_records {
            inner.entries.pop_front();
        }
        Ok(())
    }

    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage> {
        let limit = filter.effective_limit();
        let inner = self.lock();
        let mut page = AuditPage::default();
        for e in inner
            .entries
            .iter()
            .filter(|e| filter.after.is_none_or(|a| e.seq > a))
            .filter(|e| filter.matches(&e.record))
        {
            if page.entries.len() == limit {
                page.truncated = true;
                break;
            }
            page.next_after = Some(e.seq);
            page.entries.push(e.clone());
        }
        Ok(page)
    }
}
