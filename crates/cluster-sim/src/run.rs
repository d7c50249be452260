//! One seeded run: start the nodes, drive the fault schedule, sample and check, then the
//! liveness phase.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::Result;
use cluster_runtime::{App, PlatformOptions};
use cluster_testkit::scenario::SimCluster;
use tokio::time::Instant;

use crate::checker::{Checker, Violation};
use crate::options::{PlantedBug, SimOptions};
use crate::plan::{Fault, plan};
use crate::register::{Register, Write};
use crate::rng::SplitMix64;
use crate::tamper;
use crate::trace::Trace;
use crate::world::{LiveNode, Shared, World};

/// The platform name of every simulated node.
const PLATFORM: &str = "sim";
/// How often the sampler checks every node's `is_leader()`.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How often a leader's writer presents a write to the register.
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// Upper bound of a node (re)start; longer is reported as a violation.
const START_WITHIN: Duration = Duration::from_secs(30);

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options the seed expanded into.
    pub options: SimOptions,
    /// Faults injected.
    pub faults: u64,
    /// Simulated time of the whole run.
    pub simulated: Duration,
    /// Hash of the trace (same seed, same hash).
    pub trace_hash: u64,
    /// Events in the trace.
    pub events: usize,
    /// Register writes accepted and refused (all apps).
    pub writes_accepted: u64,
    /// Register writes refused as stale.
    pub writes_refused: u64,
    /// Leadership terms seen.
    pub terms: u64,
    /// Samples with two leaders inside a tampering window (outside the guarantee, counted).
    pub excused_overlaps: u64,
    /// Time from the last heal until every app had a leader, if reached within the bound.
    pub recovery: Option<Duration>,
    /// Every broken invariant, with a trace excerpt each.
    pub violations: Vec<(Violation, Vec<String>)>,
    /// The whole trace.
    pub trace: Trace,
}

impl Report {
    /// The one command that reproduces this run.
    pub fn command(&self) -> String {
        let mut cmd = format!("cargo xtask sim --seed {}", self.options.seed);
        let minutes = self.options.duration.as_secs() / 60;
        if minutes != crate::options::DEFAULT_MINUTES {
            cmd.push_str(&format!(" --minutes {minutes}"));
        }
        if let Some(bug) = self.options.bug {
            cmd.push_str(&format!(" --plant {}", bug.name()));
        }
        cmd
    }
}

/// Runs `options` on a fresh current-thread runtime with paused time.
pub fn run_seed(options: SimOptions) -> std::io::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    // Every node's retry jitter is drawn on this thread: seed it, or runs of one seed differ.
    cluster_runtime::seed_thread_jitter(SplitMix64::new(options.seed).fork("jitter").next_u64());
    Ok(rt.block_on(run(options)))
}

fn new_apps(names: &[String]) -> Result<Vec<App>> {
    names.iter().map(App::singleton).collect()
}

/// The writer of `app` on `node`: while the app is leader, presents `(epoch, node, n)` to the
/// register every [`WRITE_EVERY`]; each write travels for a seeded delay.
fn spawn_writer(
    world: &Shared,
    options: &SimOptions,
    node: &str,
    app: App,
    lease_ttl: Duration,
) -> tokio::task::JoinHandle<()> {
    let world = world.clone();
    let node = node.to_owned();
    let name = app.name().to_string();
    let ignore_demotion = options.bug.is_some();
    let max_delay = options.max_write_delay.as_millis() as u64;
    let mut rng = SplitMix64::new(options.seed).fork(&format!("writer/{node}/{name}"));
    tokio::spawn(async move {
        let mut n = 0u64;
        let mut last: Option<(cluster_core::Epoch, Instant)> = None;
        loop {
            tokio::time::sleep(WRITE_EVERY).await;
            let token = app.fencing_token().filter(|_| app.is_leader());
            if let Some(e) = token {
                last = Some((e, Instant::now()));
            }
            let epoch = token.or_else(|| {
                last.filter(|(_, t)| ignore_demotion && t.elapsed() < lease_ttl)
                    .map(|(e, _)| e)
            });
            let Some(epoch) = epoch else { continue };
            n += 1;
            let w = Write {
                epoch,
                node: node.clone(),
                n,
            };
            let delay = Duration::from_millis(rng.range(0, max_delay));
            let world = world.clone();
            let name = name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                world.lock().deliver(&name, w);
            });
        }
    })
}

