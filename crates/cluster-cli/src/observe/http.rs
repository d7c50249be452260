//! A minimal HTTP/1.1 server for the health and metrics endpoints: GET only, one request per
//! connection (`Connection: close`), bounded request head. Enough for Prometheus scrapes,
//! load-balancer and Kubernetes probes, without an HTTP framework.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::exit::{CliResult, Code, Failure};

/// Largest accepted request head.
const MAX_HEAD: usize = 8 * 1024;
/// A client must send its request within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: format!("{value}\n"),
        }
    }

    pub(crate) fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Binds `addr` (failing loudly: the caller stops the daemon) and serves `handler` for GET
/// paths until the task is aborted.
pub(crate) async fn serve<H, F>(
    what: &str,
    addr: SocketAddr,
    handler: H,
) -> CliResult<(SocketAddr, JoinHandle<()>)>
where
    H: Fn(String) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Failure::new(
            Code::Error,
            format!("cannot listen on {addr} for the {what} server: {e}"),
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(Code::Error, format!("{what} server on {addr}: {e}")))?;
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, handler.as_ref()).await {
                    debug!(error = %e, "http connection failed");
                }
            });
        }
    });
    Ok((local, task))
}

async fn connection<H, F>(mut stream: TcpStream, handler: &H) -> std::io::Result<()>
where
    H: Fn(String) -> F,
    F: Future<Output = Response>,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_HEAD {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(READ_TIMEOUT, read).await.is_err() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let response = match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => {
            let path = target.split('?').next().unwrap_or("/").to_owned();
            handler(path).await
        }
        (Some(_), Some(_)) => Response::text(405, "only GET is supported\n"),
        _ => Response::text(400, "bad request\n"),
    };
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.content_type,
        response.body.len(),
        response.body
    );
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}
