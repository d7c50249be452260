//! `cluster`: the daemon (`cluster run`) and the admin CLI of the cluster platform.
//!
//! Admin commands talk to running daemons over NATS request/reply (or to the dev daemon's
//! local socket with `--dev`); they never start a node. Exit codes: 0 ok, 1 error, 2 not
//! available in this build yet, 3 unknown app or node, 4 invalid usage or configuration
//! (docs/CLI.md).

mod admin;
mod audit;
mod auth;
mod cli;
mod config;
mod daemon;
mod doctor;
mod exit;
mod observe;
mod output;
mod settings;
mod telemetry;

use std::time::Duration;

use clap::{CommandFactory, Parser};

use cli::{AppCommand, Cli, Command, NodeCommand, RebalanceCommand};
use exit::{CliResult, Code, Failure};
use output::print_failure;
use settings::Settings;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Code::Ok,
                _ => Code::Invalid,
            };
            let _ = e.print();
            std::process::exit(code as i32);
        }
    };
    let daemon = matches!(cli.command, Command::Run(_));
    if !daemon {
        restore_default_sigpipe();
    }
    init_logs(cli.global.verbose, daemon);
    let json = cli.global.json;
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch(cli)),
        Err(e) => Err(Failure::new(
            Code::Error,
            format!("cannot start the async runtime: {e}"),
        )),
    };
    match result {
        Ok(()) => std::process::exit(Code::Ok as i32),
        Err(f) => {
            print_failure(&f, json);
            std::process::exit(f.code as i32);
        }
    }
}

/// Lets an admin command end quietly when its output pipe closes (`cluster status | head -1`),
/// as Unix tools do: the kernel's SIGPIPE ends the process (shell status 141) instead of
/// `println!` panicking on `EPIPE`. The daemon keeps Rust's default (SIGPIPE ignored): it writes
/// to sockets and must see `EPIPE` as an error, never die of it.
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: called at the start of `main`, before any other thread exists; `signal` with
    // `SIG_DFL` only changes this process's disposition of SIGPIPE and touches no memory.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logs(verbose: bool, daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (verbose, daemon) {
        (true, _) => "debug",
        (false, true) => "info",
        (false, false) => "warn",
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // An empty slot for the OpenTelemetry layer, filled by the daemon when configured.
    let (otel, slot) = tracing_subscriber::reload::Layer::new(None);
    telemetry::set_slot(slot);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(filter)
        .with(fmt)
        .try_init();
}

async fn dispatch(cli: Cli) -> CliResult {
    let g = &cli.global;
    match cli.command {
        Command::Version => return version(g.json),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "cluster", &mut std::io::stdout());
            return Ok(());
        }
        _ => {}
    }
    let settings = Settings::resolve(g)?;
    match cli.command {
        Command::Run(args) => daemon::run(&settings, &args).await,
        Command::Check => check(&settings),
        Command::Status => admin_cmd(&settings, Admin::Status).await,
        Command::Health => admin_cmd(&settings, Admin::Health).await,
        Command::Stepdown(args) => {
            let wait = match &args.wait {
                Some(w) => config::parse_duration(w)
                    .map_err(|e| Failure::new(Code::Invalid, format!("--wait: {e}")))?,
                None => Duration::from_secs(10),
            };
            if args.app.is_none() {
                settings.node()?; // fail on an unusable node id before connecting
            }
            admin_cmd(&settings, Admin::Stepdown(args.app, wait)).await
        }
        Command::Node(NodeCommand::List) => admin_cmd(&settings, Admin::NodeList).await,
        Command::Node(NodeCommand::Status { id }) => {
            admin_cmd(&settings, Admin::NodeStatus(id)).await
        }
        Command::App(AppCommand::List) => admin_cmd(&settings, Admin::AppList).await,
        Command::App(AppCommand::Status { app, partitions }) => {
            admin_cmd(&settings, Admin::AppStatus(app, partitions)).await
        }
        Command::Node(cmd) => admin_cmd(&settings, Admin::Node(cmd)).await,
        Command::App(cmd) => admin_cmd(&settings, Admin::App(cmd)).await,
        Command::Rebalance(args) => match args.command {
            Some(RebalanceCommand::Status) => admin_cmd(&settings, Admin::RebalanceStatus).await,
            Some(RebalanceCommand::Cancel) => admin_cmd(&settings, Admin::RebalanceCancel).await,
            Some(RebalanceCommand::Approve { app }) => {
                admin_cmd(&settings, Admin::RebalanceApprove(app)).await
            }
            None => {
                if args.all == args.app.is_some() {
                    return Err(Failure::new(
                        Code::Invalid,
                        "rebalance: give exactly one of --all and --app <app> (add --dry-run to only see the plan)",
                    ));
                }
                admin_cmd(&settings, Admin::Rebalance(args.app, args.dry_run)).await
            }
        },
        Command::Placement(args) => admin_cmd(&settings, Admin::Placement(args.from)).await,
        Command::Config(cmd) => admin_cmd(&settings, Admin::Config(cmd)).await,
        Command::Snapshot(cmd) => admin_cmd(&settings, Admin::Snapshot(cmd)).await,
        Command::Wal(cmd) => admin_cmd(&settings, Admin::Wal(cmd)).await,
        Command::Services(_) => Err(Failure::not_available("services", "the service registry")),
        Command::Leaf(_) => Err(Failure::not_available(
            "leaf",
            "leaf-platform (multi-zone) support",
        )),
        Command::Audit(args) => audit::run(&settings, &args).await,
        Command::Doctor { monitor } => doctor::run(&settings, monitor.as_deref()).await,
        Command::Auth(cli::AuthCommand::GenConfig {
            managed: true, out, ..
        }) => auth::gen_managed(&settings, &out),
        Command::Auth(cli::AuthCommand::GenConfig {
            nodes,
            apps,
            out,
            tls,
            ..
        }) => auth::gen_config(&settings, &nodes, &apps, &out, tls),
        Command::Auth(cli::AuthCommand::Mint {
            identity,
            account_key,
            ttl,
            apps,
            out,
        }) => auth::mint(&settings, &identity, &account_key, &ttl, &apps, &out),
        Command::Kill { node } => dev_control(&settings, "kill", &node).await,
        Command::Restart { node } => dev_control(&settings, "restart", &node).await,
        Command::Version | Command::Completions { .. } => Ok(()),
    }
}