/// Starts `node` (with new app instances) and registers it with the checker.
async fn start_node(
    cluster: &mut SimCluster,
    world: &Shared,
    options: &SimOptions,
    node: &str,
    lease_ttl: Duration,
) -> std::result::Result<(), String> {
    let apps = new_apps(&options.app_names()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(START_WITHIN, cluster.start_node(node, apps)).await {
        Err(_) => Err(format!("{node} did not start within {START_WITHIN:?}")),
        Ok(Err(e)) => Err(format!("{node} failed to start: {e}")),
        Ok(Ok(started)) => {
            let apps = started.apps.clone();
            let writers = apps
                .values()
                .map(|a| spawn_writer(world, options, node, a.clone(), lease_ttl))
                .collect();
            let mut w = world.lock();
            w.live.insert(node.to_owned(), LiveNode { apps, writers });
            w.record(format!("started {node}"));
            Ok(())
        }
    }
}

/// One step of the schedule.
enum Step {
    Begin(Fault),
    End(Fault),
}

async fn run(options: SimOptions) -> Report {
    let platform_options = PlatformOptions::fast();
    let timing = platform_options.election;
    let lease_ttl = timing.lease_ttl;
    let start = Instant::now();
    let apps = options.app_names();
    let nodes = options.node_names();
    let unfenced = options.bug == Some(PlantedBug::UnfencedWrites);
    let world = Shared::new(World {
        start,
        trace: Trace::default(),
        checker: Checker::new(&apps, lease_ttl),
        registers: apps
            .iter()
            .map(|a| (a.clone(), Register::new(unfenced)))
            .collect(),
        live: BTreeMap::new(),
        faults: 0,
    });
    world.lock().record(format!("options {options}"));
    let mut cluster = SimCluster::new(PLATFORM, platform_options.clone());
    for node in &nodes {
        if let Err(e) = start_node(&mut cluster, &world, &options, node, lease_ttl).await {
            let mut w = world.lock();
            let (at, index) = (w.now(), w.trace.len());
            w.checker.violation(at, index, e);
        }
    }
    let sampler = {
        let world = world.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                world.lock().sample();
            }
        })
    };

    let mut steps: BTreeMap<(Duration, u64), Step> = BTreeMap::new();
    for (i, p) in plan(&options).into_iter().enumerate() {
        let i = i as u64;
        if !p.fault.span().is_zero() {
            steps.insert(
                (p.at + p.fault.span(), 2 * i + 1),
                Step::End(p.fault.clone()),
            );
        }
        steps.insert((p.at, 2 * i), Step::Begin(p.fault));
    }
    for ((at, _), step) in steps {
        tokio::time::sleep_until(start + at).await;
        match step {
            Step::Begin(fault) => {
                world.lock().faults += 1;
                begin(&mut cluster, &world, &nodes, &fault).await;
            }
            Step::End(fault) => {
                end(&mut cluster, &world, &options, &fault, lease_ttl).await;
            }
        }
    }

    // Liveness: every app has a leader within T(1+ε) + cooldown + 1 s of the last heal.
    let healed = Instant::now();
    world.lock().record("all faults healed");
    let bound = timing.takeover_after() + timing.cooldown + Duration::from_secs(1);
    let mut recovery = None;
    while healed.elapsed() <= bound {
        tokio::time::sleep(SAMPLE_EVERY).await;
        if world.lock().checker.apps_with_one_leader() == apps.len() {
            recovery = Some(healed.elapsed());
            break;
        }
    }
    sampler.abort();
    let mut w = world.lock();
    match recovery {
        Some(r) => w.record(format!("every app has a leader after {r:?}")),
        None => {
            let (at, index) = (w.now(), w.trace.len().saturating_sub(1));
            let states = election_states(&w);
            w.checker.violation(
                at,
                index,
                format!(
                    "liveness: not every app has a leader {bound:?} after the last heal; {states}"
                ),
            );
        }
    }
    for node in w.live.values() {
        node.writers.iter().for_each(|h| h.abort());
    }
    for name in cluster.names() {
        cluster.crash_node(&name);
    }
    let violations = w
        .checker
        .violations()
        .iter()
        .map(|v| (v.clone(), w.trace.excerpt(v.trace_index + 1, 12).to_vec()))
        .collect();
    Report {
        faults: w.faults,
        simulated: w.now(),
        trace_hash: w.trace.hash(),
        events: w.trace.len(),
        writes_accepted: w
            .registers
            .values()
            .map(|r| r.accepted().len() as u64)
            .sum(),
        writes_refused: w.registers.values().map(Register::refused).sum(),
        terms: w.checker.terms(),
        excused_overlaps: w.checker.excused_overlaps(),
        recovery,
        violations,
        trace: std::mem::take(&mut w.trace),
        options,
    }
}

