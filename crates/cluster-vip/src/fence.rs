//! The fencing rule: a claim of an address with an epoch lower than the highest epoch this
//! process has seen for that address (in that network namespace) is refused.
//!
//! Epochs of one election strictly increase and are never reused, so a lower epoch can only
//! come from a deposed term (a delayed or replayed activation). The record is process-wide, so
//! it also fences between several `VipResource`s for the same address. It is keyed by network
//! namespace (its `SO_NETNS_COOKIE`) as well, so simulated hosts in one test process do not
//! fence each other.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use cluster_core::Epoch;

use crate::error::VipError;

type Key = (u64, Ipv4Addr);

static HIGHEST: Mutex<BTreeMap<Key, Epoch>> = Mutex::new(BTreeMap::new());

fn highest() -> std::sync::MutexGuard<'static, BTreeMap<Key, Epoch>> {
    HIGHEST.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a claim of `address` in namespace `netns` with `epoch`, or refuses it when a higher
/// epoch was already recorded. Equal epochs pass (activation is idempotent).
pub(crate) fn claim(netns: u64, address: Ipv4Addr, epoch: Epoch) -> Result<(), VipError> {
    let mut map = highest();
    let seen = map.entry((netns, address)).or_insert(epoch);
    if epoch < *seen {
        return Err(VipError::Fenced {
            address,
            presented: epoch,
            current: *seen,
        });
    }
    *seen = epoch;
    Ok(())
}

/// Fails with `Fenced` if a claim newer than `epoch` was recorded since.
pub(crate) fn still_current(netns: u64, address: Ipv4Addr, epoch: Epoch) -> Result<(), VipError> {
    match highest().get(&(netns, address)) {
        Some(seen) if *seen > epoch => Err(VipError::Fenced {
            address,
            presented: epoch,
            current: *seen,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lower_epochs_are_refused_per_namespace_and_address() {
        let a = Ipv4Addr::new(198, 51, 100, 201);
        let ns = u64::MAX - 7;
        claim(ns, a, Epoch(10)).unwrap();
        claim(ns, a, Epoch(10)).unwrap();
        let e = claim(ns, a, Epoch(9)).unwrap_err();
        assert_eq!(
            e,
            VipError::Fenced {
                address: a,
                presented: Epoch(9),
                current: Epoch(10)
            }
        );
        claim(ns - 1, a, Epoch(3)).unwrap();
        claim(ns, Ipv4Addr::new(198, 51, 100, 202), Epoch(3)).unwrap();
        still_current(ns, a, Epoch(10)).unwrap();
        claim(ns, a, Epoch(12)).unwrap();
        assert!(still_current(ns, a, Epoch(10)).is_err());
    }
}