enum Admin {
    Status,
    Health,
    Stepdown(Option<String>, Duration),
    NodeList,
    NodeStatus(String),
    AppList,
    AppStatus(String, bool),
    Node(NodeCommand),
    App(AppCommand),
    Rebalance(Option<String>, bool),
    Placement(Option<String>),
    RebalanceStatus,
    RebalanceCancel,
    RebalanceApprove(String),
    Config(cli::ConfigCommand),
    Snapshot(cli::SnapshotCommand),
    Wal(cli::WalCommand),
}

async fn admin_cmd(settings: &Settings, cmd: Admin) -> CliResult {
    admin::with_channel(settings, |channel| async move {
        let r = match &cmd {
            Admin::Status => admin::status(settings, &channel).await,
            Admin::Health => admin::health(settings, &channel).await,
            Admin::Stepdown(app, wait) => {
                admin::stepdown(settings, &channel, app.as_deref(), *wait).await
            }
            Admin::NodeList => admin::node_list(settings, &channel).await,
            Admin::NodeStatus(id) => admin::node_status(settings, &channel, id).await,
            Admin::AppList => admin::app_list(settings, &channel).await,
            Admin::AppStatus(app, map) => admin::app_status(settings, &channel, app, *map).await,
            Admin::Node(cmd) => admin::node_command(settings, &channel, cmd).await,
            Admin::App(cmd) => admin::app_command(settings, &channel, cmd).await,
            Admin::Placement(from) => {
                admin::placement::show(settings, &channel, from.as_deref()).await
            }
            Admin::Snapshot(cmd) => admin::snapshot::run(settings, &channel, cmd).await,
            Admin::Wal(cmd) => admin::wal::run(settings, &channel, cmd).await,
            Admin::Rebalance(app, dry_run) => {
                admin::placement::rebalance(settings, &channel, app.as_deref(), *dry_run).await
            }
            Admin::RebalanceStatus => admin::auto_rebalance::status(settings, &channel).await,
            Admin::RebalanceCancel => admin::auto_rebalance::cancel(settings, &channel).await,
            Admin::RebalanceApprove(app) => {
                admin::auto_rebalance::approve(settings, &channel, app).await
            }
            Admin::Config(cli::ConfigCommand::Set { key, value }) => {
                admin::auto_rebalance::config_set(settings, &channel, key, value).await
            }
            Admin::Config(cli::ConfigCommand::Get) => {
                admin::auto_rebalance::config_get(settings, &channel).await
            }
        };
        (channel, r)
    })
    .await
}

/// `cluster --dev kill|restart <node>`: crash or restart a node of the dev platform.
async fn dev_control(settings: &Settings, what: &str, node: &str) -> CliResult {
    if !settings.global.dev {
        return Err(Failure::new(
            Code::Invalid,
            format!(
                "`cluster {what}` simulates a crash in dev mode only: `cluster --dev {what} {node}` \
                 (stop a real daemon with SIGTERM, or crash it with SIGKILL)"
            ),
        ));
    }
    let node = cluster::NodeId::new(node)
        .map_err(|e| Failure::new(Code::Invalid, format!("{node:?}: {e}")))?;
    let request = match what {
        "kill" => admin::BridgeRequest::Kill { node: node.clone() },
        _ => admin::BridgeRequest::Restart { node: node.clone() },
    };
    let channel = admin::Channel::open(settings).await?;
    let admin::Channel::Dev { socket } = &channel else {
        return Err(Failure::new(Code::Invalid, "dev mode needs the dev socket"));
    };
    admin::dev_control(socket, &request).await?;
    let done = if what == "kill" {
        "crashed (its lease and membership expire as after a real crash)"
    } else {
        "restarted"
    };
    if settings.global.json {
        return output::print_json(&serde_json::json!({
            "v": output::JSON_VERSION, what: node.as_str(), "ok": true,
        }));
    }
    println!("{node} {done}");
    Ok(())
}

/// `cluster check`: the configuration was loaded and validated by `Settings::resolve`.
fn check(settings: &Settings) -> CliResult {
    let c = &settings.config;
    if settings.global.config.is_none() {
        return Err(Failure::new(
            Code::Invalid,
            "nothing to check: pass --config <file> (or CLUSTER_CONFIG)",
        ));
    }
    if settings.global.json {
        return output::print_json(&serde_json::json!({
            "v": output::JSON_VERSION, "valid": true, "file": c.file,
            "platform": settings.platform, "apps": c.apps.iter().map(|a| a.name.to_string()).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{}: valid (platform {}, {} app(s))",
        c.file,
        settings.platform,
        c.apps.len()
    );
    Ok(())
}

fn version(json: bool) -> CliResult {
    let version = env!("CARGO_PKG_VERSION");
    let build = option_env!("CLUSTER_BUILD_VERSION").unwrap_or("dev");
    let protocol = cluster::core::wire::PROTOCOL_VERSION;
    if json {
        return output::print_json(&serde_json::json!({
            "v": output::JSON_VERSION, "version": version, "build": build, "protocol": protocol,
        }));
    }
    println!("cluster {version} (build {build}, protocol {protocol})");
    Ok(())
}
