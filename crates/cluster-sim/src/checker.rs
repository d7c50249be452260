//! The invariants, checked on every sample of the leaders and every register write.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cluster_core::Epoch;

use crate::register::Write;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Simulated offset at which it was seen.
    pub at: Duration,
    /// Index of the trace event it follows (for the excerpt).
    pub trace_index: usize,
    /// What broke.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {:.3}s: {}", self.at.as_secs_f64(), self.what)
    }
}

/// Per-app state of the checker.
#[derive(Debug, Default)]
struct AppState {
    /// The leaders seen at the last sample: node → epoch.
    leaders: BTreeMap<String, Epoch>,
    /// The highest epoch of any term seen so far, and its holder.
    highest: Option<(Epoch, String)>,
    /// When an attacker last wrote this app's lease key.
    last_tamper: Option<Duration>,
}

/// The safety checker: at most one leader per app at any sampled instant (outside the window
/// an attacker's write to the lease key opens), epochs of new terms strictly increasing, no
/// stale or shared epoch accepted by a register.
#[derive(Debug)]
pub struct Checker {
    /// How long after a tampering with an app's lease key an overlap is outside the design's
    /// guarantee (the holder may not see the foreign write while cut off: up to one lease).
    tamper_window: Duration,
    apps: BTreeMap<String, AppState>,
    violations: Vec<Violation>,
    /// Samples in which two nodes led one app within a tamper window.
    excused_overlaps: u64,
    /// Terms seen (distinct (node, epoch) leaderships).
    terms: u64,
}

impl Checker {
    /// A checker for `apps`.
    pub fn new(apps: &[String], tamper_window: Duration) -> Self {
        Self {
            tamper_window,
            apps: apps
                .iter()
                .map(|a| (a.clone(), AppState::default()))
                .collect(),
            violations: Vec::new(),
            excused_overlaps: 0,
            terms: 0,
        }
    }

    fn app(&mut self, app: &str) -> &mut AppState {
        self.apps.entry(app.to_owned()).or_default()
    }

    /// An attacker wrote `app`'s lease key at `at`.
    pub fn tampered(&mut self, app: &str, at: Duration) {
        self.app(app).last_tamper = Some(at);
    }

    /// One sample of `app`: the nodes whose instance reports `is_leader()`, with their fencing
    /// tokens. Returns whether the set changed since the previous sample.
    pub fn sample(
        &mut self,
        at: Duration,
        trace_index: usize,
        app: &str,
        leaders: BTreeMap<String, Epoch>,
    ) -> bool {
        let window = self.tamper_window;
        let state = self.app(app);
        let mut found = Vec::new();
        let mut new_terms = 0;
        for (node, epoch) in &leaders {
            if state.leaders.get(node) == Some(epoch) {
                continue;
            }
            new_terms += 1;
            match &state.highest {
                Some((h, holder)) if *epoch <= *h => found.push(format!(
                    "{app}: new term of {node} with epoch {epoch} not above epoch {h} of {holder}"
                )),
                _ => state.highest = Some((*epoch, node.clone())),
            }
        }
        let mut excused = false;
        if leaders.len() > 1 {
            let in_window = state
                .last_tamper
                .is_some_and(|t| at.saturating_sub(t) <= window);
            if in_window {
                excused = true;
            } else {
                found.push(format!(
                    "{app}: {} leaders at once: {leaders:?}",
                    leaders.len()
                ));
            }
        }
        let changed = state.leaders != leaders;
        state.leaders = leaders;
        self.terms += new_terms;
        if excused {
            self.excused_overlaps += 1;
        }
        for what in found {
            self.violations.push(Violation {
                at,
                trace_index,
                what,
            });
        }
        changed
    }

    /// The register of `app` accepted `w`, after `last` (its previous accepted write).
    pub fn accepted(
        &mut self,
        at: Duration,
        trace_index: usize,
        app: &str,
        last: Option<&Write>,
        w: &Write,
    ) {
        let Some(last) = last else { return };
        let what = if w.epoch < last.epoch {
            format!(
                "{app}: stale write accepted: epoch {} from {} after epoch {} from {}",
                w.epoch, w.node, last.epoch, last.node
            )
        } else if w.epoch == last.epoch && w.node != last.node {
            format!(
                "{app}: epoch {} used by two writers: {} and {}",
                w.epoch, last.node, w.node
            )
        } else {
            return;
        };
        self.violations.push(Violation {
            at,
            trace_index,
            what,
        });
    }

    /// Records a violation found outside the checker (liveness, restart failures).
    pub fn violation(&mut self, at: Duration, trace_index: usize, what: String) {
        self.violations.push(Violation {
            at,
            trace_index,
            what,
        });
    }

    /// The number of apps with exactly one leader at the last sample.
    pub fn apps_with_one_leader(&self) -> usize {
        self.apps.values().filter(|s| s.leaders.len() == 1).count()
    }

    /// Every violation found.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Overlaps excused by a tampering window.
    pub fn excused_overlaps(&self) -> u64 {
        self.excused_overlaps
    }

    /// Terms seen.
    pub fn terms(&self) -> u64 {
        self.terms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaders(xs: &[(&str, u64)]) -> BTreeMap<String, Epoch> {
        xs.iter()
            .map(|(n, e)| ((*n).to_owned(), Epoch(*e)))
            .collect()
    }

    #[test]
    fn two_leaders_and_backward_epochs_are_violations() {
        let mut c = Checker::new(&["a".to_owned()], Duration::from_secs(3));
        let s = Duration::from_secs;
        assert!(c.sample(s(1), 0, "a", leaders(&[("n1", 5)])));
        assert!(!c.sample(s(2), 0, "a", leaders(&[("n1", 5)])));
        assert!(c.violations().is_empty());
        c.sample(s(3), 0, "a", leaders(&[("n1", 5), ("n2", 7)]));
        assert_eq!(c.violations().len(), 1, "{:?}", c.violations());
        c.sample(s(4), 0, "a", leaders(&[("n3", 6)]));
        assert_eq!(c.violations().len(), 2, "{:?}", c.violations());
        // Within a tamper window an overlap is counted, not a violation.
        c.tampered("a", s(5));
        c.sample(s(6), 0, "a", leaders(&[("n3", 6), ("n1", 9)]));
        assert_eq!(c.violations().len(), 2);
        assert_eq!(c.excused_overlaps(), 1);
        assert_eq!(c.terms(), 4);
    }

    #[test]
    fn stale_and_shared_epochs_in_the_register_are_violations() {
        let mut c = Checker::new(&["a".to_owned()], Duration::from_secs(3));
        let w = |e, n: &str| Write {
            epoch: Epoch(e),
            node: n.to_owned(),
            n: 1,
        };
        c.accepted(Duration::ZERO, 0, "a", Some(&w(5, "n1")), &w(5, "n1"));
        c.accepted(Duration::ZERO, 0, "a", Some(&w(5, "n1")), &w(6, "n2"));
        assert!(c.violations().is_empty());
        c.accepted(Duration::ZERO, 0, "a", Some(&w(6, "n2")), &w(5, "n1"));
        c.accepted(Duration::ZERO, 0, "a", Some(&w(6, "n2")), &w(6, "n1"));
        assert_eq!(c.violations().len(), 2, "{:?}", c.violations());
    }
}
