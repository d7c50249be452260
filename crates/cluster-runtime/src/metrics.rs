//! Metrics of the runtime through the `metrics` crate facade: no-ops until the application
//! installs a recorder (the daemon installs a Prometheus exporter). Names, labels and meanings
//! are listed in `docs/architecture/observability.md`; [`describe`] registers the help texts.
//!
//! Every series is computed on every node, so the leadership series work when there is no
//! leader (alert on `sum by (app) (gc_election_is_leader) != 1`).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// 1 while this node is the leader of the app (`App::is_leader`), else 0. Labels: `app`.
pub const ELECTION_IS_LEADER: &str = "gc_election_is_leader";
/// Epoch (fencing token) of the app's current leader as observed by this node. Labels: `app`.
pub const ELECTION_EPOCH: &str = "gc_election_epoch";
/// Seconds since this node last saw the app's lease written (acquired or renewed). Labels: `app`.
pub const ELECTION_SINCE_RENEWAL: &str = "gc_election_seconds_since_renewal";
/// Leadership transitions of this node. Labels: `app`, `reason`.
pub const ELECTION_TRANSITIONS: &str = "gc_election_transitions_total";
/// Seconds this node waited without a live leader before its own term began. Labels: `app`.
pub const ELECTION_DURATION: &str = "gc_election_duration_seconds";
/// Live members seen by this node (itself included). Labels: `platform`.
pub const MEMBERS: &str = "gc_members";
/// Other nodes seen joining.
pub const MEMBER_JOINS: &str = "gc_member_joins_total";
/// Other nodes seen leaving. Labels: `reason` (`graceful`, `expired`).
pub const MEMBER_LEAVES: &str = "gc_member_leaves_total";
/// RPC calls made (client side). Labels: `app`, `method`, `status` (`ok` or an error kind).
pub const RPC_REQUESTS: &str = "gc_rpc_requests_total";
/// RPC call duration on the calling node, seconds. Labels: `app`, `method`.
pub const RPC_DURATION: &str = "gc_rpc_duration_seconds";
/// RPC requests served by this node (server side; spec 02's server-side
/// `gc_rpc_requests_total`). Labels: `app`, `method` (`-` for a method the app does not
/// register, so requests cannot grow the label set), `status` (`ok` or an error kind).
pub const RPC_SERVED: &str = "gc_rpc_served_total";
/// Time to serve an RPC request on the serving node, seconds (spec 02's name). Labels: `app`,
/// `method` (as in [`RPC_SERVED`]).
pub const RPC_LATENCY: &str = "gc_rpc_latency_seconds";
/// Operations on an app's KV store. Labels: `app`, `op`, `status`.
pub const KV_OPERATIONS: &str = "gc_kv_operations_total";
/// Malformed or wrong-version messages/records rejected. Labels: `kind`.
pub const MALFORMED: &str = "gc_malformed_messages_total";
/// Migrations. Labels: `app`, `reason`, `status` (`started`, `completed`, `failed`).
pub const MIGRATIONS: &str = "gc_migration_total";
/// Migration duration, seconds. Labels: `app`.
pub const MIGRATION_DURATION: &str = "gc_migration_duration_seconds";
/// Migrations of the app in progress, driven by this node. Labels: `app`.
pub const MIGRATION_IN_PROGRESS: &str = "gc_migration_in_progress";
/// 1 while the app cannot be placed (pending), else 0. Labels: `app`.
pub const PLACEMENT_PENDING: &str = "gc_placement_pending";
/// Instances of the app its placement rules could not place. Labels: `app`.
pub const PLACEMENT_VIOLATIONS: &str = "gc_placement_constraint_violations";
/// New assignments written by the placement controller. Labels: `reason`.
pub const REBALANCES: &str = "gc_rebalance_total";
/// Apps placed on a node by the current assignment. Labels: `node`. Spec 02 calls it
/// `gc_node_app_count`; a `_count` suffix is reserved for histograms and summaries in the
/// Prometheus exposition format (`promtool check metrics` rejects it on a gauge).
pub const NODE_APP_COUNT: &str = "gc_node_apps";
/// Max / mean of the apps placed per live node (1 = balanced; 0 when nothing is placed).
pub const NODE_IMBALANCE: &str = "gc_node_imbalance_ratio";
/// Audit records that could not be written. Labels: `category`.
pub const AUDIT_FAILURES: &str = "gc_audit_write_failures_total";
/// Panics of user code (hooks, resources, handlers) or runtime tasks, each handled as an
/// error. Labels: `hook` (`on_active`, `resource.activate`, `rpc`, `event`, `leadership`, ...).
pub const HOOK_PANICS: &str = "gc_hook_panics_total";
/// Records dropped because a bounded queue was full. Labels: `queue` (`audit`, `notify`).
pub const DROPPED_RECORDS: &str = "gc_dropped_records_total";

