//! `cluster run`: the daemon.
//!
//! ```text
//! load + validate config (every problem listed, nothing starts) → take the node's lock file
//! (a second daemon of the node on this host stops here) → connect to NATS (retrying
//! until a signal) → build the platform, register the declared apps → run until SIGTERM/SIGINT
//! → graceful shutdown bounded by shutdown_timeout (+5 s); a second signal exits at once
//! ```

pub(crate) mod backends;
mod dev;
mod lock;
mod signals;
mod systemd;
pub(crate) mod vip;
pub(crate) mod wal;

use std::time::Duration;

use cluster::placement::AppPlacementExt;
use cluster::{App, Labels, Platform, PlatformOptions};
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::config::{AppConfig, Config};
use crate::exit::{CliResult, Code, Failure};
use crate::settings::Settings;

pub(crate) use dev::run_dev;

/// Extra time over `shutdown_timeout` before the daemon gives up waiting for the platform.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Builds the apps declared in the configuration (`wal`: how to reach NATS for
/// `[apps.sqlite]`; `None` in dev mode, where SQLite replication is refused).
pub(crate) async fn build_apps(
    apps: &[AppConfig],
    wal: Option<&wal::WalContext<'_>>,
) -> CliResult<Vec<App>> {
    let mut out = Vec::new();
    for a in apps {
        let app = App::new(a.name.as_str(), a.mode)?;
        let name = a.name.clone();
        app.on_active(move |ctx| {
            let name = name.clone();
            async move {
                info!(app = %name, epoch = ?ctx.epoch, "this node is now the leader");
                Ok(())
            }
        });
        let name = a.name.clone();
        app.on_passive(move |_ctx| {
            let name = name.clone();
            async move {
                info!(app = %name, "this node is no longer the leader");
                Ok(())
            }
        });
        if let Some(rules) = &a.placement {
            let rules = rules.clone();
            app.edit_placement(|s| *s = rules)?;
        }
        // Order: promotion of the database runs first, then the VIP, then the backend.
        if let Some(sqlite) = &a.sqlite {
            let Some(ctx) = wal else {
                return Err(Failure::new(
                    Code::Invalid,
                    format!(
                        "app {}: [apps.sqlite] replicates through NATS JetStream and is not \
                         available with --dev",
                        a.name
                    ),
                ));
            };
            wal::attach(&app, sqlite, ctx).await?;
        }
        // Order: the VIP is claimed before the backend starts and released after it stopped.
        if let Some(v) = &a.vip {
            vip::attach(&app, v).map_err(|e| {
                Failure::new(Code::Error, format!("app {}: VIP {}: {e}", a.name, v.cidr))
            })?;
        }
        if let Some(backend) = &a.backend {
            backends::attach(&app, a, backend);
        }
        out.push(app);
    }
    Ok(out)
}

/// Labels of the file plus `--label key=value` flags.
pub(crate) fn labels(config: &Config, args: &RunArgs) -> CliResult<Labels> {
    let mut labels = config.labels.clone();
    for l in &args.labels {
        let Some((k, v)) = l.split_once('=') else {
            return Err(Failure::new(
                Code::Invalid,
                format!("--label {l:?}: write key=value"),
            ));
        };
        labels
            .insert(k, v)
            .map_err(|e| Failure::new(Code::Invalid, format!("--label {l:?}: {e}")))?;
    }
    Ok(labels)
}

