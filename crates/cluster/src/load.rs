//! Node load from Linux `/proc` for the member record ([`ProcLoadProbe`], a
//! [`LoadProbe`]): CPU as the 1-minute load average per
//! core, memory as `1 − MemAvailable/MemTotal`. Disk is not measured (reported as 0). On
//! systems without `/proc` the probe reports no load.
//!
//! ```no_run
//! use std::sync::Arc;
//! use cluster::load::ProcLoadProbe;
//!
//! let builder = cluster::Platform::builder("prod", "node-1").load_probe(Arc::new(ProcLoadProbe));
//! ```

use cluster_core::LoadProbe;
use cluster_core::NodeLoad;

/// Reads `/proc/loadavg` and `/proc/meminfo` at every sample (two small files).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcLoadProbe;

impl LoadProbe for ProcLoadProbe {
    fn sample(&self) -> Option<NodeLoad> {
        let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(NodeLoad::from_fractions(
            cpu_per_core(&loadavg, cores)?,
            memory_used(&meminfo)?,
            0.0,
        ))
    }
}

/// The 1-minute load average of a `/proc/loadavg` line divided by `cores`.
pub fn cpu_per_core(loadavg: &str, cores: usize) -> Option<f64> {
    let one: f64 = loadavg.split_whitespace().next()?.parse().ok()?;
    Some(one / cores.max(1) as f64)
}

/// `1 − MemAvailable/MemTotal` from `/proc/meminfo` text.
pub fn memory_used(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    (total > 0.0).then(|| (1.0 - available / total).clamp(0.0, 1.0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg_per_core() {
        let v = cpu_per_core("3.00 2.50 1.00 2/345 6789\n", 4).unwrap();
        assert!((v - 0.75).abs() < 1e-9);
        assert!(cpu_per_core("garbage", 4).is_none());
        assert!(cpu_per_core("", 4).is_none());
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n";
        let v = memory_used(text).unwrap();
        assert!((v - 0.75).abs() < 1e-9);
        assert!(memory_used("MemTotal: 0 kB\nMemAvailable: 0 kB\n").is_none());
        assert!(memory_used("MemFree: 1 kB\n").is_none());
    }

    #[test]
    fn the_probe_reads_this_machine() {
        // Linux CI: /proc exists, values are sane fractions.
        let load = ProcLoadProbe.sample().unwrap();
        assert!(load.memory <= 1000, "{load:?}");
    }
}
