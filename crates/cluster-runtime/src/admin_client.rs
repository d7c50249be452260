//! The client side of the admin service: what the `cluster` CLI uses to talk to running nodes.
//!
//! It needs only a [`Transport`]; it never joins the membership, campaigns or subscribes to
//! anything but its own reply inbox, so it can never be mistaken for a node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;

use cluster_core::error::{Error, Result};
use cluster_core::id::{AppName, NodeId, PlatformName};
use cluster_core::transport::Transport;
use cluster_core::wire::admin::{
    AdminMethod, AdminReply, AdminRequest, AppList, AppStatusReply, NodeStatus, StatusReply,
    StepDownReply,
};
use cluster_core::wire::names::Names;

/// Where an admin request goes (admin protocol v2: on the subject of the request's class, so
/// the NATS server can tell a read from a write; nodes older than v2 answer only v1 subjects,
/// so daemons are upgraded before the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// One node (`cluster.{P}.admin.{read|write}.{node}`).
    Node(NodeId),
    /// Every node (`cluster.{P}.admin.{read|write}._all`), gathering replies.
    All,
}

/// Sends admin requests to the nodes of one platform.
#[derive(Clone)]
pub struct AdminClient {
    transport: Arc<dyn Transport>,
    names: Names,
    timeout: Duration,
    gather: Duration,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("platform", self.names.platform())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AdminClient {
    /// A client for `platform` over `transport`; requests to one node time out after 5 s, a
    /// broadcast gathers replies for at most 2 s (less once every live member answered).
    pub fn new(transport: Arc<dyn Transport>, platform: PlatformName) -> Self {
        Self {
            transport,
            names: Names::new(platform),
            timeout: Duration::from_secs(5),
            gather: Duration::from_secs(2),
        }
    }

    /// Sets the timeout of a request to one node.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long a broadcast waits for replies at most.
    pub fn with_gather(mut self, gather: Duration) -> Self {
        self.gather = gather;
        self
    }

    /// The platform.
    pub fn platform(&self) -> &PlatformName {
        self.names.platform()
    }

    /// Sends `request` to `target` and returns the raw replies: one for a node (a node that
    /// does not answer is `NodeNotFound`), every reply that arrived for a broadcast (empty when
    /// no node runs).
    pub async fn send(
        &self,
        target: &AdminTarget,
        request: &AdminRequest,
    ) -> Result<Vec<AdminReply>> {
        match target {
            AdminTarget::Node(node) => self.send_node(node, request).await.map(|r| vec![r]),
            AdminTarget::All => self.broadcast(request).await,
        }
    }

    async fn send_node(&self, node: &NodeId, request: &AdminRequest) -> Result<AdminReply> {
        let (headers, payload) = request.encode()?;
        let subject = self.names.admin_class_node(request.class(), node);
        let msg = match self
            .transport
            .request(&subject, headers, payload, self.timeout)
            .await
        {
            Ok(m) => m,
            Err(Error::NoResponders(_)) => {
                return Err(Error::NodeNotFound(format!(
                    "{node} (no node of platform {} with that id answers)",
                    self.names.platform()
                )));
            }
            Err(Error::Timeout(_)) => {
                return Err(Error::Timeout(format!(
                    "node {node} did not answer within {:?}",
                    self.timeout
                )));
            }
            Err(e) => return Err(e),
        };
        AdminReply::decode(&msg.headers, &msg.payload)
    }

    async fn broadcast(&self, request: &AdminRequest) -> Result<Vec<AdminReply>> {
        let (headers, payload) = request.encode()?;
        let inbox = self.transport.new_inbox();
        let mut sub = self.transport.subscribe(&inbox, None).await?;
        self.transport
            .publish(
                &self.names.admin_class_all(request.class()),
                Some(&inbox),
                headers,
                payload,
            )
            .await?;
        let deadline = tokio::time::Instant::now() + self.gather;
        let mut replies: Vec<AdminReply> = Vec::new();
        let mut expected: BTreeSet<NodeId> = BTreeSet::new();
        let mut answered: BTreeSet<NodeId> = BTreeSet::new();
        loop {
            if !answered.is_empty() && expected.is_subset(&answered) {
                break;
            }
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(msg)) => match AdminReply::decode(&msg.headers, &msg.payload) {
                    Ok(reply) => {
                        expected.extend(reply.members.iter().cloned());
                        if answered.insert(reply.node.clone()) {
                            replies.push(reply);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "ignoring a malformed admin reply"),
                },
                Ok(None) | Err(_) => break,
            }
        }
        replies.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(replies)
    }

    async fn one<T: DeserializeOwned>(&self, node: &NodeId, request: AdminRequest) -> Result<T> {
        self.send_node(node, &request).await?.into_result()
    }

    async fn all<T: DeserializeOwned>(
        &self,
        request: AdminRequest,
    ) -> Result<Vec<(NodeId, Result<T>)>> {
        Ok(self
            .broadcast(&request)
            .await?
            .into_iter()
            .map(|r| (r.node.clone(), r.into_result()))
            .collect())
    }

    /// `status` of every node that answers.
    pub async fn status_all(&self) -> Result<Vec<(NodeId, Result<StatusReply>)>> {
        self.all(AdminRequest::new(AdminMethod::Status)).await
    }

    /// `status` of one node.
    pub async fn status(&self, node: &NodeId) -> Result<StatusReply> {
        self.one(node, AdminRequest::new(AdminMethod::Status)).await
    }

    /// `node.status` of one node.
    pub async fn node_status(&self, node: &NodeId) -> Result<NodeStatus> {
        self.one(node, AdminRequest::new(AdminMethod::NodeStatus))
            .await
    }

    /// `app.list` of one node.
    pub async fn app_list(&self, node: &NodeId) -> Result<AppList> {
        self.one(node, AdminRequest::new(AdminMethod::AppList))
            .await
    }

    /// `app.status` of every node that answers.
    pub async fn app_status_all(
        &self,
        app: &AppName,
    ) -> Result<Vec<(NodeId, Result<AppStatusReply>)>> {
        self.all(AdminRequest::for_app(AdminMethod::AppStatus, app.clone()))
            .await
    }

    /// Asks `node` to step down from `app` (or from every app it leads).
    pub async fn step_down(&self, node: &NodeId, app: Option<&AppName>) -> Result<StepDownReply> {
        let request = match app {
            Some(app) => AdminRequest::for_app(AdminMethod::StepDown, app.clone()),
            None => AdminRequest::new(AdminMethod::StepDown),
        };
        self.one(node, request).await
    }
}
