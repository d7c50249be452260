//! The fault schedule: expanded from the seed before the run starts, so it never depends on
//! what the platforms do.

use std::fmt;
use std::time::Duration;

use crate::options::SimOptions;
use crate::rng::SplitMix64;

/// What an attacker writes into the election bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Bytes that are not a record, on the app's lease key.
    Corrupt,
    /// A well-formed lease record naming a real node, with the given epoch hint.
    Forge {
        /// Index of the named node.
        node: usize,
        /// The epoch hint (0 = "a new term").
        epoch: u64,
    },
    /// The app's lease key deleted.
    Delete,
    /// The app's current lease record written again unchanged (a replay: same bytes, new
    /// revision).
    Replay,
    /// The epoch floor overwritten with a much higher value.
    RaiseFloor,
    /// The epoch floor deleted.
    DeleteFloor,
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A node is cut off (messages and KV, both directions) for a while.
    Partition {
        /// The node.
        node: String,
        /// How long.
        span: Duration,
    },
    /// A node's process dies (no cleanup) and is started again after a while.
    Crash {
        /// The node.
        node: String,
        /// How long it stays down.
        span: Duration,
    },
    /// Every message and KV operation of a node is delayed for a while.
    KvDelay {
        /// The node.
        node: String,
        /// The added latency.
        delay: Duration,
        /// How long.
        span: Duration,
    },
    /// A raw write to the election bucket.
    Tamper {
        /// The app whose lease is targeted (also for floor faults, for the trace).
        app: String,
        /// What is written.
        what: Tamper,
    },
}

impl Fault {
    /// The node the fault occupies while it lasts, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Fault::Partition { node, .. }
            | Fault::Crash { node, .. }
            | Fault::KvDelay { node, .. } => Some(node),
            Fault::Tamper { .. } => None,
        }
    }

    /// How long the fault lasts (0 for instantaneous ones).
    pub fn span(&self) -> Duration {
        match self {
            Fault::Partition { span, .. }
            | Fault::Crash { span, .. }
            | Fault::KvDelay { span, .. } => *span,
            Fault::Tamper { .. } => Duration::ZERO,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { node, span } => write!(f, "partition {node} for {span:?}"),
            Fault::Crash { node, span } => write!(f, "crash {node} for {span:?}"),
            Fault::KvDelay { node, delay, span } => {
                write!(f, "delay {node} by {delay:?} for {span:?}")
            }
            Fault::Tamper { app, what } => write!(f, "tamper {app}: {what:?}"),
        }
    }
}

/// A fault and when it starts (offset from the start of the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Start offset.
    pub at: Duration,
    /// The fault.
    pub fault: Fault,
}

/// The schedule of `options`: faults start at exponential-ish gaps; a node carries one fault
/// at a time and at most a minority of nodes is faulted at once; everything ends before
/// `options.duration`.
pub fn plan(options: &SimOptions) -> Vec<Planned> {
    let mut rng = SplitMix64::new(options.seed).fork("faults");
    let nodes = options.node_names();
    let apps = options.app_names();
    let minority = (nodes.len() - 1) / 2;
    let mut busy_until = vec![Duration::ZERO; nodes.len()];
    let mut out = Vec::new();
    let mean = options.mean_fault_gap.as_millis() as u64;
    let mut at = Duration::from_secs(5);
    let total: u64 = options.weights.iter().sum();
    loop {
        at += Duration::from_millis(rng.range(mean / 4, mean * 7 / 4));
        if at >= options.duration {
            return out;
        }
        let mut pick = rng.range(0, total - 1);
        let mut kind = 0;
        while pick >= options.weights[kind] {
            pick -= options.weights[kind];
            kind += 1;
        }
        let span = Duration::from_millis(rng.range(500, 6_000));
        if kind == 3 {
            let app = apps[rng.index(apps.len())].clone();
            let what = match rng.range(0, 6) {
                0 => Tamper::Corrupt,
                1 => Tamper::Forge {
                    node: rng.index(nodes.len()),
                    epoch: 0,
                },
                2 => Tamper::Forge {
                    node: rng.index(nodes.len()),
                    epoch: rng.range(1, 1 << 40),
                },
                3 => Tamper::Delete,
                4 => Tamper::RaiseFloor,
                5 => Tamper::DeleteFloor,
                _ => Tamper::Replay,
            };
            out.push(Planned {
                at,
                fault: Fault::Tamper { app, what },
            });
            continue;
        }
        let faulted = busy_until.iter().filter(|b| **b > at).count();
        let i = rng.index(nodes.len());
        if faulted >= minority.max(1) || busy_until[i] > at || at + span >= options.duration {
            continue;
        }
        // A restarted node needs time to rejoin before its next fault.
        busy_until[i] = at + span + Duration::from_secs(5);
        let node = nodes[i].clone();
        let fault = match kind {
            0 => Fault::Partition { node, span },
            1 => Fault::Crash { node, span },
            _ => Fault::KvDelay {
                node,
                delay: Duration::from_millis(rng.range(50, 1_500)),
                span,
            },
        };
        out.push(Planned { at, fault });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_and_keep_a_majority_healthy() {
        for seed in 0..50 {
            let o = SimOptions::from_seed(seed, Duration::from_secs(300));
            let p = plan(&o);
            assert_eq!(p, plan(&o));
            assert!(!p.is_empty(), "seed {seed} has no faults");
            let minority = ((o.nodes - 1) / 2).max(1);
            for f in &p {
                let overlapping = p
                    .iter()
                    .filter(|g| g.fault.node().is_some())
                    .filter(|g| g.at <= f.at && f.at < g.at + g.fault.span())
                    .count();
                assert!(
                    overlapping <= minority,
                    "seed {seed}: {overlapping} at {:?}",
                    f.at
                );
                assert!(f.at + f.fault.span() < o.duration);
            }
        }
    }
}
