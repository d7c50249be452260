//! Auto-rebalance records of the placement bucket: the cluster-wide configuration
//! (`config.auto-rebalance`, `config.migration-policy`), the controller's status
//! (`rebalance.status`), cancel requests (`rebalance.cancel`) and approvals (`approve.{app}`).
//! Every record carries `v` = [`PLACEMENT_RECORD_VERSION`].
//! Durations travel as milliseconds (`*_ms`). Documented in `docs/protocol/placement.md`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{AppName, NodeId};
use crate::labels::Labels;
use crate::member::NodeLoad;

use super::placement::PLACEMENT_RECORD_VERSION;
use super::placement_admin::PlannedMigration;

/// Key of the auto-rebalance configuration.
pub const AUTO_REBALANCE_KEY: &str = "config.auto-rebalance";
/// Key of the migration policy.
pub const MIGRATION_POLICY_KEY: &str = "config.migration-policy";
/// Key of the controller's rebalance status.
pub const REBALANCE_STATUS_KEY: &str = "rebalance.status";
/// Key of a cancel request.
pub const REBALANCE_CANCEL_KEY: &str = "rebalance.cancel";

/// Key of an approval of the next migration of `app`: `approve.{app}`.
pub fn approve_key(app: &AppName) -> String {
    format!("approve.{app}")
}

fn v1() -> u32 {
    PLACEMENT_RECORD_VERSION
}

/// When the controller evaluates balance besides its interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RebalanceTriggers {
    /// Evaluate when a node joins.
    pub on_node_join: bool,
    /// Evaluate when a node leaves.
    pub on_node_leave: bool,
    /// Evaluate when the measured load of the nodes (see [`NodeLoad`]) spreads more than
    /// `resource_thresholds` allow.
    pub on_resource_imbalance: bool,
    /// Evaluate continuously (every controller tick) on app-count imbalance.
    pub on_app_count_imbalance: bool,
    /// Evaluate on a cron schedule (5 fields `min hour dom mon dow`, or 6–7 with seconds
    /// first / year last), in UTC. Empty: none.
    pub schedule: String,
}

impl Default for RebalanceTriggers {
    fn default() -> Self {
        Self {
            on_node_join: true,
            on_node_leave: true,
            on_resource_imbalance: false,
            on_app_count_imbalance: false,
            schedule: String::new(),
        }
    }
}

/// Resource imbalance thresholds (fractions 0–1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceThresholds {
    /// CPU usage difference.
    pub cpu_imbalance: f64,
    /// Memory usage difference.
    pub memory_imbalance: f64,
    /// Disk usage difference.
    pub disk_imbalance: f64,
}

impl ResourceThresholds {
    /// The first dimension (`cpu`, `memory`, `disk`) whose spread (max − min over the nodes
    /// that report a load) exceeds its threshold, with the spread. Thresholds of 0 are off;
    /// fewer than two measured nodes never exceed.
    pub fn exceeded(&self, loads: &[NodeLoad]) -> Option<(&'static str, f64, f64)> {
        if loads.len() < 2 {
            return None;
        }
        let limits = [
            self.cpu_imbalance,
            self.memory_imbalance,
            self.disk_imbalance,
        ];
        for (i, limit) in limits.into_iter().enumerate() {
            if limit <= 0.0 {
                continue;
            }
            let values: Vec<f64> = loads.iter().map(|l| l.fractions()[i].1).collect();
            let max = values.iter().copied().fold(f64::MIN, f64::max);
            let min = values.iter().copied().fold(f64::MAX, f64::min);
            if max - min > limit {
                return Some((loads[0].fractions()[i].0, max - min, limit));
            }
        }
        None
    }
}

/// Node load limits (fractions 0–1; 0 = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceLimits {
    /// CPU.
    pub cpu: f64,
    /// Memory.
    pub memory: f64,
    /// Disk.
    pub disk: f64,
}

