//! Ranking eligible nodes with the app's strategy.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::model::AppSpec;
use crate::strategy::{Candidate, StrategyKind};

/// Picks up to `k` more candidates (positions into `cands`), best first, given the positions
/// already `chosen` (which are never returned again).
pub(crate) fn pick(
    spec: &AppSpec,
    cands: &[Candidate<'_>],
    chosen: &[usize],
    k: usize,
) -> Vec<usize> {
    let mut taken = vec![false; cands.len()];
    for &c in chosen {
        taken[c] = true;
    }
    match &spec.strategy {
        StrategyKind::SpreadEvenly => static_order(cands, &taken, k, |c| {
            (Reverse(c.preference), c.instances, util(c), 0u32, 0u64)
        }),
        StrategyKind::BinPack => static_order(cands, &taken, k, |c| {
            (
                Reverse(c.preference),
                0u32,
                Reverse(util(c)),
                Reverse(c.instances),
                0u64,
            )
        }),
        StrategyKind::ZoneAware { key } => zone_order(cands, &mut taken, k, key),
        StrategyKind::Custom(s) => {
            let mut out = Vec::new();
            for i in s.rank(spec, cands) {
                if out.len() >= k {
                    break;
                }
                if i < cands.len() && !taken[i] {
                    taken[i] = true;
                    out.push(i);
                }
            }
            out
        }
    }
}

fn util(c: &Candidate<'_>) -> u64 {
    c.used.utilisation_permille(&c.node.capacity)
}

/// Sorts by a key that does not depend on earlier picks; the node id breaks ties.
fn static_order<K: Ord>(
    cands: &[Candidate<'_>],
    taken: &[bool],
    k: usize,
    key: impl Fn(&Candidate<'_>) -> K,
) -> Vec<usize> {
    let mut pos: Vec<usize> = (0..cands.len()).filter(|&i| !taken[i]).collect();
    pos.sort_by(|&a, &b| {
        key(&cands[a])
            .cmp(&key(&cands[b]))
            .then_with(|| cands[a].node.id.cmp(&cands[b].node.id))
    });
    pos.truncate(k);
    pos
}

/// Greedy: each pick minimises (preference, instances of this app in the node's zone,
/// instances on the node, utilisation, id); zone counts include `taken` nodes.
fn zone_order(cands: &[Candidate<'_>], taken: &mut [bool], k: usize, key: &str) -> Vec<usize> {
    let zones: Vec<&str> = cands
        .iter()
        .map(|c| c.node.labels.get(key).unwrap_or(""))
        .collect();
    let mut in_zone: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, z) in zones.iter().enumerate() {
        if taken[i] {
            *in_zone.entry(z).or_default() += 1;
        }
    }
    let utils: Vec<u64> = cands.iter().map(util).collect();
    let mut out = Vec::new();
    while out.len() < k {
        let key_of = |i: usize| {
            (
                Reverse(cands[i].preference),
                in_zone.get(zones[i]).copied().unwrap_or(0),
                cands[i].instances,
                utils[i],
                &cands[i].node.id,
            )
        };
        let best = (0..cands.len())
            .filter(|&i| !taken[i])
            .min_by_key(|&i| key_of(i));
        let Some(b) = best else { break };
        taken[b] = true;
        *in_zone.entry(zones[b]).or_default() += 1;
        out.push(b);
    }
    out
}

/// ZoneAware repair of a sticky placement: if two `chosen` candidates share a zone while an
/// unchosen candidate (eligible, with room) sits in a zone none of them covers, returns
/// `(slot, candidate)`: replace `chosen[slot]` (the last-chosen instance of a shared zone) with
/// that candidate (best by preference, instances, utilisation, id; never one the app prefers
/// less than the replaced node). Each repair raises the number of covered zones by one, so
/// repeating it until `None` ends.
pub(crate) fn zone_repair(
    cands: &[Candidate<'_>],
    chosen: &[usize],
    key: &str,
) -> Option<(usize, usize)> {
    let zone = |i: usize| cands[i].node.labels.get(key).unwrap_or("");
    let mut in_zone: BTreeMap<&str, u32> = BTreeMap::new();
    for &c in chosen {
        *in_zone.entry(zone(c)).or_default() += 1;
    }
    let slot = (0..chosen.len())
        .rev()
        .find(|&s| in_zone.get(zone(chosen[s])).is_some_and(|&n| n > 1))?;
    let replaced = &cands[chosen[slot]];
    let utils: Vec<u64> = cands.iter().map(util).collect();
    let target = (0..cands.len())
        .filter(|i| !chosen.contains(i) && !in_zone.contains_key(zone(*i)))
        .filter(|&i| cands[i].preference >= replaced.preference)
        .min_by_key(|&i| {
            (
                Reverse(cands[i].preference),
                cands[i].instances,
                utils[i],
                &cands[i].node.id,
            )
        })?;
    Some((slot, target))
}