/// Registers the help text of every runtime metric with the installed recorder.
pub fn describe() {
    describe_gauge!(
        ELECTION_IS_LEADER,
        "1 while this node leads the app, else 0"
    );
    describe_gauge!(ELECTION_EPOCH, "epoch of the app's leader as observed here");
    describe_gauge!(
        ELECTION_SINCE_RENEWAL,
        "seconds since this node last saw the app's lease acquired or renewed"
    );
    describe_counter!(
        ELECTION_TRANSITIONS,
        "leadership transitions of this node by reason"
    );
    describe_histogram!(
        ELECTION_DURATION,
        "seconds without a live leader before this node's term began"
    );
    describe_gauge!(MEMBERS, "live members seen by this node");
    describe_counter!(MEMBER_JOINS, "nodes seen joining");
    describe_counter!(MEMBER_LEAVES, "nodes seen leaving by reason");
    describe_counter!(RPC_REQUESTS, "RPC calls made by this node");
    describe_histogram!(RPC_DURATION, "RPC call duration on the calling node");
    describe_counter!(RPC_SERVED, "RPC requests served by this node");
    describe_histogram!(RPC_LATENCY, "time to serve an RPC request on this node");
    describe_counter!(KV_OPERATIONS, "operations on app KV stores");
    describe_counter!(MALFORMED, "malformed or wrong-version messages rejected");
    describe_counter!(MIGRATIONS, "migrations by reason and status");
    describe_histogram!(MIGRATION_DURATION, "migration duration");
    describe_gauge!(MIGRATION_IN_PROGRESS, "migrations in progress");
    describe_gauge!(PLACEMENT_PENDING, "1 while the app cannot be placed");
    describe_gauge!(
        PLACEMENT_VIOLATIONS,
        "instances the app's placement rules could not place"
    );
    describe_counter!(
        REBALANCES,
        "assignments written by the placement controller"
    );
    describe_gauge!(NODE_APP_COUNT, "apps placed on the node");
    describe_gauge!(NODE_IMBALANCE, "max over mean of apps placed per live node");
    describe_counter!(AUDIT_FAILURES, "audit records that could not be written");
    describe_counter!(
        HOOK_PANICS,
        "panics of hooks, resources and handlers (handled as errors)"
    );
    describe_counter!(
        DROPPED_RECORDS,
        "records dropped because a bounded queue was full"
    );
}

pub(crate) fn election_role(app: &str, leader: bool) {
    gauge!(ELECTION_IS_LEADER, "app" => app.to_owned()).set(if leader { 1.0 } else { 0.0 });
}

pub(crate) fn election_epoch(app: &str, epoch: u64) {
    gauge!(ELECTION_EPOCH, "app" => app.to_owned()).set(epoch as f64);
}

pub(crate) fn election_since_renewal(app: &str, since: Duration) {
    gauge!(ELECTION_SINCE_RENEWAL, "app" => app.to_owned()).set(since.as_secs_f64());
}

pub(crate) fn election_transition(app: &str, reason: &'static str) {
    counter!(ELECTION_TRANSITIONS, "app" => app.to_owned(), "reason" => reason).increment(1);
}

pub(crate) fn election_duration(app: &str, waited: Duration) {
    histogram!(ELECTION_DURATION, "app" => app.to_owned()).record(waited.as_secs_f64());
}

pub(crate) fn members(platform: &str, count: usize) {
    gauge!(MEMBERS, "platform" => platform.to_owned()).set(count as f64);
}

pub(crate) fn member_joined() {
    counter!(MEMBER_JOINS).increment(1);
}

pub(crate) fn member_left(reason: &'static str) {
    counter!(MEMBER_LEAVES, "reason" => reason).increment(1);
}

pub(crate) fn rpc(app: &str, method: &str, status: &'static str, took: Duration) {
    counter!(RPC_REQUESTS, "app" => app.to_owned(), "method" => method.to_owned(), "status" => status)
        .increment(1);
    histogram!(RPC_DURATION, "app" => app.to_owned(), "method" => method.to_owned())
        .record(took.as_secs_f64());
}

pub(crate) fn rpc_served(app: &str, method: &str, status: &'static str, took: Duration) {
    counter!(RPC_SERVED, "app" => app.to_owned(), "method" => method.to_owned(), "status" => status)
        .increment(1);
    histogram!(RPC_LATENCY, "app" => app.to_owned(), "method" => method.to_owned())
        .record(took.as_secs_f64());
}

pub(crate) fn kv(app: &str, op: &'static str, status: &'static str) {
    counter!(KV_OPERATIONS, "app" => app.to_owned(), "op" => op, "status" => status).increment(1);
}

pub(crate) fn malformed(kind: &'static str) {
    counter!(MALFORMED, "kind" => kind).increment(1);
}

pub(crate) fn migration(app: &str, reason: &str, status: &'static str) {
    counter!(MIGRATIONS, "app" => app.to_owned(), "reason" => reason.to_owned(), "status" => status)
        .increment(1);
}

pub(crate) fn migration_duration(app: &str, took: Duration) {
    histogram!(MIGRATION_DURATION, "app" => app.to_owned()).record(took.as_secs_f64());
}

pub(crate) fn migration_in_progress(app: &str, delta: f64) {
    gauge!(MIGRATION_IN_PROGRESS, "app" => app.to_owned()).increment(delta);
}

pub(crate) fn placement(app: &str, pending: bool, violations: usize) {
    gauge!(PLACEMENT_PENDING, "app" => app.to_owned()).set(if pending { 1.0 } else { 0.0 });
    gauge!(PLACEMENT_VIOLATIONS, "app" => app.to_owned()).set(violations as f64);
}

pub(crate) fn rebalance(reason: &'static str) {
    counter!(REBALANCES, "reason" => reason).increment(1);
}

pub(crate) fn node_app_count(node: &str, count: usize) {
    gauge!(NODE_APP_COUNT, "node" => node.to_owned()).set(count as f64);
}

pub(crate) fn imbalance(ratio: f64) {
    gauge!(NODE_IMBALANCE).set(ratio);
}

pub(crate) fn audit_failure(category: &str) {
    counter!(AUDIT_FAILURES, "category" => category.to_owned()).increment(1);
}

pub(crate) fn hook_panic(hook: &str) {
    counter!(HOOK_PANICS, "hook" => hook.to_owned()).increment(1);
}

pub(crate) fn dropped(queue: &'static str) {
    counter!(DROPPED_RECORDS, "queue" => queue).increment(1);
}
