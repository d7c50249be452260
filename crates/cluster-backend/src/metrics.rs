//! Backend metrics through the `metrics` facade (no-ops until a recorder is installed). Label
//! `app`: the app the coordinator is bound to (`-` when unbound). Listed in
//! `docs/architecture/observability.md`.

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// 1 for the coordinator's current state, 0 for the others. Labels: `app`, `state`
/// (`stopped`, `starting`, `running`, `restarting`, `failed`).
pub const BACKEND_STATE: &str = "gc_backend_state";
/// Restarts performed by the coordinator. Labels: `app`.
pub const BACKEND_RESTARTS: &str = "gc_backend_restarts_total";

/// Every state a coordinator reports.
pub const STATES: [&str; 5] = ["stopped", "starting", "running", "restarting", "failed"];

/// Registers the help texts with the installed recorder.
pub fn describe() {
    describe_gauge!(BACKEND_STATE, "1 for the backend's current state, else 0");
    describe_counter!(BACKEND_RESTARTS, "backend restarts by the coordinator");
}

pub(crate) fn state(app: &str, current: &str) {
    for s in STATES {
        gauge!(BACKEND_STATE, "app" => app.to_owned(), "state" => s).set(if s == current {
            1.0
        } else {
            0.0
        });
    }
}

pub(crate) fn restarts(app: &str, delta: u64) {
    counter!(BACKEND_RESTARTS, "app" => app.to_owned()).increment(delta);
}
