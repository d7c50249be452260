//! Random jitter of retries and timers, from a per-thread generator that a deterministic
//! simulation can seed ([`seed_thread_jitter`]); otherwise seeded randomly per thread.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u128() as u64);
}

/// Makes the jitter drawn on the calling thread a deterministic function of `seed` (for a
/// simulation running every node on one current-thread runtime, so that one seed replays the
/// same run). Other threads keep their own generators.
pub fn seed_thread_jitter(seed: u64) {
    STATE.with(|s| s.set(seed));
}

/// A uniform fraction in `[0, 1)` (SplitMix64 on the thread's state).
pub(crate) fn fraction() -> f64 {
    let x = STATE.with(|s| {
        let v = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(v);
        v
    });
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_fractions() {
        seed_thread_jitter(42);
        let a: Vec<f64> = (0..20).map(|_| fraction()).collect();
        seed_thread_jitter(42);
        let b: Vec<f64> = (0..20).map(|_| fraction()).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
