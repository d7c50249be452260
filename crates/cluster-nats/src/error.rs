//! Mapping async-nats errors onto `cluster_core::Error`.

use std::fmt::Display;

use async_nats::jetstream::context::PublishErrorKind;
use cluster_core::Error;
use cluster_core::kv::Revision;

/// The full error text, including sources (async-nats puts the server's description there).
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `Timeout` or `Unavailable`, depending on whether the failure was a timeout.
pub(crate) fn transient(what: &str, timed_out: bool, err: impl Display) -> Error {
    if timed_out {
        Error::Timeout(format!("{what}: {err}"))
    } else {
        Error::Unavailable(format!("{what}: {err}"))
    }
}

/// Extracts the subject's current sequence from a JetStream "wrong last sequence: N" error.
pub(crate) fn wrong_last_sequence(text: &str) -> Option<u64> {
    let marker = "wrong last sequence";
    let start = text.find(marker)? + marker.len();
    let digits: String = text[start..]
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What a failed KV write means.
pub(crate) enum WriteFailure {
    /// The expected-revision check failed; the current revision if the server said it.
    Conflict(Option<u64>),
    /// Any other failure, already mapped.
    Other(Error),
}

/// Maps a JetStream publish (KV write) error.
pub(crate) fn map_publish_error(
    what: &str,
    err: &async_nats::jetstream::context::PublishError,
    max_payload: usize,
) -> WriteFailure {
    let text = describe(err);
    // A clustered stream also rejects a compare-and-set while another write to the same
    // subject is in flight, with JetStream error code 10164 ("wrong last sequence" without
    // a number), which async-nats reports as `Other`.
    if text.contains("wrong last sequence") {
        return WriteFailure::Conflict(wrong_last_sequence(&text));
    }
    match err.kind() {
        PublishErrorKind::WrongLastSequence => WriteFailure::Conflict(wrong_last_sequence(&text)),
        PublishErrorKind::TimedOut => WriteFailure::Other(transient(what, true, text)),
        PublishErrorKind::MaxPayloadExceeded => WriteFailure::Other(Error::PayloadTooLarge {
            size: max_payload.saturating_add(1),
            max: max_payload,
        }),
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::Other => {
            if text.contains("message TTL") || text.contains("per-message TTL") {
                WriteFailure::Other(Error::InvalidArgument(format!("{what}: {text}")))
            } else {
                WriteFailure::Other(transient(what, false, text))
            }
        }
    }
}

/// A `Conflict` error for `key`.
pub(crate) fn conflict(key: &str, expected: Option<Revision>, current: Option<u64>) -> Error {
    Error::Conflict {
        key: key.to_owned(),
        expected,
        current: current.filter(|c| *c > 0).map(Revision),
    }
}

/// Runs `attempt` again while it fails because the server does not know the target stream
/// yet ("no stream found"), 10 ms doubling, for at most 2 s; returns the last outcome.
///
/// Right after a stream (KV bucket, log, object store) is created on a cluster, the server a
/// client talks to may learn its subjects after the create call returned. The refused message
/// was not stored, so sending the same message again (same id, same expectation) is safe.
pub(crate) async fn retry_unknown_stream<T, E, F, Fut>(mut attempt: F) -> std::result::Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut backoff = std::time::Duration::from_millis(10);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match attempt().await {
            Err(e)
                if describe(&e).contains("no stream found")
                    && tokio::time::Instant::now() + backoff < deadline =>
            {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrong_last_sequence() {
        assert_eq!(
            wrong_last_sequence("wrong last sequence: 42 (code 400, error code 10071)"),
            Some(42)
        );
        assert_eq!(wrong_last_sequence("wrong last sequence: 0"), Some(0));
        assert_eq!(wrong_last_sequence("something else"), None);
    }
}
