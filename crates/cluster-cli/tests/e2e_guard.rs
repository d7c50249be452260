//! The deadline guard with the real binary: real nats-server, two real daemons, a Singleton
//! app with a real process backend (`sleep <marker>`, found in /proc and attributed to a daemon
//! by parent pid). The leader daemon is `SIGSTOP`ped for 6 s: its guard must stop its backend
//! before the standby starts one (never two backends at once), and after `SIGCONT` the resumed
//! daemon must not start its backend again while it is not the leader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_testkit::nats_server::NatsServer;
use common::{Daemon, Scratch, cli, wait_for};

/// The fast profile: TTL 3 s, so a standby takes over within a few seconds of a stop.
fn config(platform: &str, nats_url: &str, marker: u64) -> String {
    common::platform_config(platform, nats_url, "5s")
        + &format!(
            r#"[[apps]]
name = "db"
mode = "singleton"
[apps.backend]
type = "process"
command = "sleep"
args = ["{marker}"]
graceful_timeout = "1s"
"#
        )
}

/// One sample: when, and the parent pids (daemons) of the live backends.
type Sample = (Instant, Vec<u32>);

/// Samples the backends every 2 ms into a timeline.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(marker: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let seen: Vec<u32> = common::sleep_processes(marker).into_values().collect();
                out.lock().unwrap().push((Instant::now(), seen));
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

fn logs(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("--- {} ---\n{}", d.node, d.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_sigstopped_leader_never_runs_its_backend_alongside_the_new_leader() {
    let server = NatsServer::start();
    let dir = Scratch::new("guard-sigstop");
    let marker = 8_000_000 + u64::from(std::process::id());
    let cfg = dir.file("cluster.toml", &config("grd", &server.url(), marker));
    let daemons: Vec<Daemon> = ["n1", "n2"]
        .iter()
        .map(|n| Daemon::start(&cfg, n, &dir.0))
        .collect();
    let pid_of = |ppid: u32| daemons.iter().find(|d| d.child.id() == ppid);

    // One backend, on the leader; the standby is up (its member record and campaign).
    let leader_pid = wait_for("the backend on one node", Duration::from_secs(30), || {
        let b = common::sleep_processes(marker);
        (b.len() == 1).then(|| *b.values().next().unwrap())
    });
    let leader = pid_of(leader_pid).expect("the backend's parent is a daemon");
    let standby = daemons.iter().find(|d| d.child.id() != leader_pid).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        common::sleep_processes(marker).len(),
        1,
        "{}",
        logs(&daemons)
    );

    let sampler = Sampler::start(marker);
    std::thread::sleep(Duration::from_millis(200));
    leader.signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    leader.signal(libc::SIGCONT);
    let resumed_at = Instant::now();
    // The resumed daemon demotes, sees its backend gone and must not start it again.
    std::thread::sleep(Duration::from_secs(5));
    let samples = sampler.finish();

    let interval = samples
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    let overlap: Vec<&Sample> = samples.iter().filter(|(_, s)| s.len() > 1).collect();
    let old_last = samples
        .iter()
        .filter(|(_, s)| s.contains(&leader_pid))
        .map(|(t, _)| *t)
        .max()
        .expect("the old leader's backend was sampled");
    let new_first = samples
        .iter()
        .filter(|(_, s)| s.contains(&standby.child.id()))
        .map(|(t, _)| *t)
        .min();
    let after_resume: Vec<&Sample> = samples
        .iter()
        .filter(|(t, s)| *t > resumed_at && s.contains(&leader_pid))
        .collect();
    eprintln!(
        "[guard] {} samples, longest interval {} ms; old backend last seen {} ms after SIGSTOP; \
         new backend first seen {:?} ms after SIGSTOP; overlap samples: {}",
        samples.len(),
        interval.as_millis(),
        (old_last - stopped_at).as_millis(),
        new_first.map(|t| (t - stopped_at).as_millis()),
        overlap.len(),
    );
    assert!(
        overlap.is_empty(),
        "two backends ran at once: {:?}\n{}",
        overlap.first(),
        logs(&daemons)
    );
    let new_first = new_first
        .unwrap_or_else(|| panic!("the standby never started its backend\n{}", logs(&daemons)));
    assert!(
        old_last < new_first,
        "the old backend ran after the new one started"
    );
    eprintln!(
        "[guard] gap without a backend: {} ms",
        (new_first - old_last).as_millis()
    );
    assert!(
        old_last < resumed_at - Duration::from_secs(1),
        "the stopped daemon's backend ran until it resumed"
    );
    assert!(
        after_resume.is_empty(),
        "the resumed daemon restarted its backend while not leader\n{}",
        logs(&daemons)
    );
    let b = common::sleep_processes(marker);
    assert_eq!(
        b.values().copied().collect::<Vec<_>>(),
        [standby.child.id()],
        "exactly the new leader's backend runs"
    );
    let log = leader.log_text();
    assert!(
        log.contains("backend.guard.fired"),
        "the resumed daemon did not report the guard:\n{log}"
    );
    // ... and audited it, on the platform's audit stream, as the old leader.
    let cfg_s = cfg.to_str().unwrap();
    wait_for(
        "the backend.guard.fired audit record",
        Duration::from_secs(20),
        || {
            let r = cli(&[
                "--config",
                cfg_s,
                "--json",
                "audit",
                "--category",
                "backend",
                "--limit",
                "100",
            ]);
            let v = (r.code == 0).then(|| r.json())?;
            v["entries"]
                .as_array()?
                .iter()
                .any(|e| {
                    e["action"] == "guard.fired"
                        && e["app"] == "db"
                        && e["node"] == leader.node.as_str()
                })
                .then_some(())
        },
    );
}
