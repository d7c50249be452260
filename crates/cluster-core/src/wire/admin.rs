//! Platform-level admin requests and replies (JSON, version 1).
//!
//! Every node serves admin requests on `cluster.{P}.admin.{read|write}.{node}` and
//! `cluster.{P}.admin.{read|write}._all` (protocol v2, [`AdminClass`],
//! [`Names::admin_class_node`](super::names::Names::admin_class_node)), and on the v1 subjects
//! `cluster.{P}.admin.{node}` and `cluster.{P}.admin._all` for older clients. The
//! `cluster` CLI and any other tool talk to running daemons with these messages; they never
//! register as a node. The format is documented in `docs/protocol/admin.md`.
//!
//! Adding a method: add a variant to [`AdminMethod`], its result type here, and a match arm in
//! the runtime's admin service. Fields added later to a result must be optional
//! (`#[serde(default)]`) so older clients and servers keep understanding each other.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::epoch::Epoch;
use crate::error::{Error, Result};
use crate::id::{AppName, NodeId, PlatformName};
use crate::labels::Labels;
use crate::mode::{Mode, Role};
use crate::transport::Headers;

use super::PROTOCOL_VERSION;
use super::headers as h;
use super::member::MemberRecord;

/// Version of the admin message format.
pub const ADMIN_VERSION: u32 = 1;

/// The admin methods a node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminMethod {
    /// The node's status, its membership view and its view of every app ([`StatusReply`]).
    Status,
    /// The node's own status ([`NodeStatus`]).
    NodeStatus,
    /// Every app known on the platform, as seen by the node ([`AppList`]).
    AppList,
    /// One app as seen by the node, with its local instance ([`AppStatusReply`]).
    AppStatus,
    /// The node steps down from leadership of one app, or of every app it leads
    /// ([`StepDownReply`]).
    StepDown,
    /// The node's view of placement ([`PlacementStatus`](super::placement_admin::PlacementStatus)).
    PlacementStatus,
    /// Cordon a node ([`NodeParams`](super::placement_admin::NodeParams)).
    NodeCordon,
    /// Uncordon a node ([`NodeParams`](super::placement_admin::NodeParams)).
    NodeUncordon,
    /// Drain a node; the reply comes when it runs nothing
    /// ([`DrainParams`](super::placement_admin::DrainParams) → [`DrainReply`](super::placement_admin::DrainReply)).
    NodeDrain,
    /// Set and remove labels of a node ([`LabelParams`](super::placement_admin::LabelParams)).
    NodeLabel,
    /// Move an app's instance; the reply comes when the move completed
    /// ([`MoveParams`](super::placement_admin::MoveParams) → [`MoveReply`](super::placement_admin::MoveReply)).
    AppMove,
    /// A rebalance plan, nothing changed
    /// ([`RebalanceParams`](super::placement_admin::RebalanceParams) → [`RebalancePlan`](super::placement_admin::RebalancePlan)).
    RebalancePlan,
    /// The controller's auto-rebalance status
    /// ([`RebalanceStatus`](super::rebalance::RebalanceStatus)).
    RebalanceStatus,
    /// Cancels the running rebalance (returns the status).
    RebalanceCancel,
    /// Approves the next migration of an app
    /// ([`ApproveParams`](super::rebalance::ApproveParams)).
    RebalanceApprove,
    /// The cluster-wide placement settings ([`PlacementConfig`](super::rebalance::PlacementConfig)).
    ConfigGet,
    /// Changes one setting ([`ConfigSetParams`](super::rebalance::ConfigSetParams) →
    /// [`PlacementConfig`](super::rebalance::PlacementConfig)).
    ConfigSet,
    /// An app-defined admin operation served by the node's local instance of the app
    /// ([`AppExtensionParams`] → the extension's JSON result), e.g. `wal.snapshot.create`.
    AppExtension,
    /// Removes a stale member record ([`NodeParams`](super::placement_admin::NodeParams) →
    /// [`NodeRemoved`]); refused for a live node.
    NodeRemove,
}

/// Whether an admin method only reads (admin protocol v2: the class is in the subject,
/// `cluster.{P}.admin.{read|write}.{N}`, so the NATS server can allow a `viewer` reads only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminClass {
    /// Changes nothing.
    Read,
    /// May change the platform (or runs app-defined code).
    Write,
}

