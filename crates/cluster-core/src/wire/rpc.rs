//! RPC request and reply metadata, carried in headers; payloads are opaque bytes.

use std::time::Duration;

use crate::epoch::Epoch;
use crate::error::{Error, Result};
use crate::id::{AppName, MethodName, NodeId};
use crate::transport::Headers;

use super::PROTOCOL_VERSION;
use super::headers as h;

/// How a call is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// To the app's current leader (the default for Singleton apps).
    ToLeader,
    /// To any one instance (the default for the other modes).
    ToAny,
    /// To the instance on one node.
    ToNode(NodeId),
    /// To the node owning the Ring partition of this key.
    ForKey(String),
}

impl Routing {
    fn wire(&self) -> &'static str {
        match self {
            Routing::ToLeader => "leader",
            Routing::ToAny => "any",
            Routing::ToNode(_) | Routing::ForKey(_) => "node",
        }
    }
}

/// Metadata of an RPC request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// Method called.
    pub method: MethodName,
    /// Calling node.
    pub source_node: NodeId,
    /// Calling app, if any.
    pub source_app: Option<AppName>,
    /// `node`, `any`, `leader` or `all`.
    pub routing: String,
    /// How long the caller waits.
    pub timeout: Duration,
    /// Unique request id.
    pub id: String,
}

