//! Self-healing membership on in-memory nodes, on paused time: a node rewrites its own record
//! whatever was written over it, stale records (no TTL, not renewed) are dropped and removed,
//! and a join takes over a record whose writer is proven gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_core::host::{HostInfo, HostLock};
use cluster_core::wire::member::MemberRecord;
use cluster_core::{BucketConfig, Error, KvBucket, KvStore};
use cluster_runtime::PlatformOptions;
use cluster_runtime::{App, Platform};
use cluster_testkit::scenario::SimCluster;
use tokio::time::Instant;

async fn members(cluster: &SimCluster) -> Arc<dyn KvBucket> {
    cluster
        .network
        .kv("tool")
        .bucket(BucketConfig::new("prod_members").with_per_key_ttl())
        .await
        .unwrap()
}

/// A well-formed member record of `node` written by some process `instance`.
fn record(node: &str, instance: &str, host: Option<HostInfo>) -> Bytes {
    let mut v = serde_json::json!({
        "v": 1, "node": node, "platform": "prod", "instance": instance, "address": "",
        "labels": {}, "apps": [{"name": "watch", "mode": {"kind": "spread"}, "running": true,
        "role": "active"}], "healthy": true, "joined_at_ms": 0, "last_seen_ms": 0,
    });
    if let Some(h) = host {
        v["host"] = serde_json::to_value(h).unwrap();
    }
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
    MemberRecord::decode(&bytes).expect("a well-formed record");
    bytes
}

/// The instance named by `node`'s record, if it decodes.
async fn instance_of(bucket: &dyn KvBucket, node: &str) -> Option<String> {
    let e = bucket.get(node).await.unwrap()?;
    MemberRecord::decode(&e.value).ok().map(|r| r.instance)
}

/// Polls every 5 ms (paused time) until `node`'s record names `instance`; returns how long.
async fn until_instance(
    bucket: &dyn KvBucket,
    node: &str,
    instance: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    while instance_of(bucket, node).await.as_deref() != Some(instance) {
        assert!(
            start.elapsed() < within,
            "{node} not rewritten within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn watcher(log: &Arc<Mutex<Vec<String>>>) -> App {
    let app = App::spread("watch").unwrap();
    let l = log.clone();
    app.on_member_join(move |_ctx, m| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push(format!("join {}", m.node_id));
            Ok(())
        }
    });
    let l = log.clone();
    app.on_member_leave(move |_ctx, m| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push(format!("leave {}", m.node_id));
            Ok(())
        }
    });
    app
}

fn node(cluster: &SimCluster, name: &str, lock: Option<HostLock>) -> Platform {
    let mut b = Platform::builder("prod", name)
        .options(PlatformOptions::fast())
        .transport(cluster.network.transport(name))
        .kv_store(cluster.network.kv(name));
    if let Some(lock) = lock {
        b = b.host_lock(lock);
    }
    b.build().unwrap()
}

/// Runs `p` in the background; returns its `run` task once started, or the start error.
async fn start(p: &Platform) -> Result<tokio::task::JoinHandle<cluster_core::Result<()>>, Error> {
    let runner = p.clone();
    let mut run = tokio::spawn(async move { runner.run().await });
    tokio::select! {
        r = p.wait_started() => match r {
            Ok(()) => Ok(run),
            // Prefer the error `run` returned (the reason start failed).
            Err(e) => Err(run.await.unwrap().err().unwrap_or(e)),
        },
        r = &mut run => Err(r.unwrap().expect_err("run ended before start")),
    }
}

