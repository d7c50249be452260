//! Time rules of auto-rebalance: cron schedules (the `cron` crate) and daily maintenance
//! windows in IANA time zones (`chrono-tz`). Both are evaluated on the controller's wall clock.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;

use cluster_core::error::{Error, Result};
use cluster_core::wire::rebalance::{ScheduleSyntax, TimeWindow};

/// A parsed cron schedule (UTC).
#[derive(Debug, Clone)]
pub struct CronSchedule(cron::Schedule);

impl CronSchedule {
    /// Parses 5 fields (`min hour dom mon dow`, like crontab) or 6–7 fields (seconds first,
    /// optional year last).
    pub fn parse(expr: &str) -> Result<Self> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            n => {
                return Err(Error::InvalidArgument(format!(
                    "schedule {expr:?}: expected 5 cron fields (min hour dom mon dow), got {n}"
                )));
            }
        };
        cron::Schedule::from_str(&full)
            .map(Self)
            .map_err(|e| Error::InvalidArgument(format!("schedule {expr:?}: {e}")))
    }

    /// Whether an occurrence falls in `(after, until]`.
    pub fn fires_between(&self, after: SystemTime, until: SystemTime) -> bool {
        let after: DateTime<Utc> = after.into();
        let until: DateTime<Utc> = until.into();
        self.0.after(&after).next().is_some_and(|t| t <= until)
    }
}

/// A parsed maintenance window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
    zone: Tz,
}

fn hhmm(what: &str, s: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} {s:?} is not a time of day HH:MM (00:00-23:59)"
        ))
    })
}

impl Window {
    /// Parses and checks a window.
    pub fn parse(w: &TimeWindow) -> Result<Self> {
        let start = hhmm("start", &w.start)?;
        let end = hhmm("end", &w.end)?;
        if start == end {
            return Err(Error::InvalidArgument(format!(
                "window {}-{} is empty (start equals end)",
                w.start, w.end
            )));
        }
        let zone = Tz::from_str(w.timezone.trim()).map_err(|_| {
            Error::InvalidArgument(format!(
                "time zone {:?} is not an IANA zone name (e.g. UTC, Europe/Berlin)",
                w.timezone
            ))
        })?;
        Ok(Self { start, end, zone })
    }

    /// Whether `at` falls inside the window (start inclusive, end exclusive; a window whose end
    /// is before its start spans midnight).
    pub fn contains(&self, at: SystemTime) -> bool {
        let utc: DateTime<Utc> = at.into();
        let local = utc.with_timezone(&self.zone).time();
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }
}

