//! Exponential backoff with jitter for the election's retry paths.

use std::time::Duration;

/// Doubles a delay from `base` up to `cap` on every failure; each delay handed out is jittered
/// to between half and all of the current step, so daemons retrying together spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            step: base,
        }
    }

    /// The delay before the next retry (and doubles the step for the one after).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        jittered(step)
    }

    /// Back to the base delay after a success.
    pub(crate) fn reset(&mut self) {
        self.step = self.base;
    }
}

/// A random duration between `d / 2` and `d`.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + crate::jitter::fraction() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        for d in &delays[4..] {
            assert!(
                *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
