//! Permission violations reported by the server on a connection (`-ERR 'Permissions Violation
//! for Publish to "…"'`): never silent — counted in `gc_nats_permission_violations_total{op}`,
//! logged, and counted per connection ([`crate::NatsConnection::permission_violations`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{Event, ServerError};
use metrics::{counter, describe_counter};

/// Publishes and subscriptions the NATS server refused for lack of permission (reported
/// asynchronously on the connection). Labels: `op` (`publish`, `subscribe`, `other`).
pub const PERMISSION_VIOLATIONS: &str = "gc_nats_permission_violations_total";

/// Registers the help text of [`PERMISSION_VIOLATIONS`] with the installed recorder.
pub fn describe_metrics() {
    describe_counter!(
        PERMISSION_VIOLATIONS,
        "publishes and subscriptions the NATS server refused for lack of permission"
    );
}

/// The operation a server error refused, if it is a permission violation.
pub(crate) fn violation_op(event: &Event) -> Option<&'static str> {
    let Event::ServerError(ServerError::Other(text)) = event else {
        return None;
    };
    let text = text.to_ascii_lowercase();
    if !text.contains("permissions violation") {
        return None;
    }
    Some(if text.contains("for publish") {
        "publish"
    } else if text.contains("for subscription") {
        "subscribe"
    } else {
        "other"
    })
}

/// Handles one connection event: counts and logs a permission violation, logs the rest.
pub(crate) fn on_event(event: &Event, count: &Arc<AtomicU64>) {
    match violation_op(event) {
        Some(op) => {
            count.fetch_add(1, Ordering::Relaxed);
            counter!(PERMISSION_VIOLATIONS, "op" => op).increment(1);
            tracing::warn!(op, %event, "NATS permission violation: the server refused this");
        }
        None => tracing::info!(%event, "nats connection event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> Event {
        Event::ServerError(ServerError::Other(text.to_owned()))
    }

    #[test]
    fn classifies_the_server_texts() {
        assert_eq!(
            violation_op(&server(
                "Permissions Violation for Publish to \"$KV.p_members.n1\""
            )),
            Some("publish")
        );
        assert_eq!(
            violation_op(&server(
                "permissions violation for subscription to \"cluster.p.app.a.rpc._any\" using queue \"rpc\""
            )),
            Some("subscribe")
        );
        assert_eq!(violation_op(&server("maximum payload exceeded")), None);
        assert_eq!(violation_op(&Event::Disconnected), None);
    }
}
