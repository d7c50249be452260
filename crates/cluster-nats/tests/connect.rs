//! Connecting: version gate, authentication and TLS against real servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvStore};
use cluster_nats::{ConnectOptions, NatsConnection, TlsOptions, parse_version};
use cluster_testkit::nats_server::{NatsServer, NatsServerOptions, make_certs};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn reports_the_server_version() {
    let server = NatsServer::start();
    let conn = common::connect(&[server.url()]).await;
    assert!(conn.is_connected());
    assert!(parse_version(&conn.server_version()).unwrap() >= (2, 11, 0));
    conn.close().await.unwrap();
}

/// A fake server that speaks just enough of the protocol to announce an old version.
async fn fake_server(version: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"{version}\",\
                     \"proto\":1,\"headers\":true,\"max_payload\":1048576,\"host\":\"127.0.0.1\",\
                     \"port\":{}}}\r\n",
                    addr.port()
                );
                write.write_all(info.as_bytes()).await.unwrap();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && write.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("nats://{addr}")
}

#[tokio::test]
async fn refuses_servers_older_than_2_11() {
    let url = fake_server("2.10.26").await;
    match NatsConnection::connect(ConnectOptions::new([url])).await {
        Err(Error::Unsupported(message)) => {
            assert!(message.contains("2.10.26"), "{message}");
            assert!(message.contains("2.11.0"), "{message}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // The gate passes a new enough server.
    let url = fake_server("2.11.0").await;
    NatsConnection::connect(ConnectOptions::new([url]))
        .await
        .unwrap();
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_bad_options_are_invalid() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result =
        NatsConnection::connect(ConnectOptions::new([format!("nats://127.0.0.1:{port}")])).await;
    assert!(
        matches!(result, Err(Error::Unavailable(_) | Error::Timeout(_))),
        "{result:?}"
    );
    assert!(matches!(
        NatsConnection::connect(ConnectOptions::new(Vec::<String>::new())).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        NatsConnection::connect(
            ConnectOptions::new(["nats://127.0.0.1:1"]).creds_file("/nonexistent.creds")
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn token_and_user_password_authentication() {
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec!["authorization { token: \"s3cret\" }".to_owned()],
        ..NatsServerOptions::default()
    });
    let ok = NatsConnection::connect(common::test_options(&[server.url()]).token("s3cret"))
        .await
        .unwrap();
    let kv = ok
        .kv_store(None)
        .bucket(BucketConfig::new("auth"))
        .await
        .unwrap();
    kv.put("k", Bytes::from_static(b"v")).await.unwrap();
    let denied =
        NatsConnection::connect(common::test_options(&[server.url()]).token("wrong")).await;
    assert!(
        matches!(denied, Err(Error::InvalidArgument(_))),
        "{denied:?}"
    );

    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![
            "authorization { users: [ { user: \"alice\", password: \"pw\" } ] }".to_owned(),
        ],
        ..NatsServerOptions::default()
    });
    NatsConnection::connect(common::test_options(&[server.url()]).user_password("alice", "pw"))
        .await
        .unwrap();
    let denied = NatsConnection::connect(
        common::test_options(&[server.url()]).user_password("alice", "nope"),
    )
    .await;
    assert!(
        matches!(denied, Err(Error::InvalidArgument(_))),
        "{denied:?}"
    );
}

#[tokio::test]
async fn mutual_tls() {
    let dir = std::env::temp_dir().join(common::unique(&format!("tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir, &["client"]);
    let p = |f: &str| dir.join(f).display().to_string();
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 2 }}",
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        )],
        ..NatsServerOptions::default()
    });
    let tls = TlsOptions {
        ca_file: Some(dir.join("ca.pem")),
        client_cert: Some(dir.join("client.pem")),
        client_key: Some(dir.join("client.key")),
    };
    let conn = NatsConnection::connect(common::test_options(&[server.url()]).tls(tls.clone()))
        .await
        .unwrap();
    let kv = conn
        .kv_store(None)
        .bucket(BucketConfig::new("tls"))
        .await
        .unwrap();
    kv.put("k", Bytes::from_static(b"v")).await.unwrap();

    // Without a client certificate the server refuses the connection.
    let no_cert = TlsOptions {
        client_cert: None,
        client_key: None,
        ..tls
    };
    let mut options = common::test_options(&[server.url()]).tls(no_cert);
    options.connect_timeout = Duration::from_secs(2);
    assert!(NatsConnection::connect(options).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
