//! Conformance suite for [`Transport`] (see its contract).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::{Error, Headers, Message, Result, Subscription, Transport};
use futures::StreamExt;
use futures::future::join_all;
use futures::stream::select_all;
use tokio::time::Instant;

use super::{DEADLINE, announce, ok, unique_name, within};

/// Hands out connections to one message network.
///
/// # To ensure correctness
///
/// * Every [`TransportFactory::connect`] returns an independent connection ("another client")
///   to the **same** network.
/// * [`TransportFactory::subject_prefix`] returns a subject prefix no earlier scenario used, so
///   scenarios never see each other's traffic.
#[async_trait]
pub trait TransportFactory: Send + Sync {
    /// A new connection to the shared network.
    async fn connect(&self) -> Result<Arc<dyn Transport>>;

    /// A fresh subject prefix (one or more tokens, no wildcards) for `scenario`.
    fn subject_prefix(&self, scenario: &str) -> String {
        format!("conformance.{}", unique_name(scenario))
    }
}

/// Runs every scenario of the suite, in order.
pub async fn run_all(factory: &dyn TransportFactory) {
    pub_sub(factory).await;
    wildcard_routing(factory).await;
    queue_group_exactly_once(factory).await;
    request_reply(factory).await;
    no_responders(factory).await;
    request_timeout(factory).await;
    headers_round_trip(factory).await;
    oversize_rejected(factory).await;
    invalid_subject_rejected(factory).await;
    unsubscribe_on_drop(factory).await;
    burst_of_1000_in_order(factory).await;
}

const SENTINEL: &str = "Conformance-Sentinel";

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn connect(factory: &dyn TransportFactory) -> Arc<dyn Transport> {
    ok("connect", factory.connect().await)
}

async fn recv(sub: &mut Subscription, what: &str) -> Message {
    within(what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
}

/// Publishes a sentinel message (header [`SENTINEL`]).
async fn publish_sentinel(t: &dyn Transport, subject: &str) {
    let headers = Headers::new().with(SENTINEL, "1");
    ok(
        "publish sentinel",
        t.publish(subject, None, headers, Bytes::new()).await,
    );
}

/// Receives until the sentinel; since one publisher's messages arrive in order, what came
/// before it is everything that publisher sent earlier to this subscription.
async fn until_sentinel(sub: &mut Subscription, what: &str) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        let m = recv(sub, what).await;
        if m.headers.get(SENTINEL).is_some() {
            return got;
        }
        got.push(m);
    }
}

/// A subscriber receives, in publish order, every message published after `subscribe`
/// returned, with subject, reply and payload intact.
pub async fn pub_sub(factory: &dyn TransportFactory) {
    announce("transport", "pub_sub");
    let p = factory.subject_prefix("pub_sub");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let mut sub = ok("subscribe", b2.subscribe(&format!("{p}.ps"), None).await);
    let mut own = ok(
        "subscribe on publisher",
        a.subscribe(&format!("{p}.ps"), None).await,
    );
    let reply = format!("{p}.reply");
    for i in 0..3 {
        let r = (i == 1).then_some(reply.as_str());
        let subj = format!("{p}.ps");
        ok(
            "publish",
            a.publish(&subj, r, Headers::new(), b(&format!("m{i}")))
                .await,
        );
    }
    for s in [&mut sub, &mut own] {
        for i in 0..3 {
            let m = recv(s, "message").await;
            assert_eq!(m.subject, format!("{p}.ps"));
            assert_eq!(
                m.payload,
                b(&format!("m{i}")),
                "messages must arrive in publish order"
            );
            assert_eq!(m.reply.as_deref(), (i == 1).then_some(reply.as_str()));
        }
    }
}

