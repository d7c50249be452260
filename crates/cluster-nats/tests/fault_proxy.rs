//! The testkit's TCP fault proxy between a NATS client and a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_core::{Error, Headers, Transport};
use cluster_nats::NatsConnection;
use cluster_testkit::nats_server::{FaultProxy, NatsServer};
use futures::StreamExt;

const RECOVER: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_blackhole_delay_and_heal() {
    let server = NatsServer::start();
    // The responder talks to the server directly; the client goes through the proxy.
    let direct = common::connect(&[server.url()]).await.transport();
    let mut service = direct.subscribe("svc.echo", None).await.unwrap();
    let responder = direct.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let _ = responder
                .publish(&m.reply.unwrap(), None, Headers::new(), m.payload)
                .await;
        }
    });
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let client =
        NatsConnection::connect(common::test_options(&[proxy.url()]).ignore_discovered_servers())
            .await
            .unwrap();
    let t = client.transport();
    let ask = |timeout: Duration| {
        let t = t.clone();
        async move {
            t.request(
                "svc.echo",
                Headers::new(),
                Bytes::from_static(b"hi"),
                timeout,
            )
            .await
        }
    };
    assert_eq!(
        ask(RECOVER).await.unwrap().payload,
        Bytes::from_static(b"hi")
    );
    assert_eq!(proxy.connections(), 1);

    // Delay: a round trip crosses the proxy twice.
    proxy.delay(Duration::from_millis(150));
    let started = tokio::time::Instant::now();
    ask(RECOVER).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    proxy.heal();

    // Blackhole: the connection stays open but nothing gets through.
    proxy.blackhole();
    assert!(matches!(
        ask(Duration::from_millis(300)).await,
        Err(Error::Timeout(_))
    ));
    proxy.heal();
    common::eventually(RECOVER, || async {
        ask(Duration::from_millis(500)).await.ok()
    })
    .await;

    // Cut: connections closed, new ones refused, the client reports itself disconnected.
    proxy.cut();
    common::eventually(RECOVER, || async { (!client.is_connected()).then_some(()) }).await;
    assert!(matches!(
        ask(Duration::from_millis(300)).await,
        Err(Error::Unavailable(_))
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!client.is_connected(), "reconnected through a cut proxy");
    proxy.heal();
    common::eventually(RECOVER, || async { client.is_connected().then_some(()) }).await;
    common::eventually(RECOVER, || async {
        ask(Duration::from_millis(500)).await.ok()
    })
    .await;
}
