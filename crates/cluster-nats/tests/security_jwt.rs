//! Managed mode against a real nats-server in operator mode: the platform's account signs
//! short-lived user JWTs; a minted `app:a` identity has exactly its role's permissions, and an
//! expired one is refused at connect with an error saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvStore, Transport};
use cluster_nats::security::{Layout, Role, generate_managed, mint};
use cluster_nats::{ConnectOptions, NatsConnection};
use cluster_testkit::nats_server::{NatsServer, NatsServerOptions};

#[tokio::test]
async fn minted_user_jwts_carry_the_role_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let platform = "p".parse().unwrap();
    let managed = generate_managed(&platform, dir.path()).unwrap();
    let mode = std::fs::metadata(&managed.account_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![std::fs::read_to_string(&managed.server_config).unwrap()],
        ..NatsServerOptions::default()
    });
    let layout = Layout::new(
        platform,
        Vec::new(),
        vec!["a".parse().unwrap(), "b".parse().unwrap()],
    );
    let role = Role::App("a".parse().unwrap());
    let options = |path: &std::path::Path| {
        ConnectOptions::new([server.url()])
            .creds_file(path)
            .inbox_prefix(role.inbox_prefix(layout.platform()))
            .request_timeout(Duration::from_secs(1))
    };

    let creds = dir.path().join("app-a.creds");
    let expiry = mint(
        &layout,
        &role,
        &managed.account_key,
        Duration::from_secs(600),
        &creds,
    )
    .unwrap();
    assert!(expiry > SystemTime::now());
    let conn = NatsConnection::connect(options(&creds)).await.unwrap();
    let bucket = conn
        .kv_store(None)
        .bucket(BucketConfig::new("p_app_a"))
        .await
        .unwrap();
    bucket.put("k", Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(conn.permission_violations(), 0);
    let b_rpc = conn
        .client()
        .request("cluster.p.app.b.rpc._any", Bytes::new())
        .await;
    conn.transport().flush().await.unwrap();
    assert!(b_rpc.is_err());
    assert_eq!(
        conn.permission_violations(),
        1,
        "b's RPC is refused to app:a"
    );

    // Refreshing replaces the file; a JWT that expired is refused before connecting, naming
    // the file (the server itself only says "authorization violation").
    mint(
        &layout,
        &role,
        &managed.account_key,
        Duration::from_secs(1),
        &creds,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    match NatsConnection::connect(options(&creds)).await {
        Err(Error::InvalidArgument(text)) => {
            assert!(
                text.contains("expired") && text.contains("app-a.creds"),
                "{text}"
            );
        }
        other => panic!("an expired JWT must be refused: {other:?}"),
    }
}
