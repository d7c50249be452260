//! How admin commands reach the daemons: NATS request/reply (the library's
//! [`AdminClient`]), or the local socket of a dev daemon, which forwards the same requests over
//! its in-memory network. Either way the command never registers as a node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster::core::wire::admin::{AdminError, AdminReply, AdminRequest};
use cluster::nats::NatsConnection;
use cluster::runtime::{AdminClient, AdminTarget};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::exit::{CliResult, Code, Failure};
use crate::settings::Settings;

/// A dev-socket request: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub(crate) enum BridgeRequest {
    /// An admin request, forwarded over the in-memory network.
    Admin {
        /// `None`: every node; `Some(n)`: node `n`.
        node: Option<cluster::NodeId>,
        /// The admin request.
        request: AdminRequest,
    },
    /// Crash a dev node (`cluster --dev kill <node>`).
    Kill {
        /// The node.
        node: cluster::NodeId,
    },
    /// Restart a crashed dev node (`cluster --dev restart <node>`).
    Restart {
        /// The node.
        node: cluster::NodeId,
    },
}

/// A dev-socket response: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BridgeResponse {
    /// The replies.
    #[serde(default)]
    pub(crate) replies: Vec<AdminReply>,
    /// The error, when the request could not be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<AdminError>,
}

/// A way to the daemons.
pub(crate) enum Channel {
    /// Over NATS.
    Nats {
        client: AdminClient,
        conn: NatsConnection,
        servers: String,
    },
    /// Over the dev daemon's socket.
    Dev { socket: PathBuf },
}

impl Channel {
    /// Opens the channel the settings ask for.
    pub(crate) async fn open(settings: &Settings) -> CliResult<Self> {
        if settings.global.dev {
            let socket = settings.dev_socket();
            if !socket.exists() {
                return Err(Failure::new(
                    Code::Error,
                    format!(
                        "no dev daemon socket at {}: start one with `cluster run --dev` (same --platform), \
                         or drop --dev to talk to daemons over NATS",
                        socket.display()
                    ),
                ));
            }
            return Ok(Channel::Dev { socket });
        }
        let servers = settings.nats.servers.join(",");
        let conn = cluster::nats::connect(settings.connect_options("cluster-cli", &settings.operator_role()))
            .await
            .map_err(|e| {
                Failure::new(
                    Code::Error,
                    format!(
                        "cannot connect to NATS at {servers}: {e}. Is nats-server running? Pass --nats \
                         (or CLUSTER_NATS, or [nats] servers in --config); for the in-memory dev platform \
                         use --dev"
                    ),
                )
            })?;
        let client = AdminClient::new(Arc::new(conn.transport()), settings.platform.clone())
            .with_timeout(settings.timeout)
            .with_gather(settings.timeout.min(std::time::Duration::from_secs(2)));
        Ok(Channel::Nats {
            client,
            conn,
            servers,
        })
    }

    /// Where the daemons were looked for (for messages).
    pub(crate) fn describe(&self) -> String {
        match self {
            Channel::Nats { servers, .. } => format!("NATS {servers}"),
            Channel::Dev { socket } => format!("dev socket {}", socket.display()),
        }
    }

    /// Sends `request` to `target`.
    pub(crate) async fn send(
        &self,
        target: &AdminTarget,
        request: &AdminRequest,
    ) -> Result<Vec<AdminReply>, cluster::Error> {
        match self {
            Channel::Nats { client, .. } => client.send(target, request).await,
            Channel::Dev { socket } => bridge_call(socket, target, request).await,
        }
    }

    /// Sends `request` to `target`, waiting up to `timeout` for a reply (long operations such
    /// as a drain or a move answer when they completed).
    pub(crate) async fn send_waiting(
        &self,
        target: &AdminTarget,
        request: &AdminRequest,
        timeout: std::time::Duration,
    ) -> Result<Vec<AdminReply>, cluster::Error> {
        match self {
            Channel::Nats { client, .. } => {
                client
                    .clone()
                    .with_timeout(timeout)
                    .send(target, request)
                    .await
            }
            Channel::Dev { socket } => bridge_call(socket, target, request).await,
        }
    }

    /// Closes the connection.
    pub(crate) async fn close(self) {
        if let Channel::Nats { conn, .. } = self {
            let _ = conn.close().await;
        }
    }
}

async fn bridge_call(
    socket: &Path,
    target: &AdminTarget,
    request: &AdminRequest,
) -> Result<Vec<AdminReply>, cluster::Error> {
    let req = BridgeRequest::Admin {
        node: match target {
            AdminTarget::Node(n) => Some(n.clone()),
            AdminTarget::All => None,
        },
        request: request.clone(),
    };
    bridge_send(socket, &req).await
}

/// Sends a crash or restart of a dev node to the dev daemon.
pub(crate) async fn dev_control(socket: &Path, req: &BridgeRequest) -> Result<(), cluster::Error> {
    bridge_send(socket, req).await.map(|_| ())
}

async fn bridge_send(
    socket: &Path,
    req: &BridgeRequest,
) -> Result<Vec<AdminReply>, cluster::Error> {
    let unavailable = |e: std::io::Error| {
        cluster::Error::Unavailable(format!("dev socket {}: {e}", socket.display()))
    };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(unavailable)?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&req)
        .map_err(|e| cluster::Error::Internal(format!("encode bridge request: {e}")))?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(unavailable)?;
    let mut reply = String::new();
    BufReader::new(read)
        .read_line(&mut reply)
        .await
        .map_err(unavailable)?;
    let resp: BridgeResponse = serde_json::from_str(&reply)
        .map_err(|e| cluster::Error::Malformed(format!("dev socket reply: {e}")))?;
    match resp.error {
        Some(e) => Err(e.into_error()),
        None => Ok(resp.replies),
    }
}