impl ResourceLimits {
    /// The first dimension of `load` above its limit, as `(name, value, limit)` (limits of 0
    /// are off).
    pub fn exceeded_by(&self, load: &NodeLoad) -> Option<(&'static str, f64, f64)> {
        let limits = [self.cpu, self.memory, self.disk];
        load.fractions()
            .into_iter()
            .zip(limits)
            .find(|((_, v), limit)| *limit > 0.0 && v > limit)
            .map(|((name, v), limit)| (name, v, limit))
    }
}

/// The spec's `AutoRebalanceConfig`, stored cluster-wide under [`AUTO_REBALANCE_KEY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoRebalanceConfig {
    /// Record version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Whether the controller rebalances on its own.
    pub enabled: bool,
    /// How often balance is evaluated (0: only on triggers).
    pub interval_ms: u64,
    /// Start above this imbalance (0–1; `cluster_placement::imbalance`); stop at or below half.
    pub threshold: f64,
    /// At most this many migrations at a time (≥ 1).
    pub max_concurrent: usize,
    /// Minimum time between the end of one rebalance and the start of the next.
    pub cooldown_period_ms: u64,
    /// Apps never moved.
    pub exclude_apps: BTreeSet<AppName>,
    /// When not empty, only apps carrying all these labels are moved.
    pub include_labels: Labels,
    /// `spread-evenly` (default), `bin-pack`, or `zone-aware` / `zone-aware:<label>`.
    pub strategy: String,
    /// Consider resources. Node capacity comes from the `cpu`/`memory`/`disk` labels and app
    /// requests from their placement rules; the planner never exceeds capacity. Usage comes
    /// from the load nodes measure ([`NodeLoad`] in their member records): when the spread of
    /// a dimension exceeds its threshold and app counts are balanced, a run moves one instance
    /// from the most loaded node to the least loaded eligible one.
    pub resource_aware: bool,
    /// Resource imbalance thresholds: spread (max − min load fraction) per dimension
    /// (0: off). Evaluated by the `on_resource_imbalance` trigger and resource-aware runs.
    pub resource_thresholds: ResourceThresholds,
    /// Never migrate onto a node whose measured load is above these limits (0: no limit;
    /// nodes without a measurement are not limited).
    pub max_node_load: ResourceLimits,
    /// Extra triggers.
    pub triggers: RebalanceTriggers,
}

impl Default for AutoRebalanceConfig {
    fn default() -> Self {
        Self {
            v: PLACEMENT_RECORD_VERSION,
            enabled: false,
            interval_ms: 5 * 60_000,
            threshold: 0.2,
            max_concurrent: 2,
            cooldown_period_ms: 10 * 60_000,
            exclude_apps: BTreeSet::new(),
            include_labels: Labels::new(),
            strategy: "spread-evenly".into(),
            resource_aware: false,
            resource_thresholds: ResourceThresholds::default(),
            max_node_load: ResourceLimits::default(),
            triggers: RebalanceTriggers::default(),
        }
    }
}

fn fraction(name: &str, x: f64, problems: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&x) {
        problems.push(format!("{name} must be within 0..=1, got {x}"));
    }
}

/// Checks the syntax of cron schedules and maintenance windows. The parsers (cron, time zones)
/// live in the runtime (`cluster_runtime::schedule::Syntax`), so this crate needs neither.
pub trait ScheduleSyntax {
    /// `Ok` when `expr` is a valid cron schedule; otherwise the problem.
    fn check_cron(&self, expr: &str) -> Result<()>;
    /// `Ok` when `window` is a valid maintenance window; otherwise the problem.
    fn check_window(&self, window: &TimeWindow) -> Result<()>;
}

