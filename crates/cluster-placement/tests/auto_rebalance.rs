//! Auto-rebalance decisions: pauses, cooldowns, step admission, validity, completion, target
//! load and timeouts (unit and property tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use cluster_core::wire::placement_admin::PlannedMigration;
use cluster_core::wire::rebalance::{AutoRebalanceConfig, MigrationPolicy, RateLimit};
use cluster_core::{
    AppName, Error, Labels, Member, MemberApp, Mode, NodeId, NodeLoad, PlatformName, Role,
};
use cluster_placement::auto::{
    Admission, Members, TimedOut, admit, cooling, done, options, over_load_threshold, pause_reason,
    reached_target, retention, runnable, still_valid, timed_out, timeout_reason,
};
use common::{a, n};
use proptest::prelude::*;

fn member(id: &str, apps: &[(&str, bool, Role)]) -> Member {
    Member {
        node_id: n(id),
        platform: PlatformName::new("p").unwrap(),
        instance: "i".into(),
        address: String::new(),
        labels: Labels::new(),
        apps: apps
            .iter()
            .map(|(name, running, role)| MemberApp {
                name: a(name),
                mode: Mode::Replicas { n: 1 },
                running: *running,
                role: *role,
                placement: None,
                ready: true,
            })
            .collect(),
        healthy: true,
        joined_at: SystemTime::UNIX_EPOCH,
        last_seen: SystemTime::UNIX_EPOCH,
        version: String::new(),
        shutting_down: false,
        load: None,
        host: None,
    }
}

fn members(list: Vec<Member>) -> Members {
    list.into_iter().map(|m| (m.node_id.clone(), m)).collect()
}

fn step(app: &str, from: &str, to: &str, kind: &str) -> PlannedMigration {
    PlannedMigration {
        app: a(app),
        from: Some(n(from)),
        to: Some(n(to)),
        kind: kind.into(),
    }
}

#[test]
fn pauses_in_order_skew_shutdown_drain_window_disabled() {
    let mut m = members(vec![member("n1", &[]), member("n2", &[])]);
    let open = || Ok(true);
    assert_eq!(pause_reason(&m, false, open, true).unwrap(), None);
    assert_eq!(
        pause_reason(&m, false, open, false).unwrap().as_deref(),
        Some("auto-rebalance is disabled")
    );
    assert_eq!(
        pause_reason(&m, false, || Ok(false), true)
            .unwrap()
            .as_deref(),
        Some("outside every maintenance window")
    );
    assert!(pause_reason(&m, false, || Err(Error::Internal("x".into())), true).is_err());
    assert_eq!(
        pause_reason(&m, true, || Err(Error::Internal("x".into())), true)
            .unwrap()
            .as_deref(),
        Some("a node is being drained")
    );
    m.get_mut(&n("n2")).unwrap().shutting_down = true;
    assert_eq!(
        pause_reason(&m, true, open, true).unwrap().as_deref(),
        Some("node n2 is shutting down")
    );
    m.get_mut(&n("n1")).unwrap().version = "1.0".into();
    m.get_mut(&n("n2")).unwrap().version = "1.1".into();
    assert_eq!(
        pause_reason(&m, true, open, true).unwrap().as_deref(),
        Some("version skew in membership (1.0, 1.1): rolling upgrade")
    );
}

#[test]
fn a_run_executes_only_moves_and_leader_steps_of_included_apps() {
    let mut config = AutoRebalanceConfig::default();
    config.exclude_apps.insert(a("db"));
    let mut start = step("web", "n1", "n2", "start");
    start.from = None;
    let mut no_target = step("web", "n1", "n2", "move");
    no_target.to = None;
    let plan = vec![
        step("web", "n1", "n2", "move"),
        step("db", "n1", "n2", "move"),
        step("q", "n1", "n2", "leader"),
        start,
        no_target,
    ];
    let kept: Vec<String> = runnable(plan, &config)
        .iter()
        .map(|m| format!("{}:{}", m.app, m.kind))
        .collect();
    assert_eq!(kept, ["web:move", "q:leader"]);
    let o = options(&config);
    assert_eq!(o.threshold, Some(config.threshold));
    assert_eq!(o.exclude_apps, config.exclude_apps);
    assert_eq!(o.app, None);
}