impl AdminClass {
    /// The subject token: `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminClass::Read => "read",
            AdminClass::Write => "write",
        }
    }

    /// The class of a method named on the wire; unknown names are `Write`.
    pub fn of_name(method: &str) -> Self {
        AdminMethod::parse(method).map_or(AdminClass::Write, AdminMethod::class)
    }
}

impl AdminMethod {
    /// The method's class: `Read` for the status and plan methods, `Write` for the rest
    /// (`app.ext` included: it runs app-defined code).
    pub fn class(self) -> AdminClass {
        match self {
            AdminMethod::Status
            | AdminMethod::NodeStatus
            | AdminMethod::AppList
            | AdminMethod::AppStatus
            | AdminMethod::PlacementStatus
            | AdminMethod::RebalancePlan
            | AdminMethod::RebalanceStatus
            | AdminMethod::ConfigGet => AdminClass::Read,
            AdminMethod::StepDown
            | AdminMethod::NodeCordon
            | AdminMethod::NodeUncordon
            | AdminMethod::NodeDrain
            | AdminMethod::NodeLabel
            | AdminMethod::AppMove
            | AdminMethod::RebalanceCancel
            | AdminMethod::RebalanceApprove
            | AdminMethod::ConfigSet
            | AdminMethod::AppExtension
            | AdminMethod::NodeRemove => AdminClass::Write,
        }
    }

    /// Every method, in documentation order.
    pub const ALL: [AdminMethod; 19] = [
        AdminMethod::Status,
        AdminMethod::NodeStatus,
        AdminMethod::AppList,
        AdminMethod::AppStatus,
        AdminMethod::StepDown,
        AdminMethod::PlacementStatus,
        AdminMethod::NodeCordon,
        AdminMethod::NodeUncordon,
        AdminMethod::NodeDrain,
        AdminMethod::NodeLabel,
        AdminMethod::AppMove,
        AdminMethod::RebalancePlan,
        AdminMethod::AppExtension,
        AdminMethod::RebalanceStatus,
        AdminMethod::RebalanceCancel,
        AdminMethod::RebalanceApprove,
        AdminMethod::ConfigGet,
        AdminMethod::ConfigSet,
        AdminMethod::NodeRemove,
    ];

    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminMethod::Status => "status",
            AdminMethod::NodeStatus => "node.status",
            AdminMethod::AppList => "app.list",
            AdminMethod::AppStatus => "app.status",
            AdminMethod::StepDown => "stepdown",
            AdminMethod::PlacementStatus => "placement.status",
            AdminMethod::NodeCordon => "node.cordon",
            AdminMethod::NodeUncordon => "node.uncordon",
            AdminMethod::NodeDrain => "node.drain",
            AdminMethod::NodeLabel => "node.label",
            AdminMethod::AppMove => "app.move",
            AdminMethod::RebalancePlan => "rebalance.plan",
            AdminMethod::RebalanceStatus => "rebalance.status",
            AdminMethod::RebalanceCancel => "rebalance.cancel",
            AdminMethod::RebalanceApprove => "rebalance.approve",
            AdminMethod::ConfigGet => "config.get",
            AdminMethod::ConfigSet => "config.set",
            AdminMethod::AppExtension => "app.ext",
            AdminMethod::NodeRemove => "node.remove",
        }
    }

    /// The method of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for AdminMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parameters of [`AdminMethod::AppExtension`] (the request's `app` names the app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppExtensionParams {
    /// The extension's name, as registered with `App::on_admin`.
    pub name: String,
    /// Its arguments (extension-defined JSON).
    #[serde(default)]
    pub args: serde_json::Value,
}

/// Result of [`AdminMethod::NodeRemove`]: the member record that was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRemoved {
    /// The node whose record was removed.
    pub node: NodeId,
    /// The revision of the removed record.
    pub revision: u64,
    /// The process incarnation the record named (empty when it did not decode).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// Why the record counted as stale, e.g. "not renewed for 3.2 s".
    pub why: String,
}

