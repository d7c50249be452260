//! An in-memory [`ReplicatedLog`] with JetStream stream semantics (compare-and-append, msg-id
//! dedup, live reads, purge), for dev mode, tests and benchmarks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::stream::{
    AppendAck, LogEntry, LogState, LogStream, MSG_ID_HEADER, ReplicatedLog,
};
use cluster_core::{Error, Headers, Result, Revision};
use tokio::sync::watch;

use crate::lock::lock;

#[derive(Debug)]
struct LogInner {
    entries: VecDeque<LogEntry>,
    first_seq: u64,
    last_seq: u64,
    dedup: HashMap<String, u64>,
}

/// An in-memory replicated log. Clones share the log.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    inner: Arc<Mutex<LogInner>>,
    tail: Arc<watch::Sender<u64>>,
    available: Arc<AtomicBool>,
    max_payload: usize,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    /// An empty log accepting payloads up to 1 MiB (the NATS default).
    pub fn new() -> Self {
        Self::with_max_payload(1024 * 1024)
    }

    /// An empty log with a payload limit.
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogInner {
                entries: VecDeque::new(),
                first_seq: 1,
                last_seq: 0,
                dedup: HashMap::new(),
            })),
            tail: Arc::new(watch::channel(0).0),
            available: Arc::new(AtomicBool::new(true)),
            max_payload,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        lock(&self.inner)
    }

    /// Fault injection: makes every call fail with `Unavailable` while `false`.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Fault injection: rewrites the stored payload of entry `seq` (e.g. to corrupt it).
    pub fn tamper(&self, seq: u64, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut g = self.lock();
        let first = g.first_seq;
        let Some(e) = seq
            .checked_sub(first)
            .and_then(|i| g.entries.get_mut(i as usize))
        else {
            return false;
        };
        let mut v = e.payload.to_vec();
        f(&mut v);
        e.payload = Bytes::from(v);
        true
    }

    /// First and last sequence, synchronously.
    pub fn state_now(&self) -> LogState {
        let g = self.lock();
        LogState {
            first_seq: g.first_seq,
            last_seq: g.last_seq,
        }
    }

    fn check(&self) -> Result<()> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Unavailable("memory log marked unavailable".into()))
        }
    }

    fn entry_at(&self, seq: u64) -> Option<LogEntry> {
        let g = self.lock();
        let i = seq.max(g.first_seq) - g.first_seq;
        g.entries.get(i as usize).cloned()
    }
}

#[async_trait]
impl ReplicatedLog for MemoryLog {
    async fn append(
        &self,
        headers: Headers,
        payload: Bytes,
        expected_last_seq: Option<u64>,
    ) -> Result<AppendAck> {
        self.check()?;
        if payload.len() + headers.encoded_len() > self.max_payload {
            return Err(Error::PayloadTooLarge {
                size: payload.len() + headers.encoded_len(),
                max: self.max_payload,
            });
        }
        let seq = {
            let mut g = self.lock();
            let msg_id = headers.get(MSG_ID_HEADER).map(str::to_owned);
            if let Some(seq) = msg_id.as_ref().and_then(|id| g.dedup.get(id)) {
                return Ok(AppendAck {
                    seq: *seq,
                    duplicate: true,
                });
            }
            if let Some(expected) = expected_last_seq
                && expected != g.last_seq
            {
                return Err(Error::Conflict {
                    key: "log".into(),
                    expected: Some(Revision(expected)),
                    current: Some(Revision(g.last_seq)),
                });
            }
            g.last_seq += 1;
            let seq = g.last_seq;
            if let Some(id) = msg_id {
                g.dedup.insert(id, seq);
            }
            g.entries.push_back(LogEntry {
                seq,
                headers,
                payload,
            });
            seq
        };
        self.tail.send_replace(seq);
        Ok(AppendAck {
            seq,
            duplicate: false,
        })
    }

    async fn read_from(&self, seq: u64) -> Result<LogStream> {
        self.check()?;
        let log = self.clone();
        let rx = self.tail.subscribe();
        let s = futures::stream::unfold((log, rx, seq.max(1)), |(log, mut rx, next)| async move {
            loop {
                rx.borrow_and_update();
                if let Some(e) = log.entry_at(next) {
                    let n = e.seq + 1;
                    return Some((Ok(e), (log, rx, n)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        Ok(LogStream::new(Box::pin(s)))
    }

    async fn get(&self, seq: u64) -> Result<Option<LogEntry>> {
        self.check()?;
        Ok(self.entry_at(seq).filter(|e| e.seq == seq))
    }

    async fn state(&self) -> Result<LogState> {
        self.check()?;
        let g = self.lock();
        Ok(LogState {
            first_seq: g.first_seq,
            last_seq: g.last_seq,
        })
    }

    async fn purge_below(&self, seq: u64) -> Result<u64> {
        self.check()?;
        let mut g = self.lock();
        let mut n = 0;
        while g.entries.front().is_some_and(|e| e.seq < seq) {
            g.entries.pop_front();
            n += 1;
        }
        let new_first = seq.min(g.last_seq + 1);
        g.first_seq = g.first_seq.max(new_first);
        Ok(n)
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn h(id: &str) -> Headers {
        Headers::new().with(MSG_ID_HEADER, id)
    }

    #[tokio::test]
    async fn compare_and_append_dedup_read_purge() {
        let log = MemoryLog::new();
        assert_eq!(
            log.append(h("a"), Bytes::from_static(b"1"), Some(0))
                .await
                .unwrap()
                .seq,
            1
        );
        let dup = log
            .append(h("a"), Bytes::from_static(b"1"), Some(7))
            .await
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.seq, 1);
        let err = log.append(h("b"), Bytes::new(), Some(0)).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        log.append(h("b"), Bytes::new(), Some(1)).await.unwrap();
        log.append(Headers::new(), Bytes::new(), None)
            .await
            .unwrap();
        let mut s = log.read_from(2).await.unwrap();
        assert_eq!(s.next().await.unwrap().unwrap().seq, 2);
        assert_eq!(s.next().await.unwrap().unwrap().seq, 3);
        log.append(Headers::new(), Bytes::new(), None)
            .await
            .unwrap();
        assert_eq!(
            s.next().await.unwrap().unwrap().seq,
            4,
            "follows live appends"
        );
        assert_eq!(log.purge_below(3).await.unwrap(), 2);
        assert_eq!(
            log.state().await.unwrap(),
            LogState {
                first_seq: 3,
                last_seq: 4
            }
        );
        let mut s = log.read_from(1).await.unwrap();
        assert_eq!(
            s.next().await.unwrap().unwrap().seq,
            3,
            "trimmed entries skipped"
        );
        assert!(log.get(2).await.unwrap().is_none());
    }
}
