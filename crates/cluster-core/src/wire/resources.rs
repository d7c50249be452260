//! Resource quantities (CPU, memory, disk) and their parsing.
//!
//! CPU is counted in millicores (`"2"` = 2000, `"500m"` = 500, `"0.25"` = 250). Memory and disk are
//! counted in bytes and accept Kubernetes-style suffixes: binary `Ki Mi Gi Ti Pi Ei` (powers of
//! 1024), decimal `k M G T P E` (powers of 1000), or none. Fractions are allowed when the result
//! is a whole number of units (`"1.5Gi"` is fine, `"0.5"` bytes is not).

use std::fmt;

use crate::labels::Labels;
use serde::{Deserialize, Serialize};

/// A quantity that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} quantity {input:?}: {problem}")]
pub struct ResourceError {
    /// Which quantity was parsed (`cpu`, `memory`, `disk`).
    pub what: &'static str,
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub problem: String,
}

/// CPU, memory and disk amounts: an app's request or a node's capacity.
///
/// A capacity of [`u64::MAX`] in a dimension means "not limited" ([`Resources::UNLIMITED`]);
/// that is the default for nodes that do not declare their capacity.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
}

impl Resources {
    /// Nothing requested.
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        disk_bytes: 0,
    };

    /// No limit in any dimension.
    pub const UNLIMITED: Resources = Resources {
        cpu_millis: u64::MAX,
        memory_bytes: u64::MAX,
        disk_bytes: u64::MAX,
    };

    /// Builds a quantity from raw units.
    pub const fn new(cpu_millis: u64, memory_bytes: u64, disk_bytes: u64) -> Self {
        Self {
            cpu_millis,
            memory_bytes,
            disk_bytes,
        }
    }

    /// Parses the three quantities, e.g. `Resources::parse("2", "4Gi", "10Gi")`.
    /// An empty string means zero.
    pub fn parse(cpu: &str, memory: &str, disk: &str) -> Result<Self, ResourceError> {
        let opt = |s: &str, f: fn(&str) -> Result<u64, ResourceError>| {
            if s.trim().is_empty() { Ok(0) } else { f(s) }
        };
        Ok(Self {
            cpu_millis: opt(cpu, parse_cpu)?,
            memory_bytes: opt(memory, parse_memory)?,
            disk_bytes: opt(disk, parse_disk)?,
        })
    }

    /// Reads a node capacity from its labels `cpu`, `memory` and `disk` (as in the spec's
    /// `Labels{"cpu": "16", "memory": "64Gi"}`); a missing label means "not limited".
    pub fn from_labels(labels: &Labels) -> Result<Self, ResourceError> {
        Ok(Self {
            cpu_millis: labels
                .get("cpu")
                .map(parse_cpu)
                .transpose()?
                .unwrap_or(u64::MAX),
            memory_bytes: labels
                .get("memory")
                .map(parse_memory)
                .transpose()?
                .unwrap_or(u64::MAX),
            disk_bytes: labels
                .get("disk")
                .map(parse_disk)
                .transpose()?
                .unwrap_or(u64::MAX),
        })
    }

    /// Component-wise saturating sum.
    pub fn saturating_add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(o.disk_bytes),
        }
    }

    /// Component-wise saturating difference.
    pub fn saturating_sub(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(o.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(o.disk_bytes),
        }
    }

    /// Whether `self` (a request) fits in `free` in every dimension.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu_millis <= free.cpu_millis
            && self.memory_bytes <= free.memory_bytes
            && self.disk_bytes <= free.disk_bytes
    }

    /// Whether nothing is requested.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The first dimension in which `self` does not fit in `free`, described for humans.
    pub fn shortfall(&self, free: &Resources) -> Option<String> {
        if self.cpu_millis > free.cpu_millis {
            return Some(format!(
                "insufficient cpu (need {}, free {})",
                fmt_cpu(self.cpu_millis),
                fmt_cpu(free.cpu_millis)
            ));
        }
        if self.memory_bytes > free.memory_bytes {
            return Some(format!(
                "insufficient memory (need {}, free {})",
                fmt_bytes(self.memory_bytes),
                fmt_bytes(free.memory_bytes)
            ));
        }
        if self.disk_bytes > free.disk_bytes {
            return Some(format!(
                "insufficient disk (need {}, free {})",
                fmt_bytes(self.disk_bytes),
                fmt_bytes(free.disk_bytes)
            ));
        }
        None
    }

    /// Utilisation of `capacity` by `self`, in per-mille of the most used limited dimension
    /// (unlimited dimensions count as 0).
    pub fn utilisation_permille(&self, capacity: &Resources) -> u64 {
        let dim = |used: u64, cap: u64| {
            if cap == u64::MAX || cap == 0 {
                0
            } else {
                ((u128::from(used) * 1000) / u128::from(cap)).min(1000) as u64
            }
        };
        dim(self.cpu_millis, capacity.cpu_millis)
            .max(dim(self.memory_bytes, capacity.memory_bytes))
            .max(dim(self.disk_bytes, capacity.disk_bytes))
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={} memory={} disk={}",
            fmt_cpu(self.cpu_millis),
            fmt_bytes(self.memory_bytes),
            fmt_bytes(self.disk_bytes)
        )
    }
}