/// `*` matches exactly one token, `>` one or more trailing tokens, literal subjects only
/// themselves.
pub async fn wildcard_routing(factory: &dyn TransportFactory) {
    announce("transport", "wildcard_routing");
    let p = factory.subject_prefix("wildcards");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let patterns = ["a.*", ">", "a.b", "*.b"];
    let mut subs = Vec::new();
    for pat in patterns {
        subs.push(ok(
            "subscribe",
            b2.subscribe(&format!("{p}.{pat}"), None).await,
        ));
    }
    for s in ["a.b", "a.c", "x.b", "x.y.z", "a", "a.b.c"] {
        ok(
            "publish",
            a.publish(&format!("{p}.{s}"), None, Headers::new(), b(s))
                .await,
        );
    }
    // Matches every pattern above.
    publish_sentinel(a.as_ref(), &format!("{p}.a.b")).await;
    let expected: [&[&str]; 4] = [
        &["a.b", "a.c"],
        &["a.b", "a.c", "x.b", "x.y.z", "a", "a.b.c"],
        &["a.b"],
        &["a.b", "x.b"],
    ];
    for ((pat, sub), want) in patterns.iter().zip(subs.iter_mut()).zip(expected) {
        let got: Vec<String> = until_sentinel(sub, pat)
            .await
            .into_iter()
            .map(|m| m.subject[p.len() + 1..].to_owned())
            .collect();
        assert_eq!(got, want, "subscription {pat}");
    }
}

/// Each message published to a queue group reaches exactly one member; plain subscribers on
/// the same subject still get every message.
pub async fn queue_group_exactly_once(factory: &dyn TransportFactory) {
    announce("transport", "queue_group_exactly_once");
    let p = factory.subject_prefix("queue");
    let (a, b2, c) = (
        connect(factory).await,
        connect(factory).await,
        connect(factory).await,
    );
    let subject = format!("{p}.work");
    let mut members = Vec::new();
    for conn in [&b2, &b2, &c] {
        members.push(ok(
            "queue subscribe",
            conn.subscribe(&subject, Some("workers")).await,
        ));
    }
    let mut other_group = ok(
        "queue subscribe",
        c.subscribe(&subject, Some("others")).await,
    );
    let mut plain = ok("subscribe", c.subscribe(&subject, None).await);
    const N: usize = 30;
    for i in 0..N {
        ok(
            "publish",
            a.publish(&subject, None, Headers::new(), b(&i.to_string()))
                .await,
        );
    }
    for i in 0..N {
        assert_eq!(
            recv(&mut plain, "plain subscriber").await.payload,
            b(&i.to_string())
        );
        let m = recv(&mut other_group, "second queue group").await;
        assert_eq!(m.payload, b(&i.to_string()));
    }
    let mut all = select_all(members);
    let mut seen = Vec::new();
    while seen.len() < N {
        let m = within("queue group members", all.next()).await;
        seen.push(m.expect("member subscription ended").payload);
    }
    // Anything still arriving now would be a duplicate.
    ok("flush", a.flush().await);
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(300), all.next()).await {
        panic!("message delivered twice in the queue group: {extra:?}");
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), N, "each message exactly once: {seen:?}");
}

fn spawn_echo(mut sub: Subscription, t: Arc<dyn Transport>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let Some(reply) = m.reply else { continue };
            let mut headers = m.headers.clone();
            headers.insert("Echoed-By", "responder");
            let mut payload = b"echo:".to_vec();
            payload.extend_from_slice(&m.payload);
            let _ = t.publish(&reply, None, headers, payload.into()).await;
        }
    })
}

