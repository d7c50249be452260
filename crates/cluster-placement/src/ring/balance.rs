//! Partition → node: bounded-load rendezvous hashing with stickiness.
//!
//! Given the sorted member set, P and optionally the current map:
//! 1. **Caps.** `base = ⌊P/N⌋`, `extra = P mod N`. The `extra` members that currently own the
//!    most partitions (ties: higher node hash, then node id) may own `base + 1`; the others own
//!    `base`. The caps sum to P, so every member ends with exactly its cap.
//! 2. **Keep.** Each member keeps its current partitions up to its cap, preferring those it
//!    scores highest (rendezvous score).
//! 3. **Fill.** Every other partition (new, orphaned by a leaver, or released), in a fixed
//!    order, goes to the highest-scoring member that is below its cap.
//!
//! Without a current map this is plain bounded-load rendezvous (ε = 0). With one, a join moves
//! exactly the new member's share (⌊P/(N+1)⌋ when starting balanced) and a leave moves exactly
//! the leaver's partitions.

use cluster_core::NodeId;

use super::hash::{fill_order, hrw_score, node_hash};

/// Computes the partition map for `members` (any order; duplicates ignored).
///
/// `current` is used for stickiness only when it has exactly `partitions` entries. Returns an
/// empty vector when there are no members.
pub fn assign_partitions(
    members: &[NodeId],
    partitions: u32,
    current: Option<&[NodeId]>,
) -> Vec<NodeId> {
    let mut members: Vec<&NodeId> = members.iter().collect();
    members.sort();
    members.dedup();
    let n = members.len();
    if n == 0 || partitions == 0 {
        return Vec::new();
    }
    let p_total = partitions as usize;
    let hashes: Vec<u64> = members.iter().map(|m| node_hash(m)).collect();
    let index_of = |node: &NodeId| members.binary_search(&node).ok();

    // Current ownership per member.
    let current = current.filter(|c| c.len() == p_total);
    let mut owned: Vec<Vec<u32>> = vec![Vec::new(); n];
    if let Some(cur) = current {
        for (p, owner) in cur.iter().enumerate() {
            if let Some(i) = index_of(owner) {
                owned[i].push(p as u32);
            }
        }
    }

    // 1. Caps.
    let base = p_total / n;
    let extra = p_total % n;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        owned[b]
            .len()
            .cmp(&owned[a].len())
            .then(hashes[b].cmp(&hashes[a]))
            .then(members[a].cmp(members[b]))
    });
    let mut cap = vec![base; n];
    for &i in order.iter().take(extra) {
        cap[i] += 1;
    }

    // 2. Keep.
    let mut owner: Vec<Option<usize>> = vec![None; p_total];
    let mut count = vec![0usize; n];
    for i in 0..n {
        let mut mine = std::mem::take(&mut owned[i]);
        mine.sort_by_key(|&p| std::cmp::Reverse((hrw_score(hashes[i], p), p)));
        for &p in mine.iter().take(cap[i]) {
            owner[p as usize] = Some(i);
            count[i] += 1;
        }
    }

    // 3. Fill.
    let mut orphans: Vec<u32> = (0..partitions)
        .filter(|&p| owner[p as usize].is_none())
        .collect();
    orphans.sort_by_key(|&p| (fill_order(p), p));
    for p in orphans {
        let best = (0..n)
            .filter(|&i| count[i] < cap[i])
            .max_by_key(|&i| (hrw_score(hashes[i], p), std::cmp::Reverse(members[i])));
        // The caps sum to P, so a member below its cap always exists for an orphan.
        if let Some(i) = best {
            owner[p as usize] = Some(i);
            count[i] += 1;
        }
    }
    owner
        .into_iter()
        .map(|o| members[o.unwrap_or(0)].clone())
        .collect()
}

/// Number of partitions whose owner differs between two maps of equal length.
pub fn moved(before: &[NodeId], after: &[NodeId]) -> usize {
    before.iter().zip(after).filter(|(a, b)| a != b).count()
}