/// Whether `at` is inside any of `windows` (no windows: always).
pub fn in_any_window(windows: &[TimeWindow], at: SystemTime) -> Result<bool> {
    if windows.is_empty() {
        return Ok(true);
    }
    for w in windows {
        if Window::parse(w)?.contains(at) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Milliseconds since the Unix epoch.
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The syntax checks of cron schedules and maintenance windows that the configuration records of
/// `cluster_core::wire::rebalance` need (`validate`, `set`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Syntax;

impl ScheduleSyntax for Syntax {
    fn check_cron(&self, expr: &str) -> Result<()> {
        CronSchedule::parse(expr).map(drop)
    }

    fn check_window(&self, window: &TimeWindow) -> Result<()> {
        Window::parse(window).map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cluster_core::duration::parse_duration;
    use cluster_core::wire::rebalance::{AutoRebalanceConfig, MigrationPolicy};

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
            .into()
    }

    fn window(start: &str, end: &str, tz: &str) -> TimeWindow {
        TimeWindow {
            start: start.into(),
            end: end.into(),
            timezone: tz.into(),
        }
    }

    #[test]
    fn five_field_cron_fires_daily_at_two() {
        let s = CronSchedule::parse("0 2 * * *").unwrap();
        assert!(s.fires_between(at("2025-01-01T01:59:00Z"), at("2025-01-01T02:00:00Z")));
        assert!(!s.fires_between(at("2025-01-01T02:00:00Z"), at("2025-01-01T03:00:00Z")));
        assert!(s.fires_between(at("2025-01-01T03:00:00Z"), at("2025-01-02T02:30:00Z")));
    }

    #[test]
    fn bad_cron_expressions_are_refused_with_the_reason() {
        let e = CronSchedule::parse("0 2 * *").unwrap_err().to_string();
        assert!(e.contains("expected 5 cron fields"), "{e}");
        let e = CronSchedule::parse("0 25 * * *").unwrap_err().to_string();
        assert!(e.contains("0 25 * * *"), "{e}");
        let e = CronSchedule::parse("every day").unwrap_err().to_string();
        assert!(e.contains("expected 5 cron fields"), "{e}");
    }

    #[test]
    fn windows_respect_time_zones_and_midnight() {
        let w = Window::parse(&window("02:00", "06:00", "UTC")).unwrap();
        assert!(w.contains(at("2025-03-01T02:00:00Z")));
        assert!(w.contains(at("2025-03-01T05:59:00Z")));
        assert!(!w.contains(at("2025-03-01T06:00:00Z")));
        // 02:00-06:00 in Berlin (UTC+1 in winter) is 01:00-05:00 UTC.
        let b = Window::parse(&window("02:00", "06:00", "Europe/Berlin")).unwrap();
        assert!(b.contains(at("2025-01-15T01:30:00Z")));
        assert!(!b.contains(at("2025-01-15T05:30:00Z")));
        let night = Window::parse(&window("22:00", "02:00", "UTC")).unwrap();
        assert!(night.contains(at("2025-03-01T23:00:00Z")));
        assert!(night.contains(at("2025-03-01T01:00:00Z")));
        assert!(!night.contains(at("2025-03-01T12:00:00Z")));
        assert!(in_any_window(&[], at("2025-03-01T12:00:00Z")).unwrap());
    }

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        let e = Window::parse(&window("25:00", "06:00", "UTC"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("start \"25:00\" is not a time of day"), "{e}");
        let e = Window::parse(&window("02:00", "6pm", "UTC"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("end \"6pm\""), "{e}");
        let e = Window::parse(&window("02:00", "06:00", "Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
        let e = Window::parse(&window("02:00", "02:00", "UTC"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn settings_parse_from_text_and_report_every_problem() {
        let mut c = AutoRebalanceConfig::default();
        c.set("enabled", "true", &Syntax).unwrap();
        c.set("interval", "5m", &Syntax).unwrap();
        c.set("threshold", "0.3", &Syntax).unwrap();
        c.set("triggers.schedule", "0 2 * * *", &Syntax).unwrap();
        assert!(c.enabled);
        assert_eq!(c.interval_ms, 300_000);
        assert!(
            c.set("enabled", "maybe", &Syntax)
                .unwrap_err()
                .to_string()
                .contains("boolean")
        );
        assert!(
            c.set("bogus", "1", &Syntax)
                .unwrap_err()
                .to_string()
                .contains("unknown setting")
        );
        let e = c
            .set("triggers.schedule", "61 * * * *", &Syntax)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schedule"), "{e}");
        let mut p = MigrationPolicy::default();
        p.set(
            "maintenance-windows",
            "02:00-06:00@Europe/Berlin, 22:00-23:00",
            &Syntax,
        )
        .unwrap();
        assert_eq!(p.maintenance_windows.len(), 2);
        assert_eq!(p.maintenance_windows[1].timezone, "UTC");
        let e = p
            .set("maintenance-windows", "2-6", &Syntax)
            .unwrap_err()
            .to_string();
        assert!(e.contains("HH:MM"), "{e}");
        p.maintenance_windows = vec![window("x", "06:00", "Nowhere")];
        p.migration_timeout_ms = 0;
        let e = p.validate(&Syntax).unwrap_err().to_string();
        assert!(
            e.contains("maintenance_windows[0]") && e.contains("migration_timeout"),
            "{e}"
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
    }
}