impl AutoRebalanceConfig {
    /// Every problem of the configuration at once (`InvalidArgument`).
    pub fn validate(&self, syntax: &dyn ScheduleSyntax) -> Result<()> {
        let mut p = Vec::new();
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            p.push(format!(
                "threshold is an imbalance ratio within (0, 1] (e.g. 0.2 = 20 %), got {}",
                self.threshold
            ));
        }
        if self.max_concurrent == 0 {
            p.push("max_concurrent must be at least 1".into());
        }
        if let Err(e) = parse_strategy(&self.strategy) {
            p.push(e.to_string());
        }
        let t = &self.resource_thresholds;
        fraction("resource_thresholds.cpu_imbalance", t.cpu_imbalance, &mut p);
        fraction(
            "resource_thresholds.memory_imbalance",
            t.memory_imbalance,
            &mut p,
        );
        fraction(
            "resource_thresholds.disk_imbalance",
            t.disk_imbalance,
            &mut p,
        );
        let l = &self.max_node_load;
        fraction("max_node_load.cpu", l.cpu, &mut p);
        fraction("max_node_load.memory", l.memory, &mut p);
        fraction("max_node_load.disk", l.disk, &mut p);
        if !self.triggers.schedule.is_empty()
            && let Err(e) = syntax.check_cron(&self.triggers.schedule)
        {
            p.push(e.to_string());
        }
        problems(p)
    }

    /// Sets one field from text (`cluster config set auto-rebalance.<key> <value>`).
    pub fn set(&mut self, key: &str, value: &str, syntax: &dyn ScheduleSyntax) -> Result<()> {
        match key {
            "enabled" => self.enabled = parse_bool(key, value)?,
            "interval" => self.interval_ms = parse_ms(key, value)?,
            "threshold" => self.threshold = parse_f64(key, value)?,
            "max-concurrent" | "max_concurrent" => {
                self.max_concurrent = parse_u64(key, value)? as usize
            }
            "cooldown" | "cooldown-period" | "cooldown_period" => {
                self.cooldown_period_ms = parse_ms(key, value)?
            }
            "exclude-apps" | "exclude_apps" => {
                self.exclude_apps = list(value)
                    .map(|a| AppName::new(a).map_err(Error::from))
                    .collect::<Result<_>>()?
            }
            "include-labels" | "include_labels" => {
                let mut labels = Labels::new();
                for pair in list(value) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        Error::InvalidArgument(format!("{key}: {pair:?} is not key=value"))
                    })?;
                    labels.insert(k, v)?;
                }
                self.include_labels = labels;
            }
            "strategy" => {
                parse_strategy(value)?;
                self.strategy = value.to_owned();
            }
            "resource-aware" | "resource_aware" => self.resource_aware = parse_bool(key, value)?,
            "resource-thresholds.cpu" => {
                self.resource_thresholds.cpu_imbalance = parse_f64(key, value)?
            }
            "resource-thresholds.memory" => {
                self.resource_thresholds.memory_imbalance = parse_f64(key, value)?
            }
            "resource-thresholds.disk" => {
                self.resource_thresholds.disk_imbalance = parse_f64(key, value)?
            }
            "max-node-load.cpu" => self.max_node_load.cpu = parse_f64(key, value)?,
            "max-node-load.memory" => self.max_node_load.memory = parse_f64(key, value)?,
            "max-node-load.disk" => self.max_node_load.disk = parse_f64(key, value)?,
            "triggers.on-node-join" => self.triggers.on_node_join = parse_bool(key, value)?,
            "triggers.on-node-leave" => self.triggers.on_node_leave = parse_bool(key, value)?,
            "triggers.on-resource-imbalance" => {
                self.triggers.on_resource_imbalance = parse_bool(key, value)?
            }
            "triggers.on-app-count-imbalance" => {
                self.triggers.on_app_count_imbalance = parse_bool(key, value)?
            }
            "triggers.schedule" | "schedule" => self.triggers.schedule = value.trim().to_owned(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown setting auto-rebalance.{other} (enabled, interval, threshold, \
                     max-concurrent, cooldown, exclude-apps, include-labels, strategy, \
                     resource-aware, resource-thresholds.{{cpu,memory,disk}}, \
                     max-node-load.{{cpu,memory,disk}}, triggers.{{on-node-join,on-node-leave,\
                     on-resource-imbalance,on-app-count-imbalance,schedule}})"
                )));
            }
        }
        self.validate(syntax)
    }
}

