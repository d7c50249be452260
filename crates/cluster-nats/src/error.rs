//! Mapping async-nats errors onto `cluster_core::Error`.

use std::fmt::Display;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
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

/// The JetStream API error carried by `err` or one of its sources (async-nats keeps the
/// server's error response, with its code, as the source of its own error kinds).
fn jetstream_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a async_nats::jetstream::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js);
        }
        current = e.source();
    }
    None
}

/// The JetStream error code (`err_code`) of `err`, if the server answered with an error.
pub(crate) fn jetstream_code(err: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    jetstream_error(err).map(async_nats::jetstream::Error::error_code)
}

/// The kind of the publish error in `err` or its sources.
fn publish_kind(err: &(dyn std::error::Error + 'static)) -> Option<PublishErrorKind> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(p) = e.downcast_ref::<PublishError>() {
            return Some(p.kind());
        }
        current = e.source();
    }
    None
}

/// Whether a write was refused by its expected-last-sequence check: JetStream error 10071
/// (`wrong last sequence: N`) or 10164 (a clustered stream refusing a compare-and-set while
/// another write to the same subject is in flight, without a number).
pub(crate) fn is_wrong_last_sequence(err: &(dyn std::error::Error + 'static)) -> bool {
    publish_kind(err) == Some(PublishErrorKind::WrongLastSequence)
        || matches!(
            jetstream_code(err),
            Some(
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                    | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            )
        )
}

/// Whether the server does not know the target stream: a publish nobody answered (no stream
/// listens on the subject) or JetStream error 10059 (stream not found).
pub(crate) fn is_stream_not_found(err: &(dyn std::error::Error + 'static)) -> bool {
    publish_kind(err) == Some(PublishErrorKind::StreamNotFound)
        || jetstream_code(err) == Some(ErrorCode::STREAM_NOT_FOUND)
}

/// Whether the server refused a per-message TTL (10165 invalid, 10166 disabled on the stream).
fn is_ttl_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        jetstream_code(err),
        Some(ErrorCode::MESSAGE_TTL_INVALID | ErrorCode::MESSAGE_TTL_DISABLED)
    )
}

/// Whether creating a stream failed for lack of resources or peers (the request cannot
/// succeed by retrying: 10023, 10005, 10074).
pub(crate) fn is_placement_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        jetstream_code(err),
        Some(
            ErrorCode::INSUFFICIENT_RESOURCES
                | ErrorCode::CLUSTER_NO_PEERS
                | ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED
        )
    )
}

/// The subject's current sequence of a wrong-last-sequence error (10071), which JetStream
/// states only in its description (`wrong last sequence: N`).
pub(crate) fn wrong_last_sequence(err: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let js = jetstream_error(err)?;
    if js.error_code() != ErrorCode::STREAM_WRONG_LAST_SEQUENCE {
        return None;
    }
    sequence_in(&js.to_string())
}

/// The number after `wrong last sequence` in a JetStream error description.
fn sequence_in(text: &str) -> Option<u64> {
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

/// Maps a JetStream publish (KV write) error by its kind and JetStream error code.
pub(crate) fn map_publish_error(
    what: &str,
    err: &PublishError,
    max_payload: usize,
) -> WriteFailure {
    let text = describe(err);
    if is_wrong_last_sequence(err) {
        return WriteFailure::Conflict(wrong_last_sequence(err));
    }
    if is_ttl_refused(err) {
        return WriteFailure::Other(Error::InvalidArgument(format!("{what}: {text}")));
    }
    match err.kind() {
        PublishErrorKind::TimedOut => WriteFailure::Other(transient(what, true, text)),
        PublishErrorKind::MaxPayloadExceeded => WriteFailure::Other(Error::PayloadTooLarge {
            size: max_payload.saturating_add(1),
            max: max_payload,
        }),
        PublishErrorKind::WrongLastSequence
        | PublishErrorKind::StreamNotFound
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::Other => WriteFailure::Other(transient(what, false, text)),
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
/// yet ([`is_stream_not_found`]), 10 ms doubling, for at most 2 s; returns the last outcome.
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
                if is_stream_not_found(&e) && tokio::time::Instant::now() + backoff < deadline =>
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
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A server error response as async-nats decodes it.
    fn server_error(code: u64, description: &str) -> async_nats::jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": code, "description": description
        }))
        .unwrap()
    }

    fn publish_error(kind: PublishErrorKind, code: u64, description: &str) -> PublishError {
        PublishError::with_source(kind, server_error(code, description))
    }

    fn conflict_of(err: &PublishError) -> Option<Option<u64>> {
        match map_publish_error("write", err, 1024) {
            WriteFailure::Conflict(current) => Some(current),
            WriteFailure::Other(_) => None,
        }
    }

    #[test]
    fn wrong_last_sequence_is_classified_by_its_code() {
        let e = publish_error(
            PublishErrorKind::WrongLastSequence,
            10071,
            "wrong last sequence: 42",
        );
        assert_eq!(conflict_of(&e), Some(Some(42)));
        // 10164 arrives as `Other`, without a number.
        let e = publish_error(PublishErrorKind::Other, 10164, "wrong last sequence");
        assert_eq!(conflict_of(&e), Some(None));
        // The text alone means nothing: another code with the same words is no conflict.
        let e = publish_error(PublishErrorKind::Other, 10077, "wrong last sequence: 7");
        assert_eq!(conflict_of(&e), None);
    }

    #[test]
    fn ttl_refusals_are_invalid_arguments_and_others_transient() {
        for code in [10165, 10166] {
            let e = publish_error(PublishErrorKind::Other, code, "per-message TTL refused");
            assert!(matches!(
                map_publish_error("write", &e, 1024),
                WriteFailure::Other(Error::InvalidArgument(_))
            ));
        }
        let e = publish_error(
            PublishErrorKind::Other,
            10077,
            "message TTL text, other code",
        );
        assert!(matches!(
            map_publish_error("write", &e, 1024),
            WriteFailure::Other(Error::Unavailable(_))
        ));
    }

    #[test]
    fn stream_not_found_and_placement_by_code() {
        assert!(is_stream_not_found(&PublishError::new(
            PublishErrorKind::StreamNotFound
        )));
        assert!(is_stream_not_found(&server_error(
            10059,
            "stream not found"
        )));
        assert!(!is_stream_not_found(&server_error(
            10037,
            "no stream found"
        )));
        assert!(is_placement_refused(&server_error(
            10023,
            "insufficient resources"
        )));
        assert!(is_placement_refused(&server_error(
            10074,
            "replicas > 1 not supported"
        )));
        assert!(!is_placement_refused(&server_error(
            10059,
            "insufficient replicas"
        )));
        assert_eq!(
            jetstream_code(&server_error(10037, "no message found")),
            Some(ErrorCode::NO_MESSAGE_FOUND)
        );
    }
}