impl RequestMeta {
    /// Builds request metadata for `routing` (`None`: broadcast).
    pub fn new(
        method: MethodName,
        source_node: NodeId,
        source_app: Option<AppName>,
        routing: Option<&Routing>,
        timeout: Duration,
    ) -> Self {
        Self {
            method,
            source_node,
            source_app,
            routing: routing.map(Routing::wire).unwrap_or("all").to_owned(),
            timeout,
            id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Whether the request must be served by the leader only.
    pub fn requires_leader(&self) -> bool {
        self.routing == "leader"
    }

    /// Encodes into headers.
    pub fn to_headers(&self) -> Headers {
        let mut headers = Headers::new()
            .with(h::VERSION, PROTOCOL_VERSION.to_string())
            .with(h::METHOD, self.method.as_str())
            .with(h::SOURCE_NODE, self.source_node.as_str())
            .with(h::ROUTING, self.routing.as_str())
            .with(h::TIMEOUT_MS, self.timeout.as_millis().to_string())
            .with(h::ID, self.id.as_str());
        if let Some(app) = &self.source_app {
            headers.insert(h::SOURCE_APP, app.as_str());
        }
        headers
    }

    /// Decodes and validates headers.
    pub fn from_headers(headers: &Headers) -> Result<Self> {
        check_version(headers)?;
        let get = |name: &str| {
            headers
                .get(name)
                .ok_or_else(|| Error::Malformed(format!("request lacks header {name}")))
        };
        let routing = get(h::ROUTING)?;
        if !matches!(routing, "node" | "any" | "leader" | "all") {
            return Err(Error::Malformed(format!("unknown routing {routing:?}")));
        }
        let timeout_ms: u64 = get(h::TIMEOUT_MS)?
            .parse()
            .map_err(|_| Error::Malformed("timeout is not a number".into()))?;
        Ok(Self {
            method: MethodName::new(get(h::METHOD)?)
                .map_err(|e| Error::Malformed(e.to_string()))?,
            source_node: NodeId::new(get(h::SOURCE_NODE)?)
                .map_err(|e| Error::Malformed(e.to_string()))?,
            source_app: headers
                .get(h::SOURCE_APP)
                .map(AppName::new)
                .transpose()
                .map_err(|e| Error::Malformed(e.to_string()))?,
            routing: routing.to_owned(),
            timeout: Duration::from_millis(timeout_ms),
            id: get(h::ID)?.to_owned(),
        })
    }
}

/// Checks the `Cluster-Version` header.
pub fn check_version(headers: &Headers) -> Result<()> {
    match headers.get(h::VERSION) {
        Some(v) if v == PROTOCOL_VERSION.to_string() => Ok(()),
        Some(v) => Err(Error::Malformed(format!(
            "protocol version {v} (this node speaks {PROTOCOL_VERSION})"
        ))),
        None => Err(Error::Malformed(format!("missing {} header", h::VERSION))),
    }
}

/// Headers of a successful reply.
pub fn ok_reply(node: &NodeId) -> Headers {
    Headers::new()
        .with(h::VERSION, PROTOCOL_VERSION.to_string())
        .with(h::STATUS, "ok")
        .with(h::REPLY_NODE, node.as_str())
}

/// Headers of an error reply.
pub fn error_reply(node: &NodeId, error: &Error) -> Headers {
    let mut headers = Headers::new()
        .with(h::VERSION, PROTOCOL_VERSION.to_string())
        .with(h::STATUS, "error")
        .with(h::REPLY_NODE, node.as_str())
        .with(h::ERROR_KIND, error.kind());
    let message = match error {
        Error::Handler(m) => m.clone(),
        other => other.to_string(),
    };
    // Header values cannot contain line breaks.
    headers.insert(h::ERROR_MESSAGE, message.replace(['\r', '\n'], " "));
    match error {
        Error::NotLeader { leader, epoch } => {
            if let Some(l) = leader {
                headers.insert(h::LEADER, l.as_str());
            }
            if let Some(e) = epoch {
                headers.insert(h::EPOCH, e.to_string());
            }
        }
        Error::UnknownMethod { app, method } => {
            headers.insert(h::METHOD, method.as_str());
            headers.insert(h::SOURCE_APP, app.as_str());
        }
        _ => {}
    }
    headers
}

/// Interprets reply headers: `Ok(replying node)` or the error the remote reported.
pub fn parse_reply(headers: &Headers) -> Result<Option<NodeId>> {
    check_version(headers)?;
    let node = headers.get(h::REPLY_NODE).and_then(|n| NodeId::new(n).ok());
    match headers.get(h::STATUS) {
        Some("ok") => Ok(node),
        Some("error") => {
            let message = headers.get(h::ERROR_MESSAGE).unwrap_or("").to_owned();
            Err(match headers.get(h::ERROR_KIND).unwrap_or("") {
                "not_leader" => Error::NotLeader {
                    leader: headers.get(h::LEADER).and_then(|l| NodeId::new(l).ok()),
                    epoch: headers
                        .get(h::EPOCH)
                        .and_then(|e| e.parse().ok())
                        .map(Epoch),
                },
                "unknown_method" => Error::UnknownMethod {
                    app: headers.get(h::SOURCE_APP).unwrap_or("").to_owned(),
                    method: headers.get(h::METHOD).unwrap_or("").to_owned(),
                },
                "shutting_down" => Error::ShuttingDown,
                "timeout" => Error::Timeout(message),
                "malformed" => Error::Malformed(message),
                "app_not_found" => Error::AppNotFound(message),
                _ => Error::Handler(message),
            })
        }
        other => Err(Error::Malformed(format!("reply status {other:?}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_meta_round_trips() {
        let meta = RequestMeta::new(
            "echo".parse().unwrap(),
            "n1".parse().unwrap(),
            Some("api".parse().unwrap()),
            Some(&Routing::ToLeader),
            Duration::from_millis(1500),
        );
        let back = RequestMeta::from_headers(&meta.to_headers()).unwrap();
        assert_eq!(back, meta);
        assert!(back.requires_leader());
    }

    #[test]
    fn malformed_requests_are_rejected() {
        assert!(matches!(
            RequestMeta::from_headers(&Headers::new()),
            Err(Error::Malformed(_))
        ));
        let wrong_version = Headers::new().with(h::VERSION, "99");
        let err = RequestMeta::from_headers(&wrong_version).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[test]
    fn error_replies_round_trip() {
        let node: NodeId = "n2".parse().unwrap();
        let err = Error::NotLeader {
            leader: Some("n1".parse().unwrap()),
            epoch: Some(Epoch(7)),
        };
        assert_eq!(parse_reply(&error_reply(&node, &err)).unwrap_err(), err);
        let err = Error::Handler("boom\nline".into());
        assert_eq!(
            parse_reply(&error_reply(&node, &err)).unwrap_err(),
            Error::Handler("boom line".into())
        );
        assert_eq!(parse_reply(&ok_reply(&node)).unwrap(), Some(node));
    }
}
