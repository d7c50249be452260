//! Many seeds in a row and their summary.

use std::fmt;
use std::time::Duration;

use crate::options::SimOptions;
use crate::run::{Report, run_seed};

/// Totals over many runs.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Simulated time, all runs.
    pub simulated: Duration,
    /// Faults injected, all runs.
    pub faults: u64,
    /// Leadership terms seen.
    pub terms: u64,
    /// Register writes accepted.
    pub writes_accepted: u64,
    /// Register writes refused as stale.
    pub writes_refused: u64,
    /// Samples with two leaders inside a tampering window.
    pub excused_overlaps: u64,
    /// Slowest recovery after the last heal.
    pub max_recovery: Duration,
    /// Violations, all runs.
    pub violations: u64,
    /// The reports of the runs with violations.
    pub failed: Vec<Report>,
}

impl Summary {
    /// Adds one run.
    pub fn add(&mut self, r: Report) {
        self.seeds += 1;
        self.simulated += r.simulated;
        self.faults += r.faults;
        self.terms += r.terms;
        self.writes_accepted += r.writes_accepted;
        self.writes_refused += r.writes_refused;
        self.excused_overlaps += r.excused_overlaps;
        self.max_recovery = self.max_recovery.max(r.recovery.unwrap_or_default());
        self.violations += r.violations.len() as u64;
        if !r.violations.is_empty() {
            self.failed.push(r);
        }
    }
}

/// Runs seeds `start..start + count`, each with a fault phase of `duration`, calling `each`
/// after every run.
pub fn run_seeds(
    start: u64,
    count: u64,
    duration: Duration,
    mut each: impl FnMut(&Report),
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    for seed in start..start.saturating_add(count) {
        let report = run_seed(SimOptions::from_seed(seed, duration))?;
        each(&report);
        summary.add(report);
    }
    Ok(summary)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.options)?;
        write!(
            f,
            "  simulated {:.1}s, {} faults, {} terms, {} writes accepted, {} refused, {} excused overlaps, recovery {:?}, trace {} events hash {:016x}",
            self.simulated.as_secs_f64(),
            self.faults,
            self.terms,
            self.writes_accepted,
            self.writes_refused,
            self.excused_overlaps,
            self.recovery,
            self.events,
            self.trace_hash,
        )?;
        for (v, excerpt) in &self.violations {
            write!(f, "\n  VIOLATION {v}\n    trace:")?;
            for line in excerpt {
                write!(f, "\n      {line}")?;
            }
        }
        if !self.violations.is_empty() {
            write!(f, "\n  reproduce: {}", self.command())?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seeds {}, simulated {:.1} min, faults {}, terms {}, writes accepted {} / refused {}, excused overlaps {}, max recovery {:?}, violations {}",
            self.seeds,
            self.simulated.as_secs_f64() / 60.0,
            self.faults,
            self.terms,
            self.writes_accepted,
            self.writes_refused,
            self.excused_overlaps,
            self.max_recovery,
            self.violations,
        )?;
        for r in &self.failed {
            write!(
                f,
                "\n  failed: {} ({} violations)",
                r.command(),
                r.violations.len()
            )?;
        }
        Ok(())
    }
}
