//! Leadership and messaging latency over a real nats-server, beside raw async-nats.
//!
//! ```text
//! cargo bench -p cluster --bench failover            # or: cargo xtask bench
//! ```
//!
//! Prints tables: graceful handover, crash failover (fast and default profiles), RPC round trip
//! and KV get/put through the platform beside the same operations with raw async-nats on the same
//! server in the same run. Set `BENCH_QUICK=1` for fewer iterations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::{App, PlatformOptions, Role, Routing};
use cluster_testkit::nats_server::NatsServer;
use futures::StreamExt;

struct Node {
    platform: cluster::Platform,
    app: App,
    run: tokio::task::JoinHandle<cluster::Result<()>>,
}

async fn node(url: &str, platform: &str, name: &str, options: PlatformOptions) -> Node {
    let conn = cluster::nats::connect(cluster::nats::ConnectOptions::new([url]))
        .await
        .unwrap();
    let app = App::singleton("db").unwrap();
    app.handle("echo", |r| async move { Ok(r.payload) })
        .unwrap();
    let p = cluster::nats::platform(&conn, platform, name, 1)
        .unwrap()
        .options(options)
        .build()
        .unwrap();
    p.register(&app).unwrap();
    let runner = p.clone();
    let run = tokio::spawn(async move { runner.run().await });
    p.wait_started().await.unwrap();
    Node {
        platform: p,
        app,
        run,
    }
}