fn lock_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("membership-heal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(start_paused = true)]
async fn a_node_rewrites_its_record_whatever_was_written_over_it_and_never_stops() {
    let options = PlatformOptions::fast();
    let mut cluster = SimCluster::new("prod", options.clone());
    cluster.start_node("n1", vec![]).await.unwrap();
    cluster.start_node("n2", vec![]).await.unwrap();
    let bucket = members(&cluster).await;
    let n2 = cluster.node("n2").platform.clone();
    let me = n2.instance().to_owned();
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        match round % 3 {
            0 => {
                bucket
                    .put("n2", Bytes::from_static(b"\x00not json"))
                    .await
                    .unwrap();
            }
            1 => {
                bucket
                    .put("n2", record("n2", "forged", None))
                    .await
                    .unwrap();
            }
            _ => bucket.delete("n2", None).await.unwrap(),
        }
        worst =
            worst.max(until_instance(bucket.as_ref(), "n2", &me, options.member_refresh * 2).await);
        assert!(n2.is_started(), "round {round}: n2 stopped");
        // Let a few heartbeats pass between rounds, so a forged instance seen twice would be
        // (wrongly) taken for a live duplicate if the rule counted rounds.
        tokio::time::sleep(options.member_ttl * 3).await;
    }
    assert!(
        worst <= options.member_refresh + Duration::from_millis(100),
        "rewritten after {worst:?}"
    );
    assert!(n2.is_started());
    assert!(
        cluster
            .node("n1")
            .platform
            .members()
            .iter()
            .any(|m| m.node_id.as_str() == "n2")
    );
    // And a graceful restart still works at once.
    cluster.stop_node("n2").await.unwrap();
    cluster.start_node("n2", vec![]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_process_that_keeps_writing_our_node_id_is_a_live_duplicate() {
    let options = PlatformOptions::fast();
    let mut cluster = SimCluster::new("prod", options.clone());
    cluster.start_node("n1", vec![]).await.unwrap();
    let n1 = cluster.node("n1").platform.clone();
    let bucket = members(&cluster).await;
    // Another process writing the key every 200 ms, as a second live n1 would.
    let writer = tokio::spawn({
        let bucket = bucket.clone();
        async move {
            loop {
                let _ = bucket.put("n1", record("n1", "other", None)).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let start = Instant::now();
    while n1.is_started() {
        assert!(
            start.elapsed() < options.member_ttl,
            "n1 kept running next to a live duplicate"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_forged_record_without_ttl_is_dropped_from_the_view_and_removed_within_the_member_ttl() {
    let options = PlatformOptions::fast();
    let mut cluster = SimCluster::new("prod", options.clone());
    let log = Arc::new(Mutex::new(Vec::new()));
    cluster.start_node("n1", vec![watcher(&log)]).await.unwrap();
    cluster
        .start_node("n2", vec![App::spread("watch").unwrap()])
        .await
        .unwrap();
    let bucket = members(&cluster).await;
    let written = Instant::now();
    bucket
        .put("n9", record("n9", "forged", None))
        .await
        .unwrap();
    bucket
        .put("n8", Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let n1 = cluster.node("n1").platform.clone();
    loop {
        let gone =
            bucket.get("n9").await.unwrap().is_none() && bucket.get("n8").await.unwrap().is_none();
        let shown = n1.members().iter().any(|m| m.node_id.as_str() == "n9");
        assert!(!shown, "n9 shown as a member after {:?}", written.elapsed());
        if gone {
            break;
        }
        assert!(
            written.elapsed() < options.member_ttl * 2,
            "n9/n8 still there"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = written.elapsed();
    assert!(
        took >= options.member_ttl,
        "removed after {took:?}, before the member TTL"
    );
    assert!(
        took <= options.member_ttl + options.member_refresh + Duration::from_millis(100),
        "removed after {took:?}"
    );
    // Written once, never renewed: never a member, so no hook ever saw it.
    assert!(
        !log.lock().unwrap().iter().any(|e| e.ends_with("n9")),
        "{:?}",
        log.lock().unwrap()
    );
    // The live nodes are untouched.
    tokio::time::sleep(options.member_ttl * 2).await;
    let names: Vec<String> = n1.members().iter().map(|m| m.node_id.to_string()).collect();
    assert_eq!(names, ["n1", "n2"]);
}

#[tokio::test(start_paused = true)]
async fn a_join_takes_over_a_record_that_is_not_renewed_and_refuses_one_that_is() {
    let options = PlatformOptions::fast();
    let cluster = SimCluster::new("prod", options.clone());
    let bucket = members(&cluster).await;
    // Not renewed (no TTL either): taken over after member_ttl.
    bucket
        .put("n1", record("n1", "crashed", None))
        .await
        .unwrap();
    let p = node(&cluster, "n1", None);
    let began = Instant::now();
    let run = start(&p).await.unwrap();
    let took = began.elapsed();
    assert!(
        took >= options.member_ttl && took <= options.member_ttl + Duration::from_millis(100),
        "{took:?}"
    );
    assert_eq!(
        instance_of(bucket.as_ref(), "n1").await.as_deref(),
        Some(p.instance())
    );
    p.shutdown();
    run.await.unwrap().unwrap();

    // Garbage rewritten all the time is no sign of life: taken over after member_ttl.
    let garbage = tokio::spawn({
        let bucket = bucket.clone();
        async move {
            for i in 0u64.. {
                let _ = bucket.put("n5", Bytes::from(format!("garbage {i}"))).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let p = node(&cluster, "n5", None);
    let began = Instant::now();
    let run = start(&p).await.unwrap();
    let took = began.elapsed();
    assert!(
        took >= options.member_ttl && took <= options.member_ttl + Duration::from_millis(300),
        "{took:?}"
    );
    garbage.abort();
    p.shutdown();
    run.await.unwrap().unwrap();

    // Renewed while the newcomer watches: refused within about one renewal.
    bucket.put("n3", record("n3", "live", None)).await.unwrap();
    let writer = tokio::spawn({
        let bucket = bucket.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = bucket.put("n3", record("n3", "live", None)).await;
            }
        }
    });
    let began = Instant::now();
    let err = start(&node(&cluster, "n3", None)).await.unwrap_err();
    assert!(matches!(err, Error::NodeIdInUse(_)), "{err}");
    assert!(
        began.elapsed() <= Duration::from_millis(600),
        "{:?}",
        began.elapsed()
    );
    writer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_restart_on_the_same_host_takes_over_at_once_but_not_a_record_of_another_host() {
    let options = PlatformOptions::fast();
    let cluster = SimCluster::new("prod", options.clone());
    let bucket = members(&cluster).await;
    let path = lock_file("n1.lock");
    let lock = HostLock::acquire(&path).unwrap();
    let mine = lock.info().clone();
    // The crashed predecessor held the same lock file on this host (same boot).
    bucket
        .create(
            "n1",
            record("n1", "crashed", Some(mine.clone())),
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let p = node(&cluster, "n1", Some(lock));
    let began = Instant::now();
    let run = start(&p).await.unwrap();
    assert!(
        began.elapsed() < options.member_refresh,
        "took {:?}",
        began.elapsed()
    );
    let rec = MemberRecord::decode(&bucket.get("n1").await.unwrap().unwrap().value).unwrap();
    assert_eq!(rec.instance, p.instance());
    assert_eq!(
        rec.host.as_ref(),
        Some(&mine),
        "the record advertises the host"
    );
    // While it lives, a second process on this host cannot even take the lock.
    assert!(HostLock::acquire(&path).is_err());
    p.shutdown();
    run.await.unwrap().unwrap();
    drop(p);

    // Same machine, earlier boot: gone as well.
    let earlier = HostInfo {
        boot_id: "an-earlier-boot".into(),
        lock: "0:0".into(),
        ..mine.clone()
    };
    bucket
        .put("n2", record("n2", "before-reboot", Some(earlier)))
        .await
        .unwrap();
    let p = node(
        &cluster,
        "n2",
        Some(HostLock::acquire(lock_file("n2.lock")).unwrap()),
    );
    let began = Instant::now();
    let run = start(&p).await.unwrap();
    assert!(
        began.elapsed() < options.member_refresh,
        "took {:?}",
        began.elapsed()
    );
    p.shutdown();
    run.await.unwrap().unwrap();

    // Another host (or another lock file): no proof, the usual wait for member_ttl.
    for (name, other) in [
        (
            "n3",
            HostInfo {
                machine_id: "another-machine".into(),
                ..mine.clone()
            },
        ),
        (
            "n4",
            HostInfo {
                lock: "1:1".into(),
                ..mine.clone()
            },
        ),
    ] {
        bucket
            .put(name, record(name, "elsewhere", Some(other)))
            .await
            .unwrap();
        let p = node(
            &cluster,
            name,
            Some(HostLock::acquire(lock_file(&format!("{name}.lock"))).unwrap()),
        );
        let began = Instant::now();
        let run = start(&p).await.unwrap();
        assert!(
            began.elapsed() >= options.member_ttl,
            "{name}: took over after {:?}",
            began.elapsed()
        );
        p.shutdown();
        run.await.unwrap().unwrap();
    }
}
