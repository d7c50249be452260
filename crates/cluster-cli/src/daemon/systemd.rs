//! The systemd service protocol (`sd_notify`), spoken only when systemd set `NOTIFY_SOCKET`
//! (`Type=notify` units, packaging/cluster.service); without it every call does nothing.
//!
//! ```text
//! platform task spawned ─ Notifier::start ─┬─ WATCHDOG=1 every WATCHDOG_USEC/2 while healthy
//!                                          ├─ READY=1 once started and every app settled
//!                                          └─ STATUS=<roles> whenever they change
//! first signal ─ Notifier::stopping ─ STOPPING=1, STATUS=draining (watchdog keeps petting)
//! ```
//!
//! Healthy means: the runtime still runs newly spawned tasks within the petting interval, and
//! no app has held the leader role without a valid lease (its fencing token gone with the
//! lease deadline) for longer than that interval — a stuck election or renewal machinery. Then
//! petting stops and systemd kills and restarts the daemon after `WatchdogSec`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::{App, Platform, Role};
use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How often the roles are looked at when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How long READY waits for the apps to be placed and started before it is sent anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// The notifier task; aborted on drop.
pub(crate) struct Notifier {
    stopping: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Notifier {
    /// Spawns the notifier of `platform` (whose task was just spawned) running `apps`.
    pub(crate) fn start(platform: &Platform, apps: &[App]) -> Self {
        let stopping = Arc::new(AtomicBool::new(false));
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec) / 2)
            .filter(|d| !d.is_zero());
        if let Some(every) = watchdog {
            info!(every = ?every, "systemd watchdog enabled");
        }
        let task = tokio::spawn(run(
            platform.clone(),
            apps.to_vec(),
            watchdog,
            stopping.clone(),
        ));
        Self { stopping, task }
    }

    /// Tells systemd the daemon is stopping (graceful leave under way).
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        send(&[
            NotifyState::Stopping,
            NotifyState::Status("draining: leaving the cluster"),
        ]);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!(error = %e, "sd_notify failed");
    }
}

async fn run(
    platform: Platform,
    apps: Vec<App>,
    watchdog: Option<Duration>,
    stop: Arc<AtomicBool>,
) {
    let every = watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let begun = Instant::now();
    let mut ready = false;
    let mut status = String::new();
    let mut last_pet: Option<Instant> = None;
    let mut stuck = StuckLeader::default();
    loop {
        tick.tick().await;
        let stopping = stop.load(Ordering::SeqCst);
        if let Some(w) = watchdog {
            let alive = runtime_alive(w).await;
            let stuck_apps = if stopping {
                Vec::new()
            } else {
                stuck.check(&apps, Instant::now(), w)
            };
            if !stuck_apps.is_empty() {
                warn!(apps = ?stuck_apps, "leader role held without a valid lease; no longer petting the systemd watchdog");
            } else if alive && last_pet.is_none_or(|t| t.elapsed() + every > w) {
                // The last tick before `w` (half of WatchdogSec) has passed since the last pet.
                send(&[NotifyState::Watchdog]);
                last_pet = Some(Instant::now());
            }
        }
        if stopping {
            continue;
        }
        let started = platform.is_started();
        if !ready && started && (settled(&platform, &apps) || begun.elapsed() >= SETTLE_LIMIT) {
            ready = true;
            let line = describe(&roles(&apps), false);
            send(&[NotifyState::Ready, NotifyState::Status(&line)]);
            info!(status = %line, "told systemd the node is ready");
            status = line;
            continue;
        }
        if ready {
            let line = describe(&roles(&apps), !started);
            if line != status {
                send(&[NotifyState::Status(&line)]);
                status = line;
            }
        }
    }
}

/// Whether a task spawned now runs within `bound` (all workers stuck: no).
async fn runtime_alive(bound: Duration) -> bool {
    matches!(
        tokio::time::timeout(bound, tokio::spawn(async {})).await,
        Ok(Ok(()))
    )
}

/// Every app placed elsewhere, or placed here and started (a role other than `stopped`).
fn settled(platform: &Platform, apps: &[App]) -> bool {
    apps.iter().all(|a| match platform.placed_here(a.name()) {
        None => false,
        Some(false) => true,
        Some(true) => a.role() != Role::Stopped,
    })
}

fn roles(apps: &[App]) -> Vec<(String, Role)> {
    apps.iter()
        .map(|a| (a.name().to_string(), a.role()))
        .collect()
}

/// The `STATUS=` line: `draining: …`, or the apps grouped by role on this node.
pub(crate) fn describe(roles: &[(String, Role)], draining: bool) -> String {
    if draining {
        return "draining: leaving the cluster".to_owned();
    }
    if roles.is_empty() {
        return "member, no apps".to_owned();
    }
    let group = |role: Role, label: &str| {
        let names: Vec<&str> = roles
            .iter()
            .filter(|(_, r)| *r == role)
            .map(|(n, _)| n.as_str())
            .collect();
        (!names.is_empty()).then(|| format!("{label} {}", names.join(", ")))
    };
    [
        group(Role::Leader, "leader of"),
        group(Role::Standby, "standby for"),
        group(Role::Active, "active in"),
        group(Role::Stopped, "not running"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}

/// Since when each app has held the leader role without a valid lease.
#[derive(Default)]
struct StuckLeader {
    since: std::collections::BTreeMap<String, Instant>,
}

impl StuckLeader {
    /// The apps stuck for longer than `grace` at `now`.
    fn check(&mut self, apps: &[App], now: Instant, grace: Duration) -> Vec<String> {
        let observed: Vec<(String, bool)> = apps
            .iter()
            .map(|a| {
                let state = *a.role_watch().borrow();
                let leaseless = state.role == Role::Leader && a.fencing_token().is_none();
                (a.name().to_string(), leaseless)
            })
            .collect();
        self.observe(&observed, now, grace)
    }

    fn observe(
        &mut self,
        observed: &[(String, bool)],
        now: Instant,
        grace: Duration,
    ) -> Vec<String> {
        let mut stuck = Vec::new();
        for (name, leaseless) in observed {
            if !leaseless {
                self.since.remove(name);
                continue;
            }
            let since = *self.since.entry(name.clone()).or_insert(now);
            if now.duration_since(since) > grace {
                stuck.push(name.clone());
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_group_apps_by_role() {
        let roles = vec![
            ("orders".to_owned(), Role::Leader),
            ("billing".to_owned(), Role::Standby),
            ("web".to_owned(), Role::Active),
            ("mail".to_owned(), Role::Leader),
            ("batch".to_owned(), Role::Stopped),
        ];
        assert_eq!(
            describe(&roles, false),
            "leader of orders, mail; standby for billing; active in web; not running batch"
        );
        assert_eq!(describe(&roles, true), "draining: leaving the cluster");
        assert_eq!(describe(&[], false), "member, no apps");
    }

    #[test]
    fn a_leader_without_lease_is_stuck_only_after_the_grace() {
        let mut s = StuckLeader::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        let leaseless = [("a".to_owned(), true), ("b".to_owned(), false)];
        assert!(s.observe(&leaseless, t0, grace).is_empty());
        assert!(s.observe(&leaseless, t0 + grace, grace).is_empty());
        assert_eq!(
            s.observe(&leaseless, t0 + grace + Duration::from_millis(1), grace),
            vec!["a".to_owned()]
        );
        // The lease came back (or the role was given up): the clock starts again.
        assert!(
            s.observe(&[("a".to_owned(), false)], t0 + grace * 2, grace)
                .is_empty()
        );
        assert!(s.observe(&leaseless, t0 + grace * 3, grace).is_empty());
    }
}
