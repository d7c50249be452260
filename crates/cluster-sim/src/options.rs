//! The options one seed expands into, printed with every run.

use std::fmt;
use std::time::Duration;

use crate::rng::SplitMix64;

/// Simulated minutes of a run's fault phase unless told otherwise.
pub const DEFAULT_MINUTES: u64 = 5;

/// A deliberately planted bug, to prove the checker catches what it claims to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The app keeps writing with its last fencing token for a lease TTL after it stopped being
    /// leader (it skips the self-demotion check), *and* the register accepts stale epochs (it
    /// skips the fencing check).
    UnfencedWrites,
    /// Only the app skips the self-demotion check; the register still fences. No stale write
    /// may be accepted.
    IgnoreDemotion,
}

impl PlantedBug {
    /// The bug's name on the command line (`--plant NAME`).
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::UnfencedWrites => "unfenced-writes",
            PlantedBug::IgnoreDemotion => "ignore-demotion",
        }
    }

    /// The bug named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [PlantedBug::UnfencedWrites, PlantedBug::IgnoreDemotion]
            .into_iter()
            .find(|b| b.name() == name)
    }
}

/// Everything one run does, derived from its seed (and the run length).
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// The seed.
    pub seed: u64,
    /// Number of nodes (3–5).
    pub nodes: usize,
    /// Number of Singleton apps (1–3).
    pub apps: usize,
    /// Simulated length of the fault phase.
    pub duration: Duration,
    /// Mean gap between two fault starts.
    pub mean_fault_gap: Duration,
    /// Relative weights of partitions, crashes, KV delays and record tampering.
    pub weights: [u64; 4],
    /// Largest delay of a register write (the fenced resource is remote).
    pub max_write_delay: Duration,
    /// A planted bug (test-only), if any.
    pub bug: Option<PlantedBug>,
}

impl SimOptions {
    /// The options of `seed` for a fault phase of `duration`.
    pub fn from_seed(seed: u64, duration: Duration) -> Self {
        let mut rng = SplitMix64::new(seed).fork("options");
        let nodes = rng.range(3, 5) as usize;
        let apps = rng.range(1, 3) as usize;
        let mean_fault_gap = Duration::from_millis(rng.range(2_000, 8_000));
        let weights = [
            rng.range(1, 4),
            rng.range(1, 4),
            rng.range(1, 4),
            rng.range(1, 4),
        ];
        let max_write_delay = Duration::from_millis(rng.range(0, 200));
        Self {
            seed,
            nodes,
            apps,
            duration,
            mean_fault_gap,
            weights,
            max_write_delay,
            bug: None,
        }
    }

    /// The node names `n1…`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// The app names `app1…`.
    pub fn app_names(&self) -> Vec<String> {
        (1..=self.apps).map(|i| format!("app{i}")).collect()
    }
}

impl fmt::Display for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} nodes={} apps={} duration={}s mean_fault_gap={}ms weights(partition,crash,kv_delay,tamper)={:?} max_write_delay={}ms",
            self.seed,
            self.nodes,
            self.apps,
            self.duration.as_secs(),
            self.mean_fault_gap.as_millis(),
            self.weights,
            self.max_write_delay.as_millis(),
        )?;
        if let Some(bug) = self.bug {
            write!(f, " planted_bug={bug:?}")?;
        }
        Ok(())
    }
}
