//! The platform's audit emitter (one writer task per node).
//!
//! The queue to the writer is bounded ([`AUDIT_CAPACITY`]): while the sink is slower than the
//! records arrive, new records are dropped and counted
//! (`gc_dropped_records_total{queue="audit"}`); every record is still logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::bounded::{AUDIT_CAPACITY, Drops};
use crate::stats::Stats;
use crate::sync::locked;
use cluster_core::audit::{AuditRecord, AuditSink};
use cluster_core::id::AppName;

/// How long a graceful shutdown waits for pending audit records.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Op {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// Emits audit records to the sink in order, without blocking the caller.
pub(crate) struct AuditHub {
    sink: Option<Arc<dyn AuditSink>>,
    tx: mpsc::Sender<Op>,
    rx: Mutex<Option<mpsc::Receiver<Op>>>,
    drops: Drops,
}

impl AuditHub {
    pub(crate) fn new(sink: Option<Arc<dyn AuditSink>>) -> Self {
        let (tx, rx) = mpsc::channel(AUDIT_CAPACITY);
        Self {
            sink,
            tx,
            rx: Mutex::new(Some(rx)),
            drops: Drops::new("audit"),
        }
    }

    /// Logs the record (target `cluster::audit`) and queues it for the sink; a full queue
    /// drops it (counted in `stats`).
    pub(crate) fn emit(&self, record: AuditRecord, stats: &Stats) {
        info!(target: "cluster::audit", event = %record.event(), app = ?record.app.as_ref().map(AppName::as_str),
            data = %record.data, "audit");
        if self.sink.is_some()
            && let Err(mpsc::error::TrySendError::Full(_)) =
                self.tx.try_send(Op::Record(Box::new(record)))
        {
            self.drops.dropped(Some(stats), "audit record");
        }
    }

    /// Starts the writer (once, when the platform starts).
    pub(crate) fn spawn_writer(&self) -> Option<AbortHandle> {
        let sink = self.sink.clone()?;
        let mut rx = locked(&self.rx).take()?;
        let task = tokio::spawn(async move {
            while let Some(op) = rx.recv().await {
                match op {
                    Op::Record(record) => {
                        if let Err(e) = sink.append(&record).await {
                            crate::metrics::audit_failure(&record.category);
                            warn!(event = %record.event(), error = %e, "audit record not stored");
                        }
                    }
                    Op::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Some(task.abort_handle())
    }

    /// Waits (bounded) until every record queued so far was written.
    pub(crate) async fn flush(&self) {
        if self.sink.is_none() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
            if self.tx.send(Op::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
        .await;
    }

    pub(crate) fn sink(&self) -> Option<Arc<dyn AuditSink>> {
        self.sink.clone()
    }
}
