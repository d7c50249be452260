//! The dev daemon's local socket: one JSON request line, one JSON response line per
//! connection. Admin requests are forwarded over the in-memory network; `kill`/`restart`
//! crash and restart dev nodes.

use std::sync::Arc;

use cluster::core::wire::admin::AdminError;
use cluster::runtime::{AdminClient, AdminTarget};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tracing::{debug, info};

use super::nodes::DevNodes;
use crate::admin::{BridgeRequest, BridgeResponse};

/// Serves the dev socket until the listener fails.
pub(crate) async fn serve(listener: UnixListener, client: AdminClient, nodes: Arc<DevNodes>) {
    let client = Arc::new(client);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (client, nodes) = (client.clone(), nodes.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let response = answer(&line, &client, &nodes).await;
            match serde_json::to_vec(&response) {
                Ok(mut bytes) => {
                    bytes.push(b'\n');
                    let _ = write.write_all(&bytes).await;
                }
                Err(e) => debug!(error = %e, "cannot encode a bridge response"),
            }
        });
    }
}

async fn answer(line: &str, client: &AdminClient, nodes: &DevNodes) -> BridgeResponse {
    let failed = |e: &cluster::Error| BridgeResponse {
        replies: Vec::new(),
        error: Some(AdminError::from_error(e)),
    };
    let done = || BridgeResponse {
        replies: Vec::new(),
        error: None,
    };
    let request = match serde_json::from_str::<BridgeRequest>(line) {
        Ok(r) => r,
        Err(e) => return failed(&cluster::Error::Malformed(format!("bridge request: {e}"))),
    };
    match request {
        BridgeRequest::Admin { node, request } => {
            let target = match node {
                Some(n) => AdminTarget::Node(n),
                None => AdminTarget::All,
            };
            match client.send(&target, &request).await {
                Ok(replies) => BridgeResponse {
                    replies,
                    error: None,
                },
                Err(e) => failed(&e),
            }
        }
        BridgeRequest::Kill { node } => match nodes.kill(&node) {
            Ok(()) => {
                info!(%node, "dev node crashed on request");
                done()
            }
            Err(f) => failed(&f.into_core()),
        },
        BridgeRequest::Restart { node } => match nodes.restart(&node).await {
            Ok(()) => {
                info!(%node, "dev node restarted on request");
                done()
            }
            Err(f) => failed(&f.into_core()),
        },
    }
}
