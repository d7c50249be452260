//! KV and request latency through the cluster-nats adapter beside raw async-nats, on the same
//! server(s) in the same run.
//!
//! `cargo bench -p cluster-nats --bench kv_latency` (set `BENCH_OPS` to change the number of
//! sequential operations per row, default 2000; `NATS_SERVER_BIN` as for the tests).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_core::{BucketConfig, Headers, KvStore, Revision, Transport};
use cluster_nats::{ConnectOptions, NatsConnection};
use cluster_testkit::nats_server::{NatsCluster, NatsServer};
use futures::StreamExt;

struct Stats {
    p50: Duration,
    p99: Duration,
}

async fn measure<F, Fut>(ops: usize, mut op: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..ops / 10 {
        op(i).await; // warm-up
    }
    let mut samples = Vec::with_capacity(ops);
    for i in 0..ops {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    Stats {
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn row(name: &str, ours: &Stats, raw: &Stats) {
    println!(
        "| {name:<34} | {:>7} | {:>7} | {:>7} | {:>7} | {:>5.2} |",
        ms(ours.p50),
        ms(ours.p99),
        ms(raw.p50),
        ms(raw.p99),
        ours.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
}

async fn run(label: &str, urls: Vec<String>, replicas: usize, ops: usize) {
    // Every client connects to the same (first) server, so both sides see the same topology.
    let urls = vec![urls[0].clone()];
    let conn = NatsConnection::connect(ConnectOptions::new(urls.clone()).name("bench"))
        .await
        .unwrap();
    let raw_client = async_nats::connect(addrs(&urls)).await.unwrap();
    let js = async_nats::jetstream::new(raw_client.clone());
    let value = Bytes::from(vec![7u8; 64]);

    // Adapter bucket and raw bucket with the same settings (history 1, file storage).
    let bucket_name = format!("bench_ours_{replicas}");
    let ours = conn
        .kv_store(Some(replicas))
        .bucket(BucketConfig::new(&bucket_name))
        .await
        .unwrap();
    let raw = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: format!("bench_raw_{replicas}"),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .unwrap();

    println!("\n### {label} (R{replicas}), {ops} sequential ops, 64 B values\n");
    println!(
        "| operation                          | ours p50 | ours p99 | raw p50 | raw p99 | p50 ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");

    let o = measure(ops, |i| {
        let (ours, value) = (ours.clone(), value.clone());
        async move {
            ours.put(&format!("k{}", i % 100), value).await.unwrap();
        }
    })
    .await;
    let r = measure(ops, |i| {
        let (raw, value) = (raw.clone(), value.clone());
        async move {
            raw.put(format!("k{}", i % 100), value).await.unwrap();
        }
    })
    .await;
    row("KV put", &o, &r);

    let o = measure(ops, |i| {
        let ours = ours.clone();
        async move {
            ours.get(&format!("k{}", i % 100)).await.unwrap().unwrap();
        }
    })
    .await;
    let r = measure(ops, |i| {
        let raw = raw.clone();
        async move {
            raw.entry(format!("k{}", i % 100)).await.unwrap().unwrap();
        }
    })
    .await;
    row("KV get (raw: direct get)", &o, &r);
    let r = measure(ops, |i| {
        let raw = raw.clone();
        async move {
            raw.stream
                .get_last_raw_message_by_subject(&format!("$KV.bench_raw_{replicas}.k{}", i % 100))
                .await
                .unwrap();
        }
    })
    .await;
    row("KV get (raw: leader get)", &o, &r);

    let mut rev = ours.put("cas", value.clone()).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..ops + ops / 10 {
        let started = Instant::now();
        rev = ours.update("cas", value.clone(), rev, None).await.unwrap();
        samples.push(started.elapsed());
    }
    let o = percentiles(samples.split_off(ops / 10));
    let mut raw_rev = raw.put("cas", value.clone()).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..ops + ops / 10 {
        let started = Instant::now();
        raw_rev = raw.update("cas", value.clone(), raw_rev).await.unwrap();
        samples.push(started.elapsed());
    }
    let r = percentiles(samples.split_off(ops / 10));
    row("KV CAS update", &o, &r);
    let _: Revision = rev;

    // Request/reply round trip: a responder on the raw client answers both.
    let mut service = raw_client.subscribe("bench.echo").await.unwrap();
    raw_client.flush().await.unwrap();
    let responder = raw_client.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                responder.publish(reply, m.payload).await.unwrap();
            }
        }
    });
    let transport = conn.transport();
    // Wait until the responder's subscription is known to the server.
    while transport
        .request(
            "bench.echo",
            Headers::new(),
            value.clone(),
            Duration::from_secs(1),
        )
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let o = measure(ops, |_| {
        let (t, value) = (transport.clone(), value.clone());
        async move {
            t.request("bench.echo", Headers::new(), value, Duration::from_secs(5))
                .await
                .unwrap();
        }
    })
    .await;
    let requester = async_nats::connect(addrs(&urls)).await.unwrap();
    let r = measure(ops, |_| {
        let (c, value) = (requester.clone(), value.clone());
        async move {
            c.request("bench.echo", value).await.unwrap();
        }
    })
    .await;
    row("request/reply round trip", &o, &r);
    task.abort();
}

fn addrs(urls: &[String]) -> Vec<async_nats::ServerAddr> {
    urls.iter().map(|u| u.parse().unwrap()).collect()
}

fn percentiles(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
    }
}

fn main() {
    let ops = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("cluster-nats KV latency: adapter (\"ours\") vs raw async-nats, times in ms");
    let server = NatsServer::start();
    runtime.block_on(run("single server", vec![server.url()], 1, ops));
    drop(server);
    let cluster = NatsCluster::start(3);
    runtime.block_on(run("3-server cluster", cluster.urls(), 3, ops));
}
