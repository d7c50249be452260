//! Event metadata, carried in headers; event data is opaque bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::{AppName, NodeId};
use crate::transport::Headers;

use super::PROTOCOL_VERSION;
use super::headers as h;

/// An event as delivered to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's subject, relative to its namespace (e.g. `user.created`).
    pub subject: String,
    /// The payload.
    pub data: Bytes,
    /// The app that published it (`None` for platform-level publishers).
    pub source_app: Option<AppName>,
    /// The node that published it.
    pub source_node: NodeId,
    /// Unique id.
    pub id: String,
    /// Publisher's wall-clock time (display only).
    pub time: SystemTime,
}

/// Headers of an event published by `source_node` / `source_app`.
pub fn event_headers(
    source_node: &NodeId,
    source_app: Option<&AppName>,
    time: SystemTime,
) -> Headers {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut headers = Headers::new()
        .with(h::VERSION, PROTOCOL_VERSION.to_string())
        .with(h::SOURCE_NODE, source_node.as_str())
        .with(h::ID, uuid::Uuid::new_v4().simple().to_string())
        .with(h::TIME_MS, ms.to_string());
    if let Some(app) = source_app {
        headers.insert(h::SOURCE_APP, app.as_str());
    }
    headers
}

/// Decodes an event from its relative subject, headers and payload.
pub fn decode_event(subject: &str, headers: &Headers, data: Bytes) -> Result<Event> {
    super::rpc::check_version(headers)?;
    let source_node = headers
        .get(h::SOURCE_NODE)
        .ok_or_else(|| Error::Malformed("event lacks source node".into()))
        .and_then(|n| NodeId::new(n).map_err(|e| Error::Malformed(e.to_string())))?;
    let source_app = headers
        .get(h::SOURCE_APP)
        .map(AppName::new)
        .transpose()
        .map_err(|e| Error::Malformed(e.to_string()))?;
    let ms: u64 = headers
        .get(h::TIME_MS)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Ok(Event {
        subject: subject.to_owned(),
        data,
        source_app,
        source_node,
        id: headers.get(h::ID).unwrap_or("").to_owned(),
        time: UNIX_EPOCH + Duration::from_millis(ms),
    })
}