/// The rebalance strategy named by `s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategyName {
    /// Spread evenly.
    SpreadEvenly,
    /// Consolidate.
    BinPack,
    /// Zones first (label key).
    ZoneAware(String),
}

/// Parses `spread-evenly`, `bin-pack`, `zone-aware` (label `zone`) or `zone-aware:<label>`.
pub fn parse_strategy(s: &str) -> Result<StrategyName> {
    match s.trim() {
        "" | "spread-evenly" | "spread" => Ok(StrategyName::SpreadEvenly),
        "bin-pack" | "binpack" => Ok(StrategyName::BinPack),
        "zone-aware" => Ok(StrategyName::ZoneAware("zone".into())),
        other => match other.strip_prefix("zone-aware:") {
            Some(key) if !key.is_empty() => Ok(StrategyName::ZoneAware(key.to_owned())),
            _ => Err(Error::InvalidArgument(format!(
                "strategy {other:?}: expected spread-evenly, bin-pack or zone-aware[:label]"
            ))),
        },
    }
}

/// At most `count` migrations per `window_ms` (count 0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Migrations.
    pub count: u32,
    /// Per window (ms).
    pub window_ms: u64,
}

/// A daily maintenance window `start`–`end` (`HH:MM`, end exclusive; `end < start` spans
/// midnight) in an IANA time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Start, `HH:MM`.
    pub start: String,
    /// End, `HH:MM`.
    pub end: String,
    /// IANA zone name (`UTC`, `Europe/Berlin`).
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// The spec's `MigrationPolicy`, stored cluster-wide under [`MIGRATION_POLICY_KEY`]. Applies to
/// migrations the controller starts on its own (auto-rebalance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MigrationPolicy {
    /// Record version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Minimum time between two migrations of the same app.
    pub cooldown_period_ms: u64,
    /// Cluster-wide rate limit.
    pub rate_limit: RateLimit,
    /// Each migration waits for an `approve.{app}` record.
    pub require_approval: bool,
    /// Migrations start only inside one of these windows (empty: any time).
    pub maintenance_windows: Vec<TimeWindow>,
    /// Defer a migration while its target node's measured load (highest of CPU, memory and
    /// disk) is above this fraction (0: no limit; a node without a measurement is not
    /// limited). The source is not checked: relieving a loaded source is what a
    /// resource-aware rebalance is for. Deferred steps are listed in `RebalanceStatus`.
    pub load_threshold: f64,
    /// A migration not completed within this is a failure.
    pub migration_timeout_ms: u64,
    /// On failure, move the app back where it was.
    pub rollback_on_failure: bool,
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        Self {
            v: PLACEMENT_RECORD_VERSION,
            cooldown_period_ms: 5 * 60_000,
            rate_limit: RateLimit {
                count: 10,
                window_ms: 3_600_000,
            },
            require_approval: false,
            maintenance_windows: Vec::new(),
            load_threshold: 0.0,
            migration_timeout_ms: 10 * 60_000,
            rollback_on_failure: true,
        }
    }
}

impl MigrationPolicy {
    /// Every problem of the policy at once (`InvalidArgument`).
    pub fn validate(&self, syntax: &dyn ScheduleSyntax) -> Result<()> {
        let mut p = Vec::new();
        if self.rate_limit.count > 0 && self.rate_limit.window_ms == 0 {
            p.push("rate_limit.window must be positive when rate_limit.count is set".into());
        }
        for (i, w) in self.maintenance_windows.iter().enumerate() {
            if let Err(e) = syntax.check_window(w) {
                p.push(format!("maintenance_windows[{i}]: {e}"));
            }
        }
        fraction("load_threshold", self.load_threshold, &mut p);
        if self.migration_timeout_ms == 0 {
            p.push("migration_timeout must be positive".into());
        }
        problems(p)
    }

