//! No dead metrics and no silent audit: every runtime metric moves and every audit event of
//! spec 02 (plus election, membership and operator events) is stored and queryable after
//! exercising each feature on in-memory nodes (paused time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster::core::audit::{AuditFilter, AuditPage, AuditRecord, AuditSink};
use cluster::core::transport::{Headers, Transport};
use cluster::core::wire::names::Names;
use cluster::placement::{AppPlacementExt, planner};
use cluster::runtime::metrics as m;
use cluster::runtime::{AdminClient, DrainOptions, MoveRequest};
use cluster::{App, Labels, Mode, Platform, PlatformOptions, Routing};
use cluster_testkit::metrics::RecordedMetrics;
use cluster_testkit::scenario::{SimCluster, wait_until};

fn apps() -> Vec<App> {
    let db = App::singleton("db").unwrap();
    db.handle("echo", |r| async move { Ok(r.payload) }).unwrap();
    let worker = App::new("worker", Mode::Replicas { n: 2 }).unwrap();
    let nowhere = App::singleton("nowhere").unwrap();
    nowhere.on_label("tier", "gpu").unwrap();
    vec![db, worker, nowhere]
}

/// A sink that refuses everything (for the audit-failure counter).
struct Broken;

#[async_trait]
impl AuditSink for Broken {
    async fn append(&self, _: &AuditRecord) -> cluster::Result<()> {
        Err(cluster::Error::Unavailable("broken sink".into()))
    }
    async fn query(&self, _: &AuditFilter) -> cluster::Result<AuditPage> {
        Err(cluster::Error::Unavailable("broken sink".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn every_metric_moves_and_every_audit_event_is_stored() {
    let metrics = RecordedMetrics::install();
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        c.start_node(n, apps()).await.unwrap();
    }
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    let other = c.names().into_iter().find(|n| *n != leader).unwrap();
    wait_until(
        "standbys and workers placed",
        Duration::from_secs(20),
        || c.names().iter().all(|n| c.node(n).app("db").is_running()),
    )
    .await;

    // RPC (ok and an error) and KV.
    let db = c.node(&other).app("db").clone();
    let echoed = db
        .rpc()
        .call(Routing::ToLeader, "echo", "hi")
        .await
        .unwrap();
    assert_eq!(echoed, Bytes::from("hi"));
    assert!(db.rpc().call(Routing::ToLeader, "nope", "").await.is_err());
    db.kv().put("k", "v").await.unwrap();
    assert_eq!(db.kv().get("k").await.unwrap(), Some(Bytes::from("v")));

    // A malformed RPC request (no protocol headers) is rejected and counted.
    let names = Names::new("prod".parse().unwrap());
    let raw = c.network.transport("probe");
    let reply = raw
        .request(
            &names.rpc_any(&"db".parse().unwrap()),
            Headers::new(),
            Bytes::new(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(reply.headers.get("Cluster-Error-Kind"), Some("malformed"));

    // Operator actions: labels, cordon/uncordon, a move (hand-off), a failing move, a drain,
    // a step-down through the admin service.
    let op = c.node(&other).platform.clone();
    op.update_node_labels(&other, &Labels::from_pairs([("zone", "a")]).unwrap())
        .await
        .unwrap();
    op.cordon_node(&other, "maintenance").await.unwrap();
    op.uncordon_node(&other).await.unwrap();
    let moved = op
        .move_app(MoveRequest {
            app: "db".into(),
            from: leader.clone(),
            to: Some(other.clone()),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(moved.as_str(), other);
    let third = c
        .names()
        .into_iter()
        .find(|n| *n != leader && *n != other)
        .unwrap();
    let failed = op
        .move_app(MoveRequest {
            app: "db".into(),
            from: other.clone(),
            to: Some(third.clone()),
            timeout: Duration::from_millis(1),
        })
        .await;
    assert!(failed.is_err());
    let (leader_now, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    op.drain_node(
        &leader,
        DrainOptions {
            timeout: Duration::from_secs(60),
            force: false,
            ..DrainOptions::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    op.uncordon_node(&leader).await.unwrap();
    let admin = AdminClient::new(c.network.transport("admin"), "prod".parse().unwrap());
    admin
        .step_down(&leader_now.parse().unwrap(), Some(&"db".parse().unwrap()))
        .await
        .unwrap();
    c.wait_leader("db", Duration::from_secs(20)).await;

    // Membership: a crash (expiry seen by the others), a graceful stop, a join.
    c.crash_node(&third);
    wait_until("crash noticed", Duration::from_secs(20), || {
        metrics.moved(m::MEMBER_LEAVES, &[("reason", "expired")])
    })
    .await;
    c.stop_node(&leader).await.unwrap();
    c.start_node("n4", apps()).await.unwrap();

    // A node whose audit sink fails counts the failures.
    let broken = Platform::builder("prod", "n5")
        .options(PlatformOptions::fast())
        .transport(c.network.transport("n5"))
        .kv_store(c.network.kv("n5"))
        .planner(planner())
        .audit(Arc::new(Broken))
        .build()
        .unwrap();
    let runner = broken.clone();
    let run = tokio::spawn(async move { runner.run().await });
    broken.wait_started().await.unwrap();
    wait_until("audit failure counted", Duration::from_secs(10), || {
        metrics.moved(m::AUDIT_FAILURES, &[])
    })
    .await;
    broken.shutdown();
    run.await.unwrap().unwrap();

    // Let the seconds-since-renewal gauges tick.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let expect: &[(&str, &[(&str, &str)])] = &[
        (m::ELECTION_IS_LEADER, &[("app", "db")]),
        (m::ELECTION_EPOCH, &[("app", "db")]),
        (m::ELECTION_SINCE_RENEWAL, &[("app", "db")]),
        (
            m::ELECTION_TRANSITIONS,
            &[("app", "db"), ("reason", "acquired")],
        ),
        (
            m::ELECTION_TRANSITIONS,
            &[("app", "db"), ("reason", "handoff")],
        ),
        (
            m::ELECTION_TRANSITIONS,
            &[("app", "db"), ("reason", "stepdown")],
        ),
        (m::ELECTION_DURATION, &[("app", "db")]),
        (m::MEMBERS, &[("platform", "prod")]),
        (m::MEMBER_JOINS, &[]),
        (m::MEMBER_LEAVES, &[("reason", "expired")]),
        (m::MEMBER_LEAVES, &[("reason", "graceful")]),
        (
            m::RPC_REQUESTS,
            &[("app", "db"), ("method", "echo"), ("status", "ok")],
        ),
        (
            m::RPC_REQUESTS,
            &[
                ("app", "db"),
                ("method", "nope"),
                ("status", "unknown_method"),
            ],
        ),
        (m::RPC_DURATION, &[("app", "db"), ("method", "echo")]),
        // Served on the leader (server side); an unregistered method is labelled `-`.
        (
            m::RPC_SERVED,
            &[("app", "db"), ("method", "echo"), ("status", "ok")],
        ),
        (
            m::RPC_SERVED,
            &[("app", "db"), ("method", "-"), ("status", "unknown_method")],
        ),
        (
            m::RPC_SERVED,
            &[("app", "db"), ("method", "-"), ("status", "malformed")],
        ),
        (m::RPC_LATENCY, &[("app", "db"), ("method", "echo")]),
        (
            m::KV_OPERATIONS,
            &[("app", "db"), ("op", "put"), ("status", "ok")],
        ),
        (
            m::KV_OPERATIONS,
            &[("app", "db"), ("op", "get"), ("status", "ok")],
        ),
        (m::MALFORMED, &[("kind", "rpc")]),
        (
            m::MIGRATIONS,
            &[("app", "db"), ("reason", "manual"), ("status", "started")],
        ),
        (
            m::MIGRATIONS,
            &[("app", "db"), ("reason", "manual"), ("status", "completed")],
        ),
        (
            m::MIGRATIONS,
            &[("app", "db"), ("reason", "manual"), ("status", "failed")],
        ),
        (
            m::MIGRATIONS,
            &[("reason", "drain"), ("status", "completed")],
        ),
        (m::MIGRATION_DURATION, &[("app", "db")]),
        (m::MIGRATION_IN_PROGRESS, &[("app", "db")]),
        (m::PLACEMENT_PENDING, &[("app", "nowhere")]),
        (m::PLACEMENT_VIOLATIONS, &[("app", "nowhere")]),
        (m::REBALANCES, &[]),
        (m::NODE_APP_COUNT, &[]),
        (m::NODE_IMBALANCE, &[]),
        (m::AUDIT_FAILURES, &[]),
    ];
    let missing: Vec<String> = expect
        .iter()
        .filter(|(name, labels)| !metrics.moved(name, labels))
        .map(|(name, labels)| format!("{name}{labels:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "series that never moved: {missing:?}\nrecorded: {:#?}",
        metrics.snapshot().keys().collect::<Vec<_>>()
    );
    let pending = metrics.find(m::PLACEMENT_PENDING, &[("app", "nowhere")]);
    assert!(pending.iter().all(|(_, s)| s.gauge == 1.0), "{pending:?}");
    let in_progress = metrics.find(m::MIGRATION_IN_PROGRESS, &[("app", "db")]);
    assert!(
        in_progress.iter().all(|(_, s)| s.gauge == 0.0),
        "{in_progress:?}"
    );

    // Audit: every event is stored once and queryable from any node.
    let reader = c.node("n4").platform.audit();
    reader.flush().await;
    let mut events = BTreeSet::new();
    let mut after = None;
    loop {
        let page = reader
            .query(&AuditFilter {
                after,
                limit: 20,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        events.extend(page.entries.iter().map(|e| e.record.event()));
        after = page.next_after;
        if !page.truncated {
            break;
        }
    }
    for event in [
        "placement.migration.started",
        "placement.migration.completed",
        "placement.migration.failed",
        "placement.constraint.invalid",
        "placement.rebalance.triggered",
        "node.labels.updated",
        "election.acquired",
        "election.handoff",
        "election.stepdown",
        "member.join",
        "member.leave",
        "operator.cordon",
        "operator.uncordon",
        "operator.drain.started",
        "operator.drain.completed",
        "operator.move",
        "operator.stepdown",
    ] {
        assert!(events.contains(event), "no {event} in {events:?}");
    }
    let leaves = reader
        .query(&AuditFilter {
            category: Some("member".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let expired: Vec<_> = leaves
        .entries
        .iter()
        .filter(|e| e.record.action == "leave" && e.record.data["reason"] == "expired")
        .collect();
    assert_eq!(expired.len(), 1, "the crash is audited once: {expired:?}");
    assert_eq!(expired[0].record.data["node"], third.as_str());
    let invalid = reader
        .query(&AuditFilter {
            app: Some("nowhere".parse().unwrap()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        invalid
            .entries
            .iter()
            .all(|e| e.record.app.as_ref().map(|a| a.as_str()) == Some("nowhere"))
    );
    assert!(!invalid.entries.is_empty());
}