async fn begin(cluster: &mut SimCluster, world: &Shared, nodes: &[String], fault: &Fault) {
    world.lock().record(format!("fault {fault}"));
    match fault {
        Fault::Partition { node, .. } => cluster.network.partition(node),
        Fault::KvDelay { node, delay, .. } => cluster.network.set_delay(node, *delay),
        Fault::Crash { node, .. } => {
            if let Some(live) = world.lock().live.remove(node) {
                live.writers.iter().for_each(|h| h.abort());
            }
            if cluster.names().contains(node) {
                cluster.crash_node(node);
            }
        }
        Fault::Tamper { app, what } => {
            let outcome = tamper::apply(&cluster.network, PLATFORM, app, nodes, *what).await;
            let mut w = world.lock();
            let at = w.now();
            if !matches!(
                what,
                crate::plan::Tamper::RaiseFloor | crate::plan::Tamper::DeleteFloor
            ) {
                w.checker.tampered(app, at);
            }
            w.record(format!("tamper {app} {what:?}: {outcome}"));
        }
    }
}

async fn end(
    cluster: &mut SimCluster,
    world: &Shared,
    options: &SimOptions,
    fault: &Fault,
    lease_ttl: Duration,
) {
    world.lock().record(format!("heal {fault}"));
    match fault {
        Fault::Partition { node, .. } => cluster.network.heal(node),
        Fault::KvDelay { node, .. } => cluster.network.set_delay(node, Duration::ZERO),
        Fault::Crash { node, .. } => {
            cluster.network.heal(node);
            if let Err(e) = start_node(cluster, world, options, node, lease_ttl).await {
                let mut w = world.lock();
                let (at, index) = (w.now(), w.trace.len().saturating_sub(1));
                w.checker.violation(at, index, e);
            }
        }
        Fault::Tamper { .. } => {}
    }
}

/// What every live node believes about every app (for a liveness report).
fn election_states(w: &World) -> String {
    let mut out = Vec::new();
    for (node, live) in &w.live {
        for (app, a) in &live.apps {
            let state = a.election_state();
            out.push(format!(
                "{node}/{app}: is_leader={} token={:?} leader={:?} leading={:?} candidate={:?}",
                a.is_leader(),
                a.fencing_token(),
                a.leader(),
                state.as_ref().map(|s| s.leading.as_ref().map(|l| l.epoch)),
                state.as_ref().map(|s| s.candidate),
            ));
        }
    }
    out.join("; ")
}
