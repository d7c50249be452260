//! Election timing and its validation.

use std::time::Duration;

use crate::error::{Error, Result};

/// Lease timing of an election.
///
/// Let `T` be [`ElectionTiming::lease_ttl`], `R` the renew interval and `ε` the safety margin.
/// The leader stops acting at `start of last successful renewal + T·(1−ε)` on its own clock; the
/// store expires the lease `T` after it *applied* that renewal, so the leader always stops first.
///
/// A leader survives a store outage of length `U` (e.g. a JetStream stream-leader failover,
/// 4–9 s on a crash) only if `R + U < T·(1−ε)`. The defaults (`T` = 15 s, `R` = 2 s, `ε` = 0.1)
/// survive `U` up to 11.5 s. The [`fast`](ElectionTiming::fast) profile detects crashes in 3 s
/// but demotes the leader when the store is unavailable for more than about 2 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElectionTiming {
    /// Lifetime of the lease in the store after each renewal.
    pub lease_ttl: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// Fraction of the TTL kept as safety margin for self-demotion (0 < ε < 0.5).
    pub safety_margin: f64,
    /// How long a node that stepped down waits before campaigning again.
    pub cooldown: Duration,
}

impl Default for ElectionTiming {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            renew_interval: Duration::from_secs(2),
            safety_margin: 0.1,
            cooldown: Duration::from_secs(5),
        }
    }
}

impl ElectionTiming {
    /// A profile for fast crash detection (TTL 3 s, renew 500 ms, ε 0.15, cooldown 1 s).
    pub fn fast() -> Self {
        Self {
            lease_ttl: Duration::from_secs(3),
            renew_interval: Duration::from_millis(500),
            safety_margin: 0.15,
            cooldown: Duration::from_secs(1),
        }
    }

    /// Checks the rules: TTL ≥ 1 s, `R ≤ T/3`, `0 < ε < 0.5`.
    pub fn validate(&self) -> Result<()> {
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(Error::InvalidArgument(format!(
                "lease TTL {:?} must be at least 1s",
                self.lease_ttl
            )));
        }
        if self.renew_interval.is_zero() || self.renew_interval * 3 > self.lease_ttl {
            return Err(Error::InvalidArgument(format!(
                "renew interval {:?} must be > 0 and at most a third of the lease TTL {:?}",
                self.renew_interval, self.lease_ttl
            )));
        }
        if !(self.safety_margin > 0.0 && self.safety_margin < 0.5) {
            return Err(Error::InvalidArgument(format!(
                "safety margin {} must be between 0 and 0.5 (exclusive)",
                self.safety_margin
            )));
        }
        Ok(())
    }

    /// How long after the start of a successful renewal the leader may act: `T·(1−ε)`.
    pub fn act_window(&self) -> Duration {
        self.lease_ttl.mul_f64(1.0 - self.safety_margin)
    }

    /// How long a candidate waits, after last seeing the lease change, before it treats the lease
    /// as abandoned even without an expiry event: `T·(1+ε)`.
    pub fn takeover_after(&self) -> Duration {
        self.lease_ttl.mul_f64(1.0 + self.safety_margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_fast_profile_are_valid() {
        ElectionTiming::default().validate().expect("default valid");
        ElectionTiming::fast().validate().expect("fast valid");
    }

    #[test]
    fn renew_above_a_third_of_ttl_is_rejected() {
        let t = ElectionTiming {
            lease_ttl: Duration::from_secs(9),
            renew_interval: Duration::from_millis(3001),
            ..ElectionTiming::default()
        };
        let err = t.validate().expect_err("must fail");
        assert!(err.to_string().contains("third"), "{err}");
    }

    #[test]
    fn bad_margin_is_rejected() {
        for eps in [0.0, 0.5, -1.0, f64::NAN] {
            let t = ElectionTiming {
                safety_margin: eps,
                ..ElectionTiming::default()
            };
            assert!(t.validate().is_err(), "{eps}");
        }
    }
}