/// An admin request (the JSON payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRequest {
    /// Format version ([`ADMIN_VERSION`]).
    pub v: u32,
    /// The method's wire name ([`AdminMethod::as_str`]).
    pub method: String,
    /// The app the method applies to (`app.status`: required; `stepdown`: optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppName>,
    /// Method parameters (placement methods: the types of
    /// [`placement_admin`](super::placement_admin)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

impl AdminRequest {
    /// The request's class (from its method name; unknown methods are `Write`).
    pub fn class(&self) -> AdminClass {
        AdminClass::of_name(&self.method)
    }

    /// A request for `method`.
    pub fn new(method: AdminMethod) -> Self {
        Self {
            v: ADMIN_VERSION,
            method: method.as_str().to_owned(),
            app: None,
            params: None,
        }
    }

    /// A request for `method` with `params`.
    pub fn with_params<T: Serialize>(method: AdminMethod, params: &T) -> Result<Self> {
        let params = serde_json::to_value(params)
            .map_err(|e| Error::Internal(format!("encode admin params: {e}")))?;
        Ok(Self {
            params: Some(params),
            ..Self::new(method)
        })
    }

    /// The typed parameters (`InvalidArgument` when missing or of the wrong shape).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T> {
        let value = self
            .params
            .clone()
            .ok_or_else(|| Error::InvalidArgument(format!("{} needs parameters", self.method)))?;
        serde_json::from_value(value)
            .map_err(|e| Error::InvalidArgument(format!("{} parameters: {e}", self.method)))
    }

    /// A request for `method` about `app`.
    pub fn for_app(method: AdminMethod, app: AppName) -> Self {
        Self {
            app: Some(app),
            ..Self::new(method)
        }
    }

    /// Encodes as JSON with its headers.
    pub fn encode(&self) -> Result<(Headers, Bytes)> {
        let body = serde_json::to_vec(self)
            .map_err(|e| Error::Internal(format!("encode admin request: {e}")))?;
        Ok((version_headers(), Bytes::from(body)))
    }

    /// Decodes and checks the version; an unknown method is `UnknownMethod`.
    pub fn decode(headers: &Headers, bytes: &[u8]) -> Result<(AdminMethod, Self)> {
        super::rpc::check_version(headers)?;
        let req: AdminRequest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("admin request: {e}")))?;
        if req.v != ADMIN_VERSION {
            return Err(Error::Malformed(format!(
                "admin request version {} (this node understands {ADMIN_VERSION})",
                req.v
            )));
        }
        let method = AdminMethod::parse(&req.method).ok_or_else(|| Error::UnknownMethod {
            app: "_admin".to_owned(),
            method: req.method.clone(),
        })?;
        Ok((method, req))
    }
}

fn version_headers() -> Headers {
    Headers::new().with(h::VERSION, PROTOCOL_VERSION.to_string())
}

/// An error carried in an admin reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminError {
    /// `Error::kind` of the error (`not_leader`, `app_not_found`, …).
    pub kind: String,
    /// Human-readable message.
    pub message: String,
    /// Leader hint of a `not_leader` error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// Epoch hint of a `not_leader` error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

impl AdminError {
    /// The wire form of `error`.
    pub fn from_error(error: &Error) -> Self {
        let (leader, epoch) = match error {
            Error::NotLeader { leader, epoch } => (leader.clone(), *epoch),
            _ => (None, None),
        };
        Self {
            kind: error.kind().to_owned(),
            message: error.to_string(),
            leader,
            epoch,
        }
    }

    /// The error this wire form describes (variants without a payload of their own become
    /// `Handler` with the message).
    pub fn into_error(self) -> Error {
        let m = self.message;
        match self.kind.as_str() {
            "not_leader" => Error::NotLeader {
                leader: self.leader,
                epoch: self.epoch,
            },
            "no_leader" => Error::NoLeader(strip(
                &m,
                "no leader: no node currently holds leadership of ",
            )),
            "app_not_found" => Error::AppNotFound(strip(&m, "app not found: ")),
            "node_not_found" => Error::NodeNotFound(strip(&m, "node not found: ")),
            "shutting_down" => Error::ShuttingDown,
            "timeout" => Error::Timeout(strip(&m, "operation timed out: ")),
            "malformed" => Error::Malformed(strip(&m, "malformed message: ")),
            "invalid_argument" => Error::InvalidArgument(strip(&m, "invalid argument: ")),
            "unsupported" => Error::Unsupported(strip(&m, "not supported: ")),
            "unavailable" => Error::Unavailable(strip(&m, "unavailable: ")),
            "unknown_method" => Error::UnknownMethod {
                app: "_admin".to_owned(),
                method: m,
            },
            _ => Error::Handler(m),
        }
    }
}