/// `cluster run` over NATS.
pub(crate) async fn run(settings: &Settings, args: &RunArgs) -> CliResult {
    if settings.global.dev {
        return run_dev(settings, args).await;
    }
    let node = settings.node()?;
    let config = &settings.config;
    let labels = labels(config, args)?;
    // Before connecting: a second daemon of this node on this host stops here.
    let host_lock = lock::acquire(settings, &node)?;
    let mut signals = signals::Signals::install()?;
    let options = settings.connect_options(
        &format!("cluster-{node}"),
        &cluster::nats::security::Role::Node(node.clone()),
    );
    let servers = settings.nats.servers.join(",");
    let conn = loop {
        match cluster::nats::connect(options.clone()).await {
            Ok(c) => break c,
            Err(e @ (cluster::Error::InvalidArgument(_) | cluster::Error::Unsupported(_))) => {
                return Err(Failure::new(
                    Code::Invalid,
                    format!("NATS at {servers}: {e}"),
                ));
            }
            Err(e) => {
                warn!(%servers, error = %e, "cannot connect to NATS; retrying in 1s (Ctrl-C to stop)");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = signals.next() => return Err(Failure::new(Code::Error, "stopped before NATS was reachable")),
                }
            }
        }
    };
    let replicas = settings.nats.replicas.unwrap_or(1);
    // Before anything records a metric (WAL resources describe theirs when built).
    let _telemetry = match &config.observe.otlp_endpoint {
        Some(endpoint) => Some(crate::telemetry::start(endpoint, node.as_str())?),
        None => None,
    };
    let prometheus = crate::observe::install_metrics(config)?;
    let wal_ctx = wal::WalContext {
        conn: &conn,
        platform: settings.platform.as_str(),
        node: node.as_str(),
        replicas,
    };
    let apps = build_apps(&config.apps, Some(&wal_ctx)).await?;
    let audit = cluster::nats::audit(
        &conn,
        settings.platform.as_str(),
        cluster::nats::AuditStreamOptions {
            replicas,
            max_age: config
                .observe
                .audit_max_age
                .unwrap_or(cluster::nats::AuditStreamOptions::default().max_age),
        },
    )
    .await?;
    let platform =
        cluster::nats::platform(&conn, settings.platform.as_str(), node.as_str(), replicas)?
            .options(PlatformOptions {
                replicas,
                address: config.address.clone().unwrap_or_default(),
                ..config.options.clone()
            })
            .labels(labels)
            .audit(audit)
            .planner(cluster::placement::planner())
            .load_probe(std::sync::Arc::new(cluster::load::ProcLoadProbe))
            .host_lock(host_lock)
            .build()?;
    for app in &apps {
        platform.register(app)?;
    }
    let nats = conn.clone();
    // The metrics/health ports are bound once the platform started, so a second daemon with
    // the same node id fails on that (`NodeIdInUse`), not on a port the first one holds.
    let serve = || {
        crate::observe::start(
            config,
            prometheus,
            &platform,
            &apps,
            Some(std::sync::Arc::new(move || nats.is_connected())),
        )
    };
    info!(platform = %settings.platform, %node, nats = %servers, apps = apps.len(), "starting");
    let result = run_until_signal(
        &platform,
        &apps,
        &mut signals,
        config.options.shutdown_timeout,
        serve,
    )
    .await;
    let _ = conn.close().await;
    result
}

/// Runs `platform` until a signal, then shuts it down gracefully within `shutdown_timeout`
/// (+ grace); a second signal exits the process at once. `serve` runs once the platform
/// started (its node id checked); what it returns is kept until the end. If it fails, the
/// platform shuts down and its error is returned.
pub(crate) async fn run_until_signal<T, Fut>(
    platform: &Platform,
    apps: &[App],
    signals: &mut signals::Signals,
    shutdown_timeout: Duration,
    serve: impl FnOnce() -> Fut,
) -> CliResult
where
    Fut: std::future::Future<Output = CliResult<T>>,
{
    let runner = platform.clone();
    let mut task = tokio::spawn(async move { runner.run().await });
    let notifier = systemd::Notifier::start(platform, apps);
    let mut started = tokio::select! {
        r = platform.wait_started() => r.is_ok(),
        r = &mut task => return finished(r),
        s = signals.next() => {
            info!(signal = s, "signal before start completed; shutting down");
            false
        }
    };
    let mut failed = None;
    let mut _served = None;
    if started {
        match serve().await {
            Ok(s) => _served = Some(s),
            Err(e) => {
                started = false;
                failed = Some(e);
            }
        }
    }
    if started {
        eprintln!(
            "node {} of platform {} is running; stop with Ctrl-C or SIGTERM",
            platform.node_id(),
            platform.name()
        );
        tokio::select! {
            r = &mut task => return finished(r),
            s = signals.next() => info!(signal = s, "shutting down gracefully (a second signal forces exit)"),
        }
    }
    notifier.stopping();
    platform.shutdown();
    let bound = shutdown_timeout + SHUTDOWN_GRACE;
    tokio::select! {
        r = &mut task => match failed {
            Some(e) => Err(e),
            None => finished(r),
        },
        _ = tokio::time::sleep(bound) => {
            platform.abort();
            Err(Failure::new(Code::Error, format!("graceful shutdown did not finish within {bound:?}; abandoned")))
        }
        s = signals.next() => {
            eprintln!("second signal ({s}): forcing exit");
            std::process::exit(130);
        }
    }
}

fn finished(r: Result<cluster::Result<()>, tokio::task::JoinError>) -> CliResult {
    match r {
        Ok(Ok(())) => {
            info!("stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(Failure::new(
            Code::Error,
            format!("the platform task failed: {e}"),
        )),
    }
}
