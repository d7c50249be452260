//! The transport contract against a real nats-server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_core::{Error, Headers, Transport};
use cluster_testkit::nats_server::{NatsServer, NatsServerOptions};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(5);

async fn next(sub: &mut cluster_core::Subscription) -> cluster_core::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("message in time")
        .expect("subscription open")
}

#[tokio::test]
async fn publish_subscribe_with_headers_reply_and_wildcards() {
    let server = NatsServer::start();
    let t = common::connect(&[server.url()]).await.transport();
    let mut exact = t.subscribe("app.orders.created", None).await.unwrap();
    let mut star = t.subscribe("app.*.created", None).await.unwrap();
    let mut tail = t.subscribe("app.>", None).await.unwrap();
    let headers = Headers::new().with("X-Version", "1").with("X-Trace", "abc");
    t.publish(
        "app.orders.created",
        Some("reply.here"),
        headers.clone(),
        Bytes::from_static(b"hello"),
    )
    .await
    .unwrap();
    t.flush().await.unwrap();
    for sub in [&mut exact, &mut star, &mut tail] {
        let m = next(sub).await;
        assert_eq!(m.subject, "app.orders.created");
        assert_eq!(m.reply.as_deref(), Some("reply.here"));
        assert_eq!(m.headers.get("X-Version"), Some("1"));
        assert_eq!(m.headers.get("X-Trace"), Some("abc"));
        assert_eq!(m.payload, Bytes::from_static(b"hello"));
    }
    // Order from one publisher is kept.
    for i in 0..50 {
        t.publish("app.seq", None, Headers::new(), Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(&mut tail).await.payload, Bytes::from(format!("{i}")));
    }
    assert!(matches!(
        t.publish("a.*", None, Headers::new(), Bytes::new()).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        t.subscribe("a..b", None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(t.new_inbox() != t.new_inbox());
}

#[tokio::test]
async fn queue_group_delivers_each_message_once() {
    let server = NatsServer::start();
    let t = common::connect(&[server.url()]).await.transport();
    let mut a = t.subscribe("work", Some("workers")).await.unwrap();
    let mut b = t.subscribe("work", Some("workers")).await.unwrap();
    let mut observer = t.subscribe("work", None).await.unwrap();
    for i in 0..40 {
        t.publish("work", None, Headers::new(), Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    for _ in 0..40 {
        next(&mut observer).await;
    }
    t.flush().await.unwrap();
    let mut got = Vec::new();
    for sub in [&mut a, &mut b] {
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            got.push(m.payload);
        }
    }
    got.sort();
    let mut want: Vec<Bytes> = (0..40).map(|i| Bytes::from(format!("{i}"))).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn request_reply_no_responders_and_timeout() {
    let server = NatsServer::start();
    let t = common::connect(&[server.url()]).await.transport();
    let mut service = t.subscribe("svc.echo", None).await.unwrap();
    let responder = t.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let reply = m.reply.unwrap();
            let headers = Headers::new().with("X-Echo", m.headers.get("X-In").unwrap_or(""));
            responder
                .publish(&reply, None, headers, m.payload)
                .await
                .unwrap();
        }
    });
    let reply = t
        .request(
            "svc.echo",
            Headers::new().with("X-In", "42"),
            Bytes::from_static(b"ping"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"ping"));
    assert_eq!(reply.headers.get("X-Echo"), Some("42"));

    match t
        .request("svc.nobody", Headers::new(), Bytes::new(), WAIT)
        .await
    {
        Err(Error::NoResponders(subject)) => assert_eq!(subject, "svc.nobody"),
        other => panic!("expected NoResponders, got {other:?}"),
    }

    let _silent = t.subscribe("svc.silent", None).await.unwrap();
    let started = tokio::time::Instant::now();
    let timeout = Duration::from_millis(300);
    match t
        .request("svc.silent", Headers::new(), Bytes::new(), timeout)
        .await
    {
        Err(Error::Timeout(_)) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout);
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let server = NatsServer::start();
    let t = common::connect(&[server.url()]).await.transport();
    let sub = t.subscribe("svc.gone", None).await.unwrap();
    drop(sub);
    // Once the UNSUB reached the server, nobody is subscribed any more.
    common::eventually(WAIT, || {
        let t = t.clone();
        async move {
            matches!(
                t.request(
                    "svc.gone",
                    Headers::new(),
                    Bytes::new(),
                    Duration::from_millis(200)
                )
                .await,
                Err(Error::NoResponders(_))
            )
            .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn payloads_over_max_payload_are_rejected_before_sending() {
    let server = NatsServer::start_with(NatsServerOptions {
        max_payload: Some(4096),
        ..NatsServerOptions::default()
    });
    let t = common::connect(&[server.url()]).await.transport();
    assert_eq!(t.max_payload(), 4096);
    let mut sub = t.subscribe("big", None).await.unwrap();
    let ok = Bytes::from(vec![1u8; 4096]);
    t.publish("big", None, Headers::new(), ok.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload.len(), 4096);
    match t
        .publish("big", None, Headers::new(), Bytes::from(vec![1u8; 4097]))
        .await
    {
        Err(Error::PayloadTooLarge {
            size: 4097,
            max: 4096,
        }) => {}
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    // Headers count towards the limit.
    let headers = Headers::new().with("X-Pad", "p");
    assert!(matches!(
        t.publish("big", None, headers.clone(), ok.clone()).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        t.request("big", headers, ok, WAIT).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    // Nothing was sent: the connection is still fine and nothing else arrived.
    t.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err()
    );
}
