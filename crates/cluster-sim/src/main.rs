//! `cluster-sim`: runs the deterministic simulator (what `cargo xtask sim` calls).
//!
//! * `--seed N`: one seed, its full report.
//! * `--seeds N [--start S]`: N seeds from S (default 0), one line each and a summary.
//! * `--trace`: with `--seed`, print the whole trace first.
//! * `--minutes M`: simulated length of each run's fault phase (default 5).
//! * `--plant unfenced-writes|ignore-demotion`: with `--seed`, run with a planted bug (to see
//!   the checker report it).
//!
//! `CLUSTER_SIM_LOG=<filter>` prints the platforms' logs (tracing `EnvFilter` syntax).
//!
//! Exits with status 1 when any invariant broke.

use std::process::ExitCode;
use std::time::Duration;

use cluster_sim::options::DEFAULT_MINUTES;
use cluster_sim::summary::run_seeds;
use cluster_sim::{PlantedBug, SimOptions, run_seed};

const USAGE: &str =
    "usage: cluster-sim (--seed N [--trace] [--plant BUG] | --seeds N [--start S]) [--minutes M]";

fn value(args: &[String], flag: &str) -> Result<Option<u64>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{flag} needs a number")),
    }
}

fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("CLUSTER_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| {
        Ok::<_, String>((
            value(&args, "--seed")?,
            value(&args, "--seeds")?,
            value(&args, "--start")?.unwrap_or(0),
            value(&args, "--minutes")?.unwrap_or(DEFAULT_MINUTES),
        ))
    })();
    let (seed, seeds, start, minutes) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let duration = Duration::from_secs(minutes * 60);
    let bug = match args.iter().position(|a| a == "--plant") {
        None => None,
        Some(i) => match args.get(i + 1).and_then(|n| PlantedBug::from_name(n)) {
            Some(b) => Some(b),
            None => {
                eprintln!("--plant needs unfenced-writes or ignore-demotion");
                return ExitCode::from(2);
            }
        },
    };
    let ok = match (seed, seeds) {
        (Some(seed), _) => match run_seed(SimOptions {
            bug,
            ..SimOptions::from_seed(seed, duration)
        }) {
            Ok(report) => {
                if args.iter().any(|a| a == "--trace") {
                    report.trace.lines().iter().for_each(|l| println!("{l}"));
                }
                println!("{report}");
                report.violations.is_empty()
            }
            Err(e) => {
                eprintln!("cannot build the runtime: {e}");
                false
            }
        },
        (None, Some(count)) => {
            let summary = run_seeds(start, count, duration, |r| {
                println!("{r}");
            });
            match summary {
                Ok(s) => {
                    println!("SUMMARY {s}");
                    s.violations == 0
                }
                Err(e) => {
                    eprintln!("cannot build the runtime: {e}");
                    false
                }
            }
        }
        (None, None) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