    /// Sets one field from text (`cluster config set migration-policy.<key> <value>`).
    /// `maintenance-windows` takes `HH:MM-HH:MM[@Zone]` items separated by commas (empty: none).
    pub fn set(&mut self, key: &str, value: &str, syntax: &dyn ScheduleSyntax) -> Result<()> {
        match key {
            "cooldown" | "cooldown-period" | "cooldown_period" => {
                self.cooldown_period_ms = parse_ms(key, value)?
            }
            "rate-limit.count" => self.rate_limit.count = parse_u64(key, value)? as u32,
            "rate-limit.window" => self.rate_limit.window_ms = parse_ms(key, value)?,
            "require-approval" | "require_approval" => {
                self.require_approval = parse_bool(key, value)?
            }
            "maintenance-windows" | "maintenance_windows" => {
                self.maintenance_windows = list(value)
                    .map(|item| parse_window_item(item, syntax))
                    .collect::<Result<_>>()?
            }
            "load-threshold" | "load_threshold" => self.load_threshold = parse_f64(key, value)?,
            "migration-timeout" | "migration_timeout" => {
                self.migration_timeout_ms = parse_ms(key, value)?
            }
            "rollback-on-failure" | "rollback_on_failure" => {
                self.rollback_on_failure = parse_bool(key, value)?
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown setting migration-policy.{other} (cooldown, rate-limit.count, \
                     rate-limit.window, require-approval, maintenance-windows, load-threshold, \
                     migration-timeout, rollback-on-failure)"
                )));
            }
        }
        self.validate(syntax)
    }
}

/// `HH:MM-HH:MM[@Zone]`.
fn parse_window_item(item: &str, syntax: &dyn ScheduleSyntax) -> Result<TimeWindow> {
    let (range, zone) = match item.split_once('@') {
        Some((r, z)) => (r, z.trim().to_owned()),
        None => (item, utc()),
    };
    let (start, end) = range.split_once('-').ok_or_else(|| {
        Error::InvalidArgument(format!(
            "maintenance window {item:?}: expected HH:MM-HH:MM[@Zone]"
        ))
    })?;
    let w = TimeWindow {
        start: start.trim().to_owned(),
        end: end.trim().to_owned(),
        timezone: zone,
    };
    syntax.check_window(&w)?;
    Ok(w)
}

fn problems(p: Vec<String>) -> Result<()> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(p.join("; ")))
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        other => Err(Error::InvalidArgument(format!(
            "{key}: {other:?} is not a boolean (true/false)"
        ))),
    }
}

fn parse_f64(key: &str, v: &str) -> Result<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| Error::InvalidArgument(format!("{key}: {v:?} is not a number")))
}

fn parse_u64(key: &str, v: &str) -> Result<u64> {
    v.trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("{key}: {v:?} is not a whole number")))
}

fn parse_ms(key: &str, v: &str) -> Result<u64> {
    crate::duration::parse_duration(v)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| Error::InvalidArgument(format!("{key}: {e}")))
}

/// Phase of the current (or last) rebalance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebalancePhase {
    /// Nothing has run yet.
    #[default]
    Idle,
    /// Migrations are being executed.
    Running,
    /// The last rebalance completed.
    Completed,
    /// The last rebalance was cancelled.
    Cancelled,
}

/// A migration that failed (timed out), with what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedMigration {
    /// The step.
    pub migration: PlannedMigration,
    /// Why it failed and whether it was rolled back.
    pub reason: String,
}

/// A planned migration that waits, with the reason (e.g. the target is over the policy's
/// `load_threshold`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredMigration {
    /// The step.
    pub migration: PlannedMigration,
    /// Why it waits.
    pub reason: String,
}