#[test]
fn steps_go_stale_when_the_placement_changed() {
    let placed = [n("n1"), n("n2")];
    assert!(still_valid(&step("web", "n1", "n3", "move"), &placed));
    assert!(!still_valid(&step("web", "n1", "n2", "move"), &placed));
    assert!(!still_valid(&step("web", "n3", "n4", "move"), &placed));
    assert!(still_valid(&step("db", "n1", "n2", "leader"), &placed));
    assert!(!still_valid(&step("db", "n2", "n1", "leader"), &placed));
    assert!(!still_valid(&step("db", "n1", "n3", "leader"), &placed));
}

#[test]
fn completion_follows_membership() {
    let mv = step("web", "n1", "n2", "move");
    let both = members(vec![
        member("n1", &[("web", true, Role::Active)]),
        member("n2", &[("web", true, Role::Active)]),
    ]);
    assert!(!done(&both, &mv));
    assert!(reached_target(&both, &mv));
    let moved = members(vec![
        member("n1", &[("web", false, Role::Active)]),
        member("n2", &[("web", true, Role::Active)]),
    ]);
    assert!(done(&moved, &mv));
    let lead = step("web", "n1", "n2", "leader");
    assert!(!done(&moved, &lead));
    let led = members(vec![member("n2", &[("web", true, Role::Leader)])]);
    assert!(done(&led, &lead));
}

#[test]
fn a_loaded_target_defers_the_step() {
    let mut m = members(vec![member("n2", &[])]);
    let mv = step("web", "n1", "n2", "move");
    assert_eq!(over_load_threshold(&m, &mv, 0.8), None);
    m.get_mut(&n("n2")).unwrap().load = Some(NodeLoad::from_fractions(0.5, 0.9, 0.1));
    assert_eq!(
        over_load_threshold(&m, &mv, 0.8).as_deref(),
        Some("target n2 load memory 0.90 is above the load threshold 0.80")
    );
    assert_eq!(over_load_threshold(&m, &mv, 0.0), None);
    assert_eq!(over_load_threshold(&m, &mv, 0.95), None);
}

#[test]
fn timeouts_roll_back_withdraw_or_keep() {
    let mv = step("web", "n1", "n2", "move");
    let rollback = MigrationPolicy {
        rollback_on_failure: true,
        ..MigrationPolicy::default()
    };
    let keep = MigrationPolicy {
        rollback_on_failure: false,
        ..MigrationPolicy::default()
    };
    assert_eq!(
        timed_out(&mv, false, &rollback, true),
        TimedOut::MoveBack(step("web", "n2", "n1", "move"))
    );
    assert_eq!(timed_out(&mv, false, &rollback, false), TimedOut::Withdrawn);
    assert_eq!(timed_out(&mv, false, &keep, true), TimedOut::Kept);
    assert_eq!(
        timed_out(&mv, true, &rollback, true),
        TimedOut::RollbackFailed
    );
    let reason = timeout_reason(Duration::from_secs(30)) + TimedOut::Withdrawn.suffix();
    assert_eq!(
        reason,
        "did not complete within 30s; request withdrawn, the app stays where it was"
    );
}

#[test]
fn cooldowns_and_the_rate_limit_gate_steps() {
    let policy = MigrationPolicy {
        cooldown_period_ms: 10_000,
        rate_limit: RateLimit {
            count: 2,
            window_ms: 60_000,
        },
        ..MigrationPolicy::default()
    };
    let s = Duration::from_secs;
    let web = a("web");
    assert_eq!(admit(&web, true, &[], &policy), Admission::Skip);
    assert_eq!(
        admit(&web, false, &[(a("web"), s(9))], &policy),
        Admission::Skip
    );
    assert_eq!(
        admit(&web, false, &[(a("web"), s(10))], &policy),
        Admission::Go
    );
    let two = [(a("x"), s(1)), (a("y"), s(59))];
    assert_eq!(admit(&web, false, &two, &policy), Admission::Stop);
    let old = [(a("x"), s(1)), (a("y"), s(60))];
    assert_eq!(admit(&web, false, &old, &policy), Admission::Go);
    let config = AutoRebalanceConfig {
        cooldown_period_ms: 90_000,
        ..AutoRebalanceConfig::default()
    };
    assert_eq!(retention(&config, &policy), s(90));
    assert!(cooling(Some(s(89)), s(90)));
    assert!(!cooling(Some(s(90)), s(90)));
    assert!(!cooling(None, s(90)));
}

