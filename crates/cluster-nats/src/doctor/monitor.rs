//! A minimal HTTP/1.0 GET of the server's monitoring endpoint (`/varz`), no HTTP crate needed.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// `GET {url}{path}` as JSON (`url` = `http://host:port`); errors are texts saying what failed.
pub(super) fn get_json(url: &str, path: &str) -> Result<serde_json::Value, String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("monitor URL {url:?}: only http://host:port is supported"))?
        .trim_end_matches('/');
    let fail = |e: &dyn std::fmt::Display| format!("monitor {url}{path}: {e}");
    let addr = host
        .to_socket_addrs()
        .map_err(|e| fail(&e))?
        .next()
        .ok_or_else(|| fail(&"no address"))?;
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(&e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| fail(&e))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| fail(&e))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| fail(&e))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail(&"no HTTP response"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(fail(&head.lines().next().unwrap_or("")));
    }
    serde_json::from_str(body).map_err(|e| fail(&e))
}

/// Servers in the cluster per `/varz`: its routes' URLs plus itself.
pub(super) fn cluster_size(varz: &serde_json::Value) -> usize {
    varz["cluster"]["urls"].as_array().map_or(0, Vec::len) + 1
}