/// Formats millicores (`500m`, `2`, `unlimited`).
pub fn fmt_cpu(millis: u64) -> String {
    if millis == u64::MAX {
        "unlimited".into()
    } else if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Formats bytes with the largest exact binary suffix (`4Gi`, `1536Mi`, `unlimited`).
pub fn fmt_bytes(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "unlimited".into();
    }
    const UNITS: [(&str, u64); 6] = [
        ("Ei", 1 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, unit) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Parses a CPU quantity into millicores: `"2"`, `"0.5"`, `"500m"`.
pub fn parse_cpu(input: &str) -> Result<u64, ResourceError> {
    let s = input.trim();
    let (number, scale) = match s.strip_suffix('m') {
        Some(n) => (n, 1u128),
        None => (s, 1000u128),
    };
    parse_scaled("cpu", input, number, scale)
}

/// Parses a memory quantity into bytes: `"4Gi"`, `"500Mi"`, `"10G"`, `"1024"`.
pub fn parse_memory(input: &str) -> Result<u64, ResourceError> {
    parse_bytes("memory", input)
}

/// Parses a disk quantity into bytes (same syntax as [`parse_memory`]).
pub fn parse_disk(input: &str) -> Result<u64, ResourceError> {
    parse_bytes("disk", input)
}

fn parse_bytes(what: &'static str, input: &str) -> Result<u64, ResourceError> {
    let s = input.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let scale: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        other => {
            return Err(ResourceError {
                what,
                input: input.into(),
                problem: format!(
                    "unknown suffix {other:?}; use Ki, Mi, Gi, Ti, Pi, Ei (1024-based) or k, M, G, T, P, E (1000-based)"
                ),
            });
        }
    };
    parse_scaled(what, input, number, scale)
}

/// Parses a non-negative decimal `number` and multiplies it by `scale`, requiring a whole result.
fn parse_scaled(
    what: &'static str,
    input: &str,
    number: &str,
    scale: u128,
) -> Result<u64, ResourceError> {
    let err = |problem: &str| ResourceError {
        what,
        input: input.into(),
        problem: problem.into(),
    };
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let digits_ok = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(err("expected a non-negative decimal number"));
    }
    if int.len() + frac.len() > 30 {
        return Err(err("too many digits"));
    }
    let mut mantissa: u128 = 0;
    for c in int.chars().chain(frac.chars()) {
        mantissa = mantissa * 10 + u128::from(c as u8 - b'0');
    }
    let divisor = 10u128.pow(frac.len() as u32);
    let scaled = mantissa
        .checked_mul(scale)
        .ok_or_else(|| err("too large"))?;
    if scaled % divisor != 0 {
        return Err(err("fraction is finer than the smallest unit"));
    }
    u64::try_from(scaled / divisor)
        .ok()
        .filter(|v| *v != u64::MAX)
        .ok_or_else(|| err("too large"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu() {
        assert_eq!(parse_cpu("2").unwrap(), 2000);
        assert_eq!(parse_cpu("500m").unwrap(), 500);
        assert_eq!(parse_cpu("0.25").unwrap(), 250);
        assert_eq!(parse_cpu(" 1.5 ").unwrap(), 1500);
        assert_eq!(parse_cpu(".5").unwrap(), 500);
    }

    #[test]
    fn parses_bytes() {
        assert_eq!(parse_memory("4Gi").unwrap(), 4 << 30);
        assert_eq!(parse_memory("500Mi").unwrap(), 500 << 20);
        assert_eq!(parse_memory("10G").unwrap(), 10_000_000_000);
        assert_eq!(parse_memory("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_disk("1024").unwrap(), 1024);
        assert_eq!(parse_disk("2k").unwrap(), 2000);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse_memory("4GB").unwrap_err();
        assert_eq!(e.what, "memory");
        assert!(e.to_string().contains("unknown suffix \"GB\""), "{e}");
        assert!(
            parse_cpu("")
                .unwrap_err()
                .to_string()
                .contains("missing number")
        );
        assert!(
            parse_cpu("-1")
                .unwrap_err()
                .to_string()
                .contains("non-negative")
        );
        assert!(
            parse_cpu("0.0001")
                .unwrap_err()
                .to_string()
                .contains("finer")
        );
        assert!(
            parse_memory("0.5")
                .unwrap_err()
                .to_string()
                .contains("finer")
        );
        assert!(
            parse_memory("99999999Ei")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(parse_memory("1.2.3Gi").is_err());
    }

    #[test]
    fn parse_all_and_display() {
        let r = Resources::parse("2", "4Gi", "").unwrap();
        assert_eq!(r, Resources::new(2000, 4 << 30, 0));
        assert_eq!(r.to_string(), "cpu=2 memory=4Gi disk=0");
    }

    #[test]
    fn capacity_from_labels_defaults_to_unlimited() {
        let l = Labels::from_pairs([("cpu", "16"), ("memory", "64Gi")]).unwrap();
        let c = Resources::from_labels(&l).unwrap();
        assert_eq!(c, Resources::new(16_000, 64 << 30, u64::MAX));
        let bad = Labels::from_pairs([("memory", "lots")]).unwrap();
        assert!(Resources::from_labels(&bad).is_err());
    }

    #[test]
    fn fit_and_shortfall() {
        let need = Resources::new(1000, 4 << 30, 0);
        let free = Resources::new(2000, 2 << 30, 0);
        assert!(!need.fits_in(&free));
        assert_eq!(
            need.shortfall(&free).unwrap(),
            "insufficient memory (need 4Gi, free 2Gi)"
        );
        assert_eq!(
            need.utilisation_permille(&Resources::new(4000, 8 << 30, u64::MAX)),
            500
        );
    }
}