/// A migration started by the controller (for per-app cooldown and the rate limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentMigration {
    /// The app.
    pub app: AppName,
    /// When it started (controller's wall clock, ms since the epoch).
    pub at_ms: u64,
}

/// The controller's record under [`REBALANCE_STATUS_KEY`]; also the payload of `OnRebalance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RebalanceStatus {
    /// Record version.
    #[serde(default = "v1")]
    pub v: u32,
    /// A rebalance is running.
    pub in_progress: bool,
    /// Phase.
    pub phase: RebalancePhase,
    /// Run number (increments with every rebalance started).
    pub run: u64,
    /// Migrations completed in this run.
    pub completed: usize,
    /// Migrations planned in this run.
    pub total: usize,
    /// The run's steps (in order).
    pub migrations: Vec<PlannedMigration>,
    /// Migrations executing now.
    pub active: Vec<PlannedMigration>,
    /// Migrations waiting for an `approve.{app}` record.
    pub awaiting_approval: Vec<PlannedMigration>,
    /// Failed migrations of this run.
    pub failed: Vec<FailedMigration>,
    /// Steps of the run that wait (policy `load_threshold`, or another migration of the app
    /// holds its migration lock), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<DeferredMigration>,
    /// When the last run started (wall clock, ms since the epoch; 0: never).
    pub last_run_ms: u64,
    /// Why the last run started (`node joined n4`, `interval`, `schedule`, ...).
    pub reason: String,
    /// Why nothing is started now (`version skew`, `outside maintenance window`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Imbalance when the run was planned.
    pub imbalance: f64,
    /// Recent migrations (for cooldown and rate limit across controller failovers).
    pub recent: Vec<RecentMigration>,
    /// Controller that wrote the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<NodeId>,
}

/// A request to cancel the running rebalance (record [`REBALANCE_CANCEL_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRecord {
    /// Record version.
    pub v: u32,
    /// Node that issued it.
    pub by: NodeId,
}

/// An operator's approval of the next migration of an app (record `approve.{app}`); consumed
/// when the migration starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Record version.
    pub v: u32,
    /// Node that issued it.
    pub by: NodeId,
}

/// Parameters of `config.set`: `key` is `auto-rebalance.<field>` or `migration-policy.<field>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSetParams {
    /// The setting.
    pub key: String,
    /// Its new value (text).
    pub value: String,
}

/// Result of `config.get` and `config.set`: the effective cluster-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementConfig {
    /// Auto-rebalance.
    pub auto_rebalance: AutoRebalanceConfig,
    /// Migration policy.
    pub migration_policy: MigrationPolicy,
}

/// Parameters of `rebalance.approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveParams {
    /// The app whose next migration is approved.
    pub app: AppName,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Accepts every schedule and window (their syntax is the runtime's business).
    struct AnySyntax;

    impl ScheduleSyntax for AnySyntax {
        fn check_cron(&self, _: &str) -> Result<()> {
            Ok(())
        }
        fn check_window(&self, _: &TimeWindow) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn config_set_validates_ranges_and_changes_nothing_on_error() {
        let mut c = AutoRebalanceConfig::default();
        let before = c.clone();
        for (key, value) in [
            ("threshold", "7"),
            ("threshold", "0"),
            ("threshold", "-0.1"),
            ("threshold", "NaN"),
            ("interval", "30"),
            ("interval", "99999999999999999999999d"),
            ("max-concurrent", "0"),
        ] {
            let mut attempt = c.clone();
            assert!(
                attempt.set(key, value, &AnySyntax).is_err(),
                "{key} = {value}"
            );
        }
        assert_eq!(format!("{c:?}"), format!("{before:?}"));
        c.set("threshold", "0.3", &AnySyntax).unwrap();
        assert!((c.threshold - 0.3).abs() < f64::EPSILON);
        c.set("threshold", "1", &AnySyntax).unwrap();
    }
}
