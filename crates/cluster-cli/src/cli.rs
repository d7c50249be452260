//! The command line (clap). Precedence of every setting: flag > environment variable >
//! configuration file > default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The cluster daemon and admin CLI.
#[derive(Debug, Parser)]
#[command(name = "cluster", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct Global {
    /// Configuration file (TOML, see docs/CONFIG.md).
    #[arg(long, global = true, env = "CLUSTER_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222].
    #[arg(long, global = true, env = "CLUSTER_NATS", value_name = "URLS")]
    pub(crate) nats: Option<String>,
    /// NATS credentials: a `.creds` file (JWT + nkey seed).
    #[arg(long, global = true, env = "CLUSTER_NATS_CREDS", value_name = "FILE")]
    pub(crate) nats_creds: Option<PathBuf>,
    /// NATS credentials: an nkey user seed file, as written by `cluster auth gen-config`.
    #[arg(long, global = true, env = "CLUSTER_NATS_NKEY", value_name = "FILE")]
    pub(crate) nats_nkey: Option<PathBuf>,
    /// The NATS identity admin commands use (selects its private inbox): admin or viewer
    /// [default: admin]. The daemon always connects as its node.
    #[arg(long, global = true, env = "CLUSTER_NATS_ROLE", value_name = "ROLE")]
    pub(crate) nats_role: Option<OperatorRole>,
    /// Node id [default: the hostname].
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "CLUSTER_NODE",
        value_name = "ID"
    )]
    pub(crate) node: Option<String>,
    /// Platform name [default: "default"].
    #[arg(
        short = 'p',
        long,
        global = true,
        env = "CLUSTER_PLATFORM",
        value_name = "NAME"
    )]
    pub(crate) platform: Option<String>,
    /// Verbose output (debug logs).
    #[arg(short = 'v', long, global = true, env = "CLUSTER_VERBOSE")]
    pub(crate) verbose: bool,
    /// Machine-readable JSON output (schemas in docs/CLI.md).
    #[arg(long, global = true, env = "CLUSTER_JSON")]
    pub(crate) json: bool,
    /// Dev mode: `run --dev` runs an in-memory platform (3 nodes, `--nodes N`); other commands talk to it.
    #[arg(long, global = true, env = "CLUSTER_DEV")]
    pub(crate) dev: bool,
    /// Local socket of the dev daemon [default: $XDG_RUNTIME_DIR or /tmp, cluster-dev-{platform}.sock].
    #[arg(long, global = true, env = "CLUSTER_DEV_SOCKET", value_name = "PATH")]
    pub(crate) dev_socket: Option<PathBuf>,
    /// How long admin commands wait for daemons (e.g. 5s) [default: 5s].
    #[arg(long, global = true, env = "CLUSTER_TIMEOUT", value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
}

