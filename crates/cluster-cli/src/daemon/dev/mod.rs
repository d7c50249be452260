//! `cluster run --dev`: a platform of several nodes (3 by default, `--nodes N`) on the in-memory
//! implementations in this one process, with example apps (nothing to install). Admin commands
//! reach it with `--dev` through a local socket that forwards admin requests over the in-memory
//! network; `cluster --dev kill <node>` and `restart <node>` crash and restart a node, so
//! failover, hand-over, placement and drain can be watched without NATS.

mod bridge;
mod nodes;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster::runtime::AdminClient;
use cluster::{App, Mode, NodeId, PlatformOptions};
use tokio::net::UnixListener;
use tracing::info;

use super::{SHUTDOWN_GRACE, labels, signals::Signals};
use crate::cli::RunArgs;
use crate::exit::{CliResult, Code, Failure};
use crate::settings::Settings;
use nodes::{DevNodes, DevSpec};

/// The most nodes a dev platform runs.
const MAX_NODES: usize = 9;

/// The example apps of dev mode, on `node`: a Singleton `scheduler` (one leader, standbys on
/// the other nodes), a Spread `web` with a `hello` handler (on every node) and a Ring `shards`
/// of 12 partitions spread over the nodes.
pub(super) fn example_apps(node: &NodeId) -> CliResult<Vec<App>> {
    let scheduler = App::singleton("scheduler")?;
    let me = node.clone();
    scheduler.on_active(move |ctx| {
        let me = me.clone();
        async move {
            println!(
                "scheduler: {me} is the leader (fencing token {})",
                ctx.epoch.map(|e| e.to_string()).unwrap_or_default()
            );
            Ok(())
        }
    });
    let me = node.clone();
    scheduler.on_passive(move |_ctx| {
        let me = me.clone();
        async move {
            println!("scheduler: {me} is no longer the leader");
            Ok(())
        }
    });
    let web = App::spread("web")?;
    let me = node.clone();
    web.handle("hello", move |req| {
        let me = me.clone();
        async move {
            Ok(Bytes::from(format!(
                "hello from {} on {me}",
                req.app.name()
            )))
        }
    })?;
    let shards = App::new("shards", Mode::Ring { partitions: 12 })?;
    Ok(vec![scheduler, web, shards])
}

/// The dev nodes' ids: `dev-1` … `dev-N`, or the `--node` id for a single node.
fn node_ids(settings: &Settings, args: &RunArgs) -> CliResult<Vec<NodeId>> {
    let count = args.nodes.unwrap_or(3);
    if !(1..=MAX_NODES).contains(&count) {
        return Err(Failure::new(
            Code::Invalid,
            format!("--nodes {count}: a dev platform runs 1 to {MAX_NODES} nodes"),
        ));
    }
    let named = settings.global.node.is_some() || settings.config.node.is_some();
    if count == 1 && named {
        return Ok(vec![settings.node()?]);
    }
    (1..=count)
        .map(|i| NodeId::new(format!("dev-{i}")).map_err(|e| cluster::Error::from(e).into()))
        .collect()
}

/// Runs the dev platform until a signal.
pub(crate) async fn run_dev(settings: &Settings, args: &RunArgs) -> CliResult {
    let ids = node_ids(settings, args)?;
    let _telemetry = match &settings.config.observe.otlp_endpoint {
        Some(endpoint) => Some(crate::telemetry::start(endpoint, ids[0].as_str())?),
        None => None,
    };
    let prometheus = crate::observe::install_metrics(&settings.config)?;
    // Without a configuration file, the fast election profile: a crash shows a failover
    // within seconds.
    let base = if settings.global.config.is_some() {
        settings.config.options.clone()
    } else {
        PlatformOptions::fast()
    };
    let options = PlatformOptions {
        address: settings.config.address.clone().unwrap_or_default(),
        ..base
    };
    let mut signals = Signals::install()?;
    let network = cluster::dev::Network::new();
    let nodes = Arc::new(DevNodes::new(
        network.clone(),
        DevSpec {
            platform: settings.platform.as_str().to_owned(),
            options: options.clone(),
            labels: labels(&settings.config, args)?,
            apps: settings.config.apps.clone(),
        },
        ids.clone(),
    ));
    let socket = settings.dev_socket();
    let listener = bind(&socket)?;
    for id in &ids {
        nodes.start(id).await?;
    }
    // The observability endpoints (metrics, health) report on the first node.
    let apps = nodes.app_list().await?;
    let _servers = match nodes.platform(&ids[0]) {
        Some(p) => {
            Some(crate::observe::start(&settings.config, prometheus, &p, &apps, None).await?)
        }
        None => None,
    };
    let client = AdminClient::new(network.transport("_dev-bridge"), settings.platform.clone())
        .with_gather(Duration::from_millis(300));
    let bridge = tokio::spawn(bridge::serve(listener, client, nodes.clone()));
    print_banner(settings, &ids, &socket, &apps);
    eprintln!(
        "dev platform {} is running; stop with Ctrl-C or SIGTERM",
        settings.platform
    );
    let signal = signals.next().await;
    info!(signal, "shutting down the dev platform");
    nodes
        .shutdown(options.shutdown_timeout + SHUTDOWN_GRACE)
        .await;
    bridge.abort();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn bind(socket: &Path) -> CliResult<UnixListener> {
    if socket.exists() {
        // A live dev daemon answers on it; a stale file from a crashed one does not.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Failure::new(
                Code::Error,
                format!(
                    "a dev daemon already runs on {}; stop it, or pick another --platform or --dev-socket",
                    socket.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(socket);
    }
    UnixListener::bind(socket).map_err(|e| {
        Failure::new(
            Code::Error,
            format!(
                "cannot listen on {}: {e}; pass --dev-socket <path>",
                socket.display()
            ),
        )
    })
}

fn print_banner(settings: &Settings, ids: &[NodeId], socket: &Path, apps: &[App]) {
    let names: Vec<String> = apps
        .iter()
        .map(|a| format!("{} ({})", a.name(), a.mode()))
        .collect();
    let ids: Vec<&str> = ids.iter().map(NodeId::as_str).collect();
    println!(
        "dev platform {} with {} node(s) {}: in-memory, nothing to install",
        settings.platform,
        ids.len(),
        ids.join(", ")
    );
    println!("apps: {}", names.join(", "));
    println!();
    println!("try, in another terminal:");
    println!("  cluster --dev status                     # members, apps, leaders");
    println!("  cluster --dev app status scheduler       # who leads, who stands by");
    if let Some(second) = ids.get(1) {
        println!("  cluster --dev stepdown --app scheduler   # hand leadership over");
        println!("  cluster --dev kill <leader>              # crash it: watch the failover");
        println!("  cluster --dev restart <leader>           # bring it back");
        println!("  cluster --dev node drain {second}            # move everything off a node");
    }
    println!();
    println!(
        "to go multi-node, run nats-server with JetStream (nats-server -js) and start one daemon per node:"
    );
    println!("  cluster run --config examples/cluster.toml --node node-1");
    println!("  cluster run --config examples/cluster.toml --node node-2");
    println!("  cluster --config examples/cluster.toml status");
    println!(
        "(or `cargo xtask demo` does all of it; admin socket: {})",
        socket.display()
    );
}