fn strip(message: &str, prefix: &str) -> String {
    message.strip_prefix(prefix).unwrap_or(message).to_owned()
}

/// An admin reply (the JSON payload): exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminReply {
    /// Format version ([`ADMIN_VERSION`]).
    pub v: u32,
    /// The node that answered.
    pub node: NodeId,
    /// The live members the answering node sees (lets a broadcaster stop waiting once every
    /// one of them has answered).
    pub members: Vec<NodeId>,
    /// The method's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error, when the method failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AdminError>,
}

impl AdminReply {
    /// A successful reply.
    pub fn ok<T: Serialize>(node: NodeId, members: Vec<NodeId>, result: &T) -> Result<Self> {
        let result = serde_json::to_value(result)
            .map_err(|e| Error::Internal(format!("encode admin result: {e}")))?;
        Ok(Self {
            v: ADMIN_VERSION,
            node,
            members,
            result: Some(result),
            error: None,
        })
    }

    /// An error reply.
    pub fn err(node: NodeId, members: Vec<NodeId>, error: &Error) -> Self {
        Self {
            v: ADMIN_VERSION,
            node,
            members,
            result: None,
            error: Some(AdminError::from_error(error)),
        }
    }

    /// Encodes as JSON with its headers.
    pub fn encode(&self) -> Result<(Headers, Bytes)> {
        let body = serde_json::to_vec(self)
            .map_err(|e| Error::Internal(format!("encode admin reply: {e}")))?;
        let headers = version_headers().with(h::REPLY_NODE, self.node.as_str());
        Ok((headers, Bytes::from(body)))
    }

    /// Decodes and checks the version.
    pub fn decode(headers: &Headers, bytes: &[u8]) -> Result<Self> {
        super::rpc::check_version(headers)?;
        let reply: AdminReply = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("admin reply: {e}")))?;
        if reply.v != ADMIN_VERSION {
            return Err(Error::Malformed(format!(
                "admin reply version {} (this client understands {ADMIN_VERSION})",
                reply.v
            )));
        }
        if reply.result.is_some() == reply.error.is_some() {
            return Err(Error::Malformed(
                "admin reply must carry exactly one of result and error".into(),
            ));
        }
        Ok(reply)
    }

    /// The typed result, or the error the node reported.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T> {
        if let Some(e) = self.error {
            return Err(e.into_error());
        }
        let value = self.result.unwrap_or(serde_json::Value::Null);
        serde_json::from_value(value)
            .map_err(|e| Error::Malformed(format!("admin result from {}: {e}", self.node)))
    }
}

/// Health of one app instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceHealth {
    /// Whether the instance reports itself healthy.
    pub healthy: bool,
    /// Why it is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One app's instance on the answering node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstance {
    /// The app.
    pub name: AppName,
    /// Its mode.
    pub mode: Mode,
    /// The instance's role on this node.
    pub role: Role,
    /// The epoch of the term this instance leads (leaders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    /// The leader this node observes (Singleton apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// The observed leader's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<Epoch>,
    /// The instance's health.
    pub health: InstanceHealth,
}

/// The answering node's own status (`node.status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node: NodeId,
    /// Platform.
    pub platform: PlatformName,
    /// Process incarnation.
    pub instance: String,
    /// Version of the software the node runs.
    pub version: String,
    /// Advertised address.
    pub address: String,
    /// Labels.
    pub labels: Labels,
    /// Whether every app instance on the node is healthy.
    pub healthy: bool,
    /// Whether the node is shutting down or a placement drain of it is recorded (`drain.{node}`,
    /// also after a drain that timed out, until one completes or the node is uncordoned).
    pub draining: bool,
    /// Seconds since the node joined (its own clock).
    pub uptime_secs: u64,
    /// The apps registered on the node.
    pub apps: Vec<AppInstance>,
}