/// Which operator identity admin commands connect as (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OperatorRole {
    /// Read and write admin requests.
    Admin,
    /// Read admin requests only.
    Viewer,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon (a node of the platform) until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Platform status: members, apps, leaders and epochs.
    Status,
    /// Health of every node and app (exit 1 when something is unhealthy).
    Health,
    /// Dev mode only (`cluster --dev kill <node>`): crash a node of the dev platform; its lease
    /// and membership expire as after a real crash.
    Kill {
        /// The dev node (e.g. dev-1).
        node: String,
    },
    /// Dev mode only (`cluster --dev restart <node>`): restart a crashed dev node.
    Restart {
        /// The dev node (e.g. dev-1).
        node: String,
    },
    /// Step down from leadership: of one app (its leader steps down), or every app the
    /// node given by --node leads.
    Stepdown(StepdownArgs),
    /// Node management.
    #[command(subcommand)]
    Node(NodeCommand),
    /// App management.
    #[command(subcommand)]
    App(AppCommand),
    /// Rebalance apps over the nodes.
    Rebalance(RebalanceArgs),
    /// Placement as a node sees it: controller, assignment, pending apps, cordons, drains, moves.
    Placement(PlacementArgs),
    /// Platform configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Snapshots of app data.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Replicated SQLite databases of apps.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Service discovery.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Leaf platforms (multi-zone).
    #[command(subcommand)]
    Leaf(LeafCommand),
    /// Query the audit log.
    Audit(AuditArgs),
    /// Check what this client can reach and say what to fix: server version floor for secure
    /// mode, JetStream fsync policy, bucket replicas vs cluster size, clock (docs/SECURITY.md).
    Doctor {
        /// The server's monitoring URL (http://host:8222), for the fsync, cluster-size and
        /// clock checks.
        #[arg(long, value_name = "URL")]
        monitor: Option<String>,
    },
    /// NATS security: accounts, users and credentials (docs/SECURITY.md).
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Validate a configuration file and exit.
    Check,
    /// Print the version.
    Version,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Write a nats-server `accounts {}` block (one account for the platform, one nkey user per
    /// identity with its permissions) and one seed file per identity (mode 0600). Existing
    /// seed files in the directory are kept.
    GenConfig {
        /// The platform's nodes, comma-separated (e.g. n1,n2,n3); not with --managed.
        #[arg(long, value_name = "IDS", default_value = "")]
        nodes: String,
        /// The platform's apps, comma-separated (their nodes may use their KV buckets; each
        /// gets an `app:{A}` identity).
        #[arg(long, value_name = "NAMES", default_value = "")]
        apps: String,
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Identify users by their TLS client certificate's subject (`CN=node-n1`, `CN=admin`,
        /// `CN=viewer`, `CN=app-db`) instead of nkeys; the server needs
        /// `tls { verify: true, verify_and_map: true }`. No seed files are written.
        #[arg(long)]
        tls: bool,
        /// Managed mode: write the platform's operator, system-account and account keys and
        /// the server's operator configuration (`operator.conf`); identities are then minted
        /// as short-lived JWTs with `cluster auth mint`.
        #[arg(long, conflicts_with = "tls")]
        managed: bool,
    },
    /// Managed mode: mint a `.creds` file (user JWT + seed, mode 0600) for one identity, signed
    /// with the platform's account key; re-run before it expires to refresh it in place.
    Mint {
        /// The identity: node:ID, admin, viewer or app:NAME.
        #[arg(long, value_name = "ID")]
        identity: String,
        /// The platform's account seed (`account-{P}.nk` from `gen-config --managed`).
        #[arg(long, value_name = "FILE")]
        account_key: PathBuf,
        /// How long the credentials are valid (e.g. 1h).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        ttl: String,
        /// Apps whose buckets a node identity may use, comma-separated.
        #[arg(long, value_name = "NAMES", default_value = "")]
        apps: String,
        /// The `.creds` file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `run` flags.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Label of this node (key=value), repeatable; added to the configuration's labels.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// With --dev: how many in-memory nodes to run (1 to 9) [default: 3].
    #[arg(long, value_name = "N")]
    pub(crate) nodes: Option<usize>,
}

/// `stepdown` flags.
#[derive(Debug, Args)]
pub(crate) struct StepdownArgs {
    /// The Singleton app whose leader steps down.
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// How long to wait for the new leader [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub(crate) wait: Option<String>,
}

/// `node` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// List the live nodes.
    List,
    /// Status of one node.
    Status {
        /// The node id.
        id: String,
    },
    /// Cordon a node and move every app off it; completes when it runs nothing.
    Drain {
        /// The node id.
        id: String,
        /// Give up after this long [default: 5m].
        #[arg(long)]
        timeout: Option<String>,
        /// Stop instances that cannot be placed anywhere else (without it they keep running
        /// and the drain times out naming them).
        #[arg(long)]
        force: bool,
        /// At most this many instances migrate at a time [default: all at once].
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        max_concurrent: usize,
    },
    /// Remove the member record of a node that is gone (not renewed); refused, with the
    /// reason, for a live node.
    Remove {
        /// The node id.
        id: String,
    },
    /// Stop placing new instances on a node (it keeps what it runs).
    Cordon {
        /// The node id.
        id: String,
        /// Why (stored in the cordon record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Allow placing apps on a node again (also ends a drain).
    Uncordon {
        /// The node id.
        id: String,
    },
    /// Set (key=value) or remove (key-) labels of a node.
    Label {
        /// The node id.
        id: String,
        /// key=value to set, key- to remove.
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// Wait until a node's instances are settled: running where placed, no pending moves.
    WaitStable {
        /// The node id.
        id: String,
        /// Give up after this long [default: 60s].
        #[arg(long)]
        timeout: Option<String>,
    },
}

/// `app` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AppCommand {
    /// List the apps running on the platform.
    List,
    /// Status of one app: mode, leader, epoch, every instance, the pending reason and, for
    /// Ring apps, partitions per node.
    Status {
        /// The app.
        app: String,
        /// Ring apps: also print the partition → node map.
        #[arg(long)]
        partitions: bool,
    },
    /// Move an app instance to another node.
    Move {
        /// The app.
        app: String,
        /// The node to move from.
        #[arg(long)]
        from: String,
        /// The node to move to (default: the platform chooses).
        #[arg(long)]
        to: Option<String>,
        /// Give up after this long [default: 60s].
        #[arg(long)]
        timeout: Option<String>,
    },
    /// Rebalance the instances of an app.
    Rebalance {
        /// The app (or --all).
        app: Option<String>,
        /// Every app.
        #[arg(long)]
        all: bool,
        /// Show the plan without moving anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drain every node matching a label selector.
    Evacuate {
        /// Label selector (key=value).
        #[arg(long)]
        label: String,
        /// Give up after this long [default: 5m].
        #[arg(long)]
        timeout: Option<String>,
        /// Stop instances that cannot be placed anywhere else.
        #[arg(long)]
        force: bool,
    },
}

/// `rebalance` flags and subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RebalanceArgs {
    /// Status or cancel of an ongoing rebalance.
    #[command(subcommand)]
    pub(crate) command: Option<RebalanceCommand>,
    /// Every app.
    #[arg(long)]
    pub(crate) all: bool,
    /// One app.
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Show the plan without moving anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// `placement` flags.
#[derive(Debug, Args)]
pub(crate) struct PlacementArgs {
    /// The node whose view to show [default: any node].
    #[arg(long, value_name = "NODE")]
    pub(crate) from: Option<String>,
}

/// `rebalance` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RebalanceCommand {
    /// Progress of the ongoing rebalance.
    Status,
    /// Cancel the ongoing rebalance (migrations in flight finish).
    Cancel,
    /// Approve the next migration of an app (migration-policy.require-approval).
    Approve {
        /// The app.
        app: String,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Set a cluster-wide setting (auto-rebalance.enabled, auto-rebalance.threshold,
    /// migration-policy.maintenance-windows, …; see docs/CLI.md).
    Set {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
    /// Show the cluster-wide settings.
    Get,
}

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Create a snapshot of an app's data.
    Create {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// List an app's snapshots.
    List {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Restore a snapshot: through the app's leader, or, when no node leads the database,
    /// on the node given with `--on` (after a confirmation).
    Restore {
        /// The snapshot.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// Restore without a leader, on this node (it must run the app); refused while the app
        /// has a leader.
        #[arg(long)]
        on: Option<String>,
        /// Do not ask for confirmation (restoring without a leader asks).
        #[arg(long)]
        yes: bool,
    },
    /// Delete a snapshot.
    Delete {
        /// The snapshot.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
}

/// `wal` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum WalCommand {
    /// Re-sync the app's standby replicas, also when no node leads: every node running the app
    /// restores the newest snapshot and replays the log (lifting a promotion block); with
    /// `--from`, that node first publishes its own replica as the newest snapshot.
    Resync {
        /// The app.
        app: String,
        /// The node whose replica becomes the source.
        #[arg(long)]
        from: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `services` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// List registered services.
    List,
    /// Show one service.
    Show {
        /// The app.
        app: String,
        /// The service.
        service: String,
    },
    /// Export services for another system.
    Export {
        /// prometheus or consul.
        #[arg(long)]
        format: String,
    },
}

/// `leaf` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum LeafCommand {
    /// List leaf platforms.
    List,
    /// Status of a leaf platform.
    Status {
        /// The leaf platform.
        platform: String,
    },
    /// Ping a leaf platform.
    Ping {
        /// The leaf platform.
        platform: String,
    },
    /// Promote a leaf platform.
    Promote {
        /// The leaf platform.
        platform: String,
    },
}

/// `audit` flags.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Category (placement, node, election, member, operator).
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Only events of this app.
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Only events since (duration, e.g. 1h).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// At most this many records (1–10000; more exist when the output says so).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
    /// Only records after this sequence (the `next_after` of the previous page).
    #[arg(long)]
    pub(crate) after: Option<u64>,
}