async fn until_leader(app: &App) {
    let mut w = app.role_watch();
    while w.borrow_and_update().role != Role::Leader {
        w.changed().await.unwrap();
    }
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn row(name: &str, samples: &mut [f64], unit: &str) -> (f64, f64) {
    let (p50, p99) = (pct(samples, 0.5), pct(samples, 0.99));
    println!(
        "| {name} | {} | {p50:.3} | {p99:.3} | {unit} |",
        samples.len()
    );
    (p50, p99)
}

async fn graceful_handover(url: &str, n: usize) {
    let options = PlatformOptions {
        election: cluster_core::election::ElectionTiming {
            cooldown: Duration::from_millis(0).max(Duration::from_millis(1)),
            ..PlatformOptions::fast().election
        },
        ..PlatformOptions::fast()
    };
    let a = node(url, "bh", "a", options.clone()).await;
    let b = node(url, "bh", "b", options).await;
    let mut samples = Vec::new();
    for _ in 0..n {
        let (leader, standby) = if a.app.is_leader() {
            (&a, &b)
        } else {
            (&b, &a)
        };
        if !leader.app.is_leader() {
            until_leader(&a.app).await;
            continue;
        }
        let t0 = Instant::now();
        let wait = until_leader(&standby.app);
        let (r, ()) = tokio::join!(leader.app.step_down(), wait);
        r.unwrap();
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    row(
        "graceful step-down → new leader active (fast profile, empty hooks)",
        &mut samples,
        "ms",
    );
    for n in [a, b] {
        n.platform.shutdown();
        let _ = n.run.await;
    }
}

async fn crash_failover(url: &str, profile: &str, options: PlatformOptions, n: usize) {
    let mut samples = Vec::new();
    for i in 0..n {
        let platform = format!("bc{profile}{i}");
        let a = node(url, &platform, "a", options.clone()).await;
        until_leader(&a.app).await;
        let b = node(url, &platform, "b", options.clone()).await;
        // Crash right after a renewal would be the worst case; crash at a random point instead.
        tokio::time::sleep(Duration::from_millis(137 * (i as u64 % 7))).await;
        let t0 = Instant::now();
        a.platform.abort();
        a.run.abort();
        until_leader(&b.app).await;
        samples.push(t0.elapsed().as_secs_f64());
        b.platform.shutdown();
        let _ = b.run.await;
    }
    let ttl = options.election.lease_ttl.as_secs_f64();
    row(
        &format!("crash → new leader active ({profile} profile, TTL {ttl} s)"),
        &mut samples,
        "s",
    );
}

async fn rpc_and_kv(url: &str, n: usize) {
    let a = node(url, "br", "a", PlatformOptions::fast()).await;
    let b = node(url, "br", "b", PlatformOptions::fast()).await;
    let rpc = a.app.rpc();
    let to_b = Routing::ToNode("b".parse().unwrap());
    let payload = Bytes::from(vec![7u8; 128]);
    for _ in 0..100 {
        rpc.call(to_b.clone(), "echo", payload.clone())
            .await
            .unwrap();
    }
    let mut ours = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        rpc.call(to_b.clone(), "echo", payload.clone())
            .await
            .unwrap();
        ours.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Raw async-nats: a responder on another connection, request/reply with 128 B.
    let server = async_nats::connect(url).await.unwrap();
    let client = async_nats::connect(url).await.unwrap();
    let mut sub = server.subscribe("raw.echo").await.unwrap();
    let responder = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = server.publish(reply, m.payload).await;
            }
        }
    });
    client.flush().await.unwrap();
    for _ in 0..100 {
        client.request("raw.echo", payload.clone()).await.unwrap();
    }
    let mut raw = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        client.request("raw.echo", payload.clone()).await.unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (o50, o99) = row(
        "RPC round trip, 128 B (platform RpcClient → handler)",
        &mut ours,
        "ms",
    );
    let (r50, r99) = row("request/reply, 128 B (raw async-nats)", &mut raw, "ms");
    println!(
        "| ratio platform/raw | | {:.2} | {:.2} | × |",
        o50 / r50,
        o99 / r99
    );
    responder.abort();

    // KV through the app's private store vs raw async-nats KV on its own bucket.
    let kv = a.app.kv();
    let value = Bytes::from(vec![1u8; 64]);
    let mut put = Vec::new();
    let mut get = Vec::new();
    for i in 0..n {
        let key = format!("k{}", i % 50);
        let t = Instant::now();
        kv.put(&key, value.clone()).await.unwrap();
        put.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        kv.get(&key).await.unwrap();
        get.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let js = async_nats::jetstream::new(client.clone());
    let store = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "bench_raw".into(),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut rput = Vec::new();
    let mut rget = Vec::new();
    for i in 0..n {
        let key = format!("k{}", i % 50);
        let t = Instant::now();
        store.put(&key, value.clone()).await.unwrap();
        rput.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        store.get(&key).await.unwrap();
        rget.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = row("KV put, 64 B (App::kv)", &mut put, "ms");
    let (rp50, rp99) = row("KV put, 64 B (raw async-nats)", &mut rput, "ms");
    println!(
        "| ratio put platform/raw | | {:.2} | {:.2} | × |",
        p50 / rp50,
        p99 / rp99
    );
    let (g50, g99) = row("KV get (App::kv, stream-leader read)", &mut get, "ms");
    let (rg50, rg99) = row("KV get (raw async-nats, direct get)", &mut rget, "ms");
    println!(
        "| ratio get platform/raw | | {:.2} | {:.2} | × |",
        g50 / rg50,
        g99 / rg99
    );
    for n in [a, b] {
        n.platform.shutdown();
        let _ = n.run.await;
    }
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = NatsServer::start();
    let url = server.url();
    println!(
        "nats-server: single server, loopback; {} ",
        if quick { "quick run" } else { "full run" }
    );
    println!();
    println!("| measurement | n | p50 | p99 | unit |");
    println!("|---|---|---|---|---|");
    rt.block_on(async {
        graceful_handover(&url, if quick { 20 } else { 100 }).await;
        rpc_and_kv(&url, if quick { 500 } else { 2000 }).await;
        crash_failover(
            &url,
            "fast",
            PlatformOptions::fast(),
            if quick { 5 } else { 20 },
        )
        .await;
        crash_failover(
            &url,
            "default",
            PlatformOptions::default(),
            if quick { 2 } else { 5 },
        )
        .await;
    });
}
