//! The run's trace: every event in order, on simulated time, and its stable hash.

use std::time::Duration;

/// An ordered log of events with simulated timestamps; its hash identifies a run.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    lines: Vec<String>,
    hash: u64,
}

impl Trace {
    /// Records `event` at simulated offset `at`.
    pub fn record(&mut self, at: Duration, event: impl Into<String>) {
        let line = format!("{:>9.3}s {}", at.as_secs_f64(), event.into());
        // FNV-1a over the lines, with a separator (std's hasher is randomly seeded).
        self.hash = line
            .bytes()
            .chain(std::iter::once(b'\n'))
            .fold(self.hash_or_basis(), |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        self.lines.push(line);
    }

    fn hash_or_basis(&self) -> u64 {
        if self.lines.is_empty() {
            0xcbf2_9ce4_8422_2325
        } else {
            self.hash
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash_or_basis()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Every event, in order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The last `n` events up to and including the one at index `until`.
    pub fn excerpt(&self, until: usize, n: usize) -> &[String] {
        let end = (until + 1).min(self.lines.len());
        &self.lines[end.saturating_sub(n)..end]
    }
}