fn app_name() -> impl Strategy<Value = AppName> {
    (0..4u8).prop_map(|i| a(&format!("app{i}")))
}

proptest! {
    /// A step admitted (`Go`) has no app migration in flight, its app is out of its cooldown
    /// and fewer than `count` migrations started within the window; a `Stop` means the rate
    /// limit is reached.
    #[test]
    fn admission_respects_cooldown_and_rate_limit(
        app in app_name(),
        busy in any::<bool>(),
        recent in prop::collection::vec((app_name(), 0..120u64), 0..6),
        cooldown in 0..60u64,
        count in 0..4u32,
        window in 0..120u64,
    ) {
        let policy = MigrationPolicy {
            cooldown_period_ms: cooldown * 1000,
            rate_limit: RateLimit { count, window_ms: window * 1000 },
            ..MigrationPolicy::default()
        };
        let recent: Vec<(AppName, Duration)> =
            recent.into_iter().map(|(x, age)| (x, Duration::from_secs(age))).collect();
        let cooling = recent.iter().any(|(x, age)| *x == app && age.as_secs() < cooldown);
        let in_window = recent.iter().filter(|(_, age)| age.as_secs() < window).count();
        let limited = count > 0 && in_window >= count as usize;
        let expected = if busy || cooling {
            Admission::Skip
        } else if limited {
            Admission::Stop
        } else {
            Admission::Go
        };
        prop_assert_eq!(admit(&app, busy, &recent, &policy), expected);
    }

    /// A valid `move` step changes the placement (source placed, target not); a valid `leader`
    /// step hands over to another candidate.
    #[test]
    fn a_valid_step_changes_the_placement(
        placed in prop::collection::btree_set(0..6u8, 0..5),
        order in any::<u64>(),
        from in 0..6u8,
        to in 0..6u8,
        leader in any::<bool>(),
    ) {
        let mut nodes: Vec<NodeId> = placed.iter().map(|i| n(&format!("n{i}"))).collect();
        if !nodes.is_empty() {
            let k = (order as usize) % nodes.len();
            nodes.rotate_left(k);
        }
        let kind = if leader { "leader" } else { "move" };
        let s = step("app", &format!("n{from}"), &format!("n{to}"), kind);
        let (f, t) = (s.from.clone().unwrap(), s.to.clone().unwrap());
        let valid = still_valid(&s, &nodes);
        if leader {
            prop_assert_eq!(valid, nodes.first() == Some(&f) && nodes.contains(&t));
        } else {
            prop_assert_eq!(valid, nodes.contains(&f) && !nodes.contains(&t));
            prop_assert!(!valid || f != t);
        }
    }

    /// Only a measured target above a positive threshold defers a step, and the reason names
    /// its highest dimension.
    #[test]
    fn load_defers_only_above_the_threshold(
        cpu in 0..2000u32,
        memory in 0..1000u32,
        disk in 0..1000u32,
        measured in any::<bool>(),
        threshold in 0..1200u32,
    ) {
        let mut m = members(vec![member("n2", &[])]);
        let load = NodeLoad { cpu, memory, disk };
        if measured {
            m.get_mut(&n("n2")).unwrap().load = Some(load);
        }
        let threshold = f64::from(threshold) / 1000.0;
        let highest = f64::from(cpu.max(memory).max(disk)) / 1000.0;
        let deferred = over_load_threshold(&m, &step("a", "n1", "n2", "move"), threshold);
        prop_assert_eq!(
            deferred.is_some(),
            measured && threshold > 0.0 && highest > threshold,
            "{:?}", deferred
        );
    }
}
