//! `cluster run --dev`: a single-node platform on the in-memory implementations, with example
//! apps (nothing to install). Admin commands reach it with `--dev` through a local socket that
//! forwards admin requests over the in-memory network.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cluster::core::runtime::{AdminClient, AdminTarget};
use cluster::core::wire::admin::AdminError;
use cluster::{App, PlatformOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tracing::debug;

use super::{build_apps, labels, run_until_signal, signals::Signals};
use crate::admin::{BridgeRequest, BridgeResponse};
use crate::cli::RunArgs;
use crate::exit::{CliResult, Code, Failure};
use crate::settings::Settings;

/// The example apps of dev mode: a Singleton `scheduler` and a Spread `web` with a `hello`
/// handler.
fn example_apps() -> CliResult<Vec<App>> {
    let scheduler = App::singleton("scheduler")?;
    scheduler.on_active(|ctx| async move {
        println!(
            "scheduler: this node is the leader (fencing token {})",
            ctx.epoch.map(|e| e.to_string()).unwrap_or_default()
        );
        Ok(())
    });
    scheduler.on_passive(|_ctx| async move {
        println!("scheduler: no longer the leader");
        Ok(())
    });
    let web = App::spread("web")?;
    web.handle("hello", |req| async move {
        Ok(Bytes::from(format!("hello from {}", req.app.name())))
    })?;
    Ok(vec![scheduler, web])
}

/// Runs the dev platform until a signal.
pub(crate) async fn run_dev(settings: &Settings, args: &RunArgs) -> CliResult {
    let node = match (&settings.global.node, &settings.config.node) {
        (None, None) => cluster::NodeId::new("dev-1").map_err(cluster::Error::from)?,
        _ => settings.node()?,
    };
    let _telemetry = match &settings.config.observe.otlp_endpoint {
        Some(endpoint) => Some(crate::telemetry::start(endpoint, node.as_str())?),
        None => None,
    };
    let prometheus = crate::observe::install_metrics(&settings.config)?;
    let apps = if settings.config.apps.is_empty() {
        example_apps()?
    } else {
        build_apps(&settings.config.apps, None).await?
    };
    let mut signals = Signals::install()?;
    let network = cluster::dev::Network::new();
    let platform =
        cluster::placement::dev_platform(&network, settings.platform.as_str(), node.as_str())?
            .options(PlatformOptions {
                address: settings.config.address.clone().unwrap_or_default(),
                ..settings.config.options.clone()
            })
            .labels(labels(&settings.config, args)?)
            .build()?;
    for app in &apps {
        platform.register(app)?;
    }
    let _servers =
        crate::observe::start(&settings.config, prometheus, &platform, &apps, None).await?;
    let socket = settings.dev_socket();
    let client = AdminClient::new(network.transport("_dev-bridge"), settings.platform.clone())
        .with_gather(std::time::Duration::from_millis(300));
    let listener = bind(&socket)?;
    let bridge = tokio::spawn(serve_bridge(listener, client));
    print_banner(settings, &node, &socket, &apps);
    let result = run_until_signal(
        &platform,
        &mut signals,
        settings.config.options.shutdown_timeout,
    )
    .await;
    bridge.abort();
    let _ = std::fs::remove_file(&socket);
    result
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

fn print_banner(settings: &Settings, node: &cluster::NodeId, socket: &Path, apps: &[App]) {
    let names: Vec<String> = apps
        .iter()
        .map(|a| format!("{} ({})", a.name(), a.mode()))
        .collect();
    println!(
        "dev platform {} on node {node}: in-memory, nothing to install",
        settings.platform
    );
    println!("apps: {}", names.join(", "));
    println!();
    println!("try, in another terminal:");
    println!("  cluster --dev status");
    println!("  cluster --dev app status scheduler");
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

/// Serves the dev socket: one JSON request line, one JSON response line per connection.
async fn serve_bridge(listener: UnixListener, client: AdminClient) {
    let client = Arc::new(client);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let client = client.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_str::<BridgeRequest>(&line) {
                Ok(req) => {
                    let target = match req.node {
                        Some(n) => AdminTarget::Node(n),
                        None => AdminTarget::All,
                    };
                    match client.send(&target, &req.request).await {
                        Ok(replies) => BridgeResponse {
                            replies,
                            error: None,
                        },
                        Err(e) => BridgeResponse {
                            replies: Vec::new(),
                            error: Some(AdminError::from_error(&e)),
                        },
                    }
                }
                Err(e) => BridgeResponse {
                    replies: Vec::new(),
                    error: Some(AdminError::from_error(&cluster::Error::Malformed(format!(
                        "bridge request: {e}"
                    )))),
                },
            };
            match serde_json::to_vec(&response) {
                Ok(mut bytes) => {
                    bytes.push(b'\n');
                    let _ = write.write_all(&bytes).await;
                }
                Err(e) => debug!(error = %e, "cannot encode a bridge response"),
            }
        });
    }
}
