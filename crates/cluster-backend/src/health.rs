//! Health probes shared by the backends: a TCP connect and a plain HTTP/1.0 GET.
//!
//! The HTTP probe speaks just enough HTTP over a `TcpStream` to read the status line, so the
//! crate needs no HTTP client: `http://host:port/path` only (no TLS, no redirects).

use std::time::Duration;

use cluster_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A health check run against a backend's service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HealthProbe {
    /// No probe: healthy while the service runs.
    #[default]
    None,
    /// Healthy when a TCP connection to `host:port` succeeds.
    Tcp(String),
    /// Healthy when `GET` on the URL (`http://host:port/path`) answers 2xx.
    Http(String),
}

impl HealthProbe {
    /// Runs the probe once, bounded by `timeout`.
    pub async fn check(&self, timeout: Duration) -> Result<()> {
        let run = async {
            match self {
                HealthProbe::None => Ok(()),
                HealthProbe::Tcp(addr) => TcpStream::connect(addr.as_str())
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Unavailable(format!("tcp health check {addr}: {e}"))),
                HealthProbe::Http(url) => http_get_status(url).await.and_then(|code| {
                    if (200..300).contains(&code) {
                        Ok(())
                    } else {
                        Err(Error::Unavailable(format!(
                            "http health check {url}: status {code}"
                        )))
                    }
                }),
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Error::Timeout(format!("health check {self:?} after {timeout:?}")))?
    }
}

/// Splits `http://host[:port][/path]` into (`host:port`, host, path).
fn parse_http_url(url: &str) -> Result<(String, String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Error::InvalidArgument(format!("health URL {url:?} must start with http://"))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "health URL {url:?} has no host"
        )));
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty())
        .map(|(h, _)| h)
        .unwrap_or(authority);
    let addr = if host.len() == authority.len() {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    Ok((addr, host.to_owned(), path.to_owned()))
}

/// `GET url` over HTTP/1.0; returns the status code.
pub async fn http_get_status(url: &str) -> Result<u16> {
    let (addr, host, path) = parse_http_url(url)?;
    let unavailable = |e: std::io::Error| Error::Unavailable(format!("GET {url}: {e}"));
    let mut stream = TcpStream::connect(addr.as_str())
        .await
        .map_err(unavailable)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(unavailable)?;
    // The status line fits in the first read of a few hundred bytes; read until its end.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(unavailable)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    // "HTTP/1.1 200 OK"
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| Error::Unavailable(format!("GET {url}: malformed status line {line:?}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/health").unwrap(),
            (
                "127.0.0.1:8080".into(),
                "127.0.0.1".into(),
                "/health".into()
            )
        );
        assert_eq!(
            parse_http_url("http://localhost").unwrap(),
            ("localhost:80".into(), "localhost".into(), "/".into())
        );
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http:///x").is_err());
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let probe = HealthProbe::Http(format!("http://{addr}/health"));
        probe.check(Duration::from_secs(5)).await.unwrap();
        let err = probe.check(Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        server.await.unwrap();
        // Nothing listens any more: connection refused, reported as unavailable.
        let err = probe.check(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), "unavailable", "{err}");
    }
}
