//! The JetStream KV wire conventions this adapter reads and writes (see
//! `docs/protocol/nats-mapping.md`).

use std::time::Duration;

use async_nats::HeaderMap;
use cluster_core::WatchOp;

/// KV operation header written by clients on delete (`DEL`) and purge (`PURGE`).
pub(crate) const KV_OPERATION: &str = "KV-Operation";
/// Header the server puts on the delete markers it writes itself.
pub(crate) const MARKER_REASON: &str = "Nats-Marker-Reason";
/// Per-message TTL header (server >= 2.11).
pub(crate) const TTL: &str = "Nats-TTL";
/// Compare-and-set header: the subject's last sequence must equal this (0: no message).
pub(crate) const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";

/// How long the server keeps the delete marker it writes when a key's TTL runs out. Watchers
/// that reconnect within this time still see the expiry.
pub(crate) const DEFAULT_MARKER_TTL: Duration = Duration::from_secs(60);

/// The `Nats-TTL` value for `ttl`: whole seconds rounded **up** (the server's granularity is
/// one second and its minimum is one second), so a key never expires before its TTL.
pub(crate) fn ttl_header_value(ttl: Duration) -> String {
    let mut secs = ttl.as_secs();
    if ttl.subsec_nanos() > 0 {
        secs += 1;
    }
    format!("{}s", secs.max(1))
}

/// What a stored message means for its key.
pub(crate) fn classify(headers: Option<&HeaderMap>) -> WatchOp {
    let Some(headers) = headers else {
        return WatchOp::Put;
    };
    let reason = headers.get(MARKER_REASON).map(|r| r.as_str());
    if reason == Some("MaxAge") {
        // The server removed the key's last message because its age limit (per-key TTL or
        // bucket max age) ran out.
        return WatchOp::Expired;
    }
    if let Some(op) = headers.get(KV_OPERATION) {
        return match op.as_str() {
            "DEL" | "PURGE" => WatchOp::Delete,
            _ => WatchOp::Put,
        };
    }
    match reason {
        // Removed by an operator (`Purge` of the stream, `Remove` of the message).
        Some(_) => WatchOp::Delete,
        None => WatchOp::Put,
    }
}

/// The subject of `key` in `bucket`.
pub(crate) fn key_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_header_value(Duration::from_millis(1)), "1s");
        assert_eq!(ttl_header_value(Duration::from_secs(1)), "1s");
        assert_eq!(ttl_header_value(Duration::from_millis(1500)), "2s");
        assert_eq!(ttl_header_value(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn classification() {
        assert_eq!(classify(None), WatchOp::Put);
        let mut h = HeaderMap::new();
        h.insert(KV_OPERATION, "DEL");
        assert_eq!(classify(Some(&h)), WatchOp::Delete);
        let mut h = HeaderMap::new();
        h.insert(KV_OPERATION, "PURGE");
        assert_eq!(classify(Some(&h)), WatchOp::Delete);
        let mut h = HeaderMap::new();
        h.insert(MARKER_REASON, "MaxAge");
        assert_eq!(classify(Some(&h)), WatchOp::Expired);
        let mut h = HeaderMap::new();
        h.insert(MARKER_REASON, "Remove");
        assert_eq!(classify(Some(&h)), WatchOp::Delete);
        let mut h = HeaderMap::new();
        h.insert(TTL, "5s");
        assert_eq!(classify(Some(&h)), WatchOp::Put);
    }
}