/// `request` returns the responder's reply; concurrent requests each get their own reply.
pub async fn request_reply(factory: &dyn TransportFactory) {
    announce("transport", "request_reply");
    let p = factory.subject_prefix("request");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let subject = format!("{p}.echo");
    let responder = spawn_echo(
        ok("subscribe", b2.subscribe(&subject, None).await),
        b2.clone(),
    );
    for i in 0..3 {
        let r = a
            .request(&subject, Headers::new(), b(&i.to_string()), DEADLINE)
            .await;
        assert_eq!(ok("request", r).payload, b(&format!("echo:{i}")));
    }
    let requests = (0..20).map(|i| {
        let a = a.clone();
        let subject = subject.clone();
        async move {
            let r = a.request(&subject, Headers::new(), b(&format!("c{i}")), DEADLINE);
            (i, r.await)
        }
    });
    for (i, r) in join_all(requests).await {
        assert_eq!(
            ok("concurrent request", r).payload,
            b(&format!("echo:c{i}"))
        );
    }
    let inboxes: HashSet<String> = (0..100).map(|_| a.new_inbox()).collect();
    assert_eq!(inboxes.len(), 100, "new_inbox must be unique");
    responder.abort();
}

/// A request to a subject nobody subscribes to fails with `NoResponders`.
pub async fn no_responders(factory: &dyn TransportFactory) {
    announce("transport", "no_responders");
    let p = factory.subject_prefix("no_responders");
    let a = connect(factory).await;
    let subject = format!("{p}.nobody");
    match a.request(&subject, Headers::new(), b("x"), DEADLINE).await {
        Err(Error::NoResponders(s)) => assert!(s.contains(&subject), "{s}"),
        other => panic!("expected NoResponders, got {other:?}"),
    }
}

/// A request whose responder never answers fails with `Timeout` after its timeout, not before
/// and not much later.
pub async fn request_timeout(factory: &dyn TransportFactory) {
    announce("transport", "request_timeout");
    let p = factory.subject_prefix("timeout");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let subject = format!("{p}.silent");
    let mut silent = ok("subscribe", b2.subscribe(&subject, None).await);
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    match a.request(&subject, Headers::new(), b("x"), timeout).await {
        Err(Error::Timeout(_)) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= timeout, "timed out early, after {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "waited {elapsed:?}"
    );
    let m = recv(&mut silent, "the request").await;
    assert!(m.reply.is_some(), "a request carries a reply subject");
}

/// Headers survive publish and request/reply (compared by name: order may change).
pub async fn headers_round_trip(factory: &dyn TransportFactory) {
    announce("transport", "headers_round_trip");
    let p = factory.subject_prefix("headers");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let headers = Headers::new()
        .with("X-Trace", "abc-123")
        .with("Content-Type", "application/json")
        .with("Cluster-Epoch", "42")
        .with("X-Spaces", "a b c");
    let same = |got: &Headers, extra: usize| {
        assert_eq!(got.len(), headers.len() + extra, "{got:?}");
        for (n, v) in headers.iter() {
            assert_eq!(got.get(n), Some(v), "header {n} in {got:?}");
        }
    };
    let subject = format!("{p}.h");
    let mut sub = ok("subscribe", b2.subscribe(&subject, None).await);
    ok(
        "publish",
        a.publish(&subject, None, headers.clone(), b("x")).await,
    );
    same(&recv(&mut sub, "message with headers").await.headers, 0);
    let echo = format!("{p}.echo");
    let responder = spawn_echo(ok("subscribe", b2.subscribe(&echo, None).await), b2.clone());
    let reply = ok(
        "request",
        a.request(&echo, headers.clone(), b("x"), DEADLINE).await,
    );
    same(&reply.headers, 1);
    assert_eq!(reply.headers.get("Echoed-By"), Some("responder"));
    responder.abort();
}