/// One app as seen platform-wide by the answering node: from its membership view and the
/// app's lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// The app.
    pub name: AppName,
    /// Its mode.
    pub mode: Mode,
    /// Live nodes running it.
    pub nodes: Vec<NodeId>,
    /// The current leader (Singleton apps; `None` when there is none, e.g. during a hand-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// The leader's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    /// While no valid lease is known: for how long (milliseconds, on the answering node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_leader_ms: Option<u64>,
}

/// Result of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The answering node.
    pub node: NodeStatus,
    /// Its membership view (the member records).
    pub members: Vec<MemberRecord>,
    /// Its view of every app.
    pub apps: Vec<AppView>,
}

/// Result of `app.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppList {
    /// Every app some live member runs.
    pub apps: Vec<AppView>,
}

/// Result of `app.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatusReply {
    /// The app as seen platform-wide.
    pub app: AppView,
    /// Its instance on the answering node, if it runs there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<AppInstance>,
}

/// One completed step-down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteppedDown {
    /// The app.
    pub app: AppName,
    /// The epoch of the term that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

/// Result of `stepdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDownReply {
    /// The terms that ended (empty when the node led nothing and no app was named).
    pub stepped_down: Vec<SteppedDown>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_methods_are_named() {
        let req = AdminRequest::for_app(AdminMethod::StepDown, "db".parse().unwrap());
        let (headers, body) = req.encode().unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"v":1,"method":"stepdown","app":"db"}"#
        );
        let (method, back) = AdminRequest::decode(&headers, &body).unwrap();
        assert_eq!(method, AdminMethod::StepDown);
        assert_eq!(back, req);
        let err = AdminRequest::decode(&headers, br#"{"v":1,"method":"nope"}"#).unwrap_err();
        assert_eq!(err.kind(), "unknown_method");
        let err = AdminRequest::decode(&headers, br#"{"v":2,"method":"status"}"#).unwrap_err();
        assert_eq!(err.kind(), "malformed");
        assert!(AdminRequest::decode(&Headers::new(), &body).is_err());
    }

    #[test]
    fn method_names_are_stable() {
        let names: Vec<&str> = AdminMethod::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "status",
                "node.status",
                "app.list",
                "app.status",
                "stepdown",
                "placement.status",
                "node.cordon",
                "node.uncordon",
                "node.drain",
                "node.label",
                "app.move",
                "rebalance.plan",
                "app.ext",
                "rebalance.status",
                "rebalance.cancel",
                "rebalance.approve",
                "config.get",
                "config.set",
                "node.remove",
            ]
        );
    }

    #[test]
    fn errors_round_trip_with_hints() {
        let node: NodeId = "n2".parse().unwrap();
        for err in [
            Error::NotLeader {
                leader: Some("n1".parse().unwrap()),
                epoch: Some(Epoch(7)),
            },
            Error::AppNotFound("db".into()),
            Error::NodeNotFound("n9".into()),
            Error::ShuttingDown,
            Error::NoLeader("app db".into()),
            Error::InvalidArgument("x".into()),
        ] {
            let reply = AdminReply::err(node.clone(), vec![node.clone()], &err);
            let (headers, body) = reply.encode().unwrap();
            let back = AdminReply::decode(&headers, &body).unwrap();
            assert_eq!(back.into_result::<StepDownReply>().unwrap_err(), err);
        }
    }

    #[test]
    fn replies_need_exactly_one_outcome() {
        let headers = version_headers();
        let err = AdminReply::decode(&headers, br#"{"v":1,"node":"n1","members":[]}"#);
        assert!(matches!(err, Err(Error::Malformed(_))));
        let ok = AdminReply::ok(
            "n1".parse().unwrap(),
            vec![],
            &StepDownReply {
                stepped_down: vec![],
            },
        )
        .unwrap();
        let (h, b) = ok.encode().unwrap();
        let back: StepDownReply = AdminReply::decode(&h, &b).unwrap().into_result().unwrap();
        assert!(back.stepped_down.is_empty());
    }
}