/// A message over `max_payload` (payload plus headers) is rejected with `PayloadTooLarge`
/// before anything is sent.
pub async fn oversize_rejected(factory: &dyn TransportFactory) {
    announce("transport", "oversize_rejected");
    let p = factory.subject_prefix("oversize");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let subject = format!("{p}.big");
    let mut sub = ok("subscribe", b2.subscribe(&subject, None).await);
    let max = a.max_payload();
    assert!(max > 0);
    let too_big = Bytes::from(vec![b'x'; max + 1]);
    match a
        .publish(&subject, None, Headers::new(), too_big.clone())
        .await
    {
        Err(Error::PayloadTooLarge { size, max: m }) => {
            assert!(size > m, "size {size} must exceed max {m}");
            assert_eq!(m, max);
        }
        other => panic!("oversized publish: expected PayloadTooLarge, got {other:?}"),
    }
    let half = Bytes::from(vec![b'x'; max / 2]);
    let big_header = Headers::new().with("X-Big", "h".repeat(max / 2 + 64));
    assert!(
        matches!(
            a.publish(&subject, None, big_header, half).await,
            Err(Error::PayloadTooLarge { .. })
        ),
        "headers count towards max_payload"
    );
    assert!(matches!(
        a.request(&subject, Headers::new(), too_big, DEADLINE).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    publish_sentinel(a.as_ref(), &subject).await;
    let before = until_sentinel(&mut sub, "sentinel after rejected messages").await;
    assert!(
        before.is_empty(),
        "rejected messages were sent: {} of them",
        before.len()
    );
}

/// Invalid subjects are rejected with `InvalidArgument`.
pub async fn invalid_subject_rejected(factory: &dyn TransportFactory) {
    announce("transport", "invalid_subject_rejected");
    let a = connect(factory).await;
    for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
        let r = a.publish(bad, None, Headers::new(), b("x")).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "publish {bad:?}: {r:?}"
        );
    }
    for bad in ["", "a..b", "a.>.b", "a.b*", "a b"] {
        let r = a.subscribe(bad, None).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "subscribe {bad:?}: {r:?}"
        );
    }
}

/// Dropping a subscription unsubscribes: its subject loses interest (requests get
/// `NoResponders`) while other subscriptions of the connection keep working.
pub async fn unsubscribe_on_drop(factory: &dyn TransportFactory) {
    announce("transport", "unsubscribe_on_drop");
    let p = factory.subject_prefix("unsubscribe");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let gone = format!("{p}.gone");
    let kept = format!("{p}.kept");
    let mut sub = ok("subscribe", b2.subscribe(&gone, None).await);
    let mut other = ok("subscribe", b2.subscribe(&kept, None).await);
    ok(
        "publish",
        a.publish(&gone, None, Headers::new(), b("1")).await,
    );
    assert_eq!(recv(&mut sub, "before drop").await.payload, b("1"));
    drop(sub);
    ok("flush", b2.flush().await);
    // The unsubscribe may take a moment to reach a server: retry until the deadline.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = a
            .request(&gone, Headers::new(), b("x"), Duration::from_millis(250))
            .await;
        match r {
            Err(Error::NoResponders(_)) => break,
            Err(Error::Timeout(_)) if Instant::now() < deadline => {}
            other => panic!("after drop: expected NoResponders, got {other:?}"),
        }
    }
    ok(
        "publish",
        a.publish(&kept, None, Headers::new(), b("2")).await,
    );
    assert_eq!(recv(&mut other, "other subscription").await.payload, b("2"));
}

/// A burst of 1,000 messages from one publisher arrives complete and in order.
pub async fn burst_of_1000_in_order(factory: &dyn TransportFactory) {
    announce("transport", "burst_of_1000_in_order");
    let p = factory.subject_prefix("burst");
    let (a, b2) = (connect(factory).await, connect(factory).await);
    let subject = format!("{p}.burst");
    let mut sub = ok("subscribe", b2.subscribe(&subject, None).await);
    const N: usize = 1000;
    for i in 0..N {
        ok(
            "publish",
            a.publish(&subject, None, Headers::new(), b(&i.to_string()))
                .await,
        );
    }
    ok("flush", a.flush().await);
    for i in 0..N {
        let m = recv(&mut sub, "burst message").await;
        assert_eq!(
            m.payload,
            b(&i.to_string()),
            "message {i} lost or out of order"
        );
    }
}
