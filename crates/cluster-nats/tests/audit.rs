//! The JetStream audit log: append, dedup by id, filters, paging with a truncation flag,
//! retention setting, and records readable from another connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use cluster_core::audit::{AuditFilter, AuditRecord, AuditSink};
use cluster_core::{AppName, NodeId, PlatformName};
use cluster_nats::{AuditStreamOptions, NatsAuditLog, audit_subject};
use cluster_testkit::nats_server::NatsServer;

fn record(category: &str, action: &str, app: Option<&str>) -> AuditRecord {
    let node: NodeId = "n1".parse().unwrap();
    let app: Option<AppName> = app.map(|a| a.parse().unwrap());
    AuditRecord::new(category, action, app.as_ref(), &node, Default::default())
}

#[tokio::test]
async fn audit_stream_round_trip() {
    let server = NatsServer::start();
    let conn = common::connect(&[server.url()]).await;
    let platform: PlatformName = "prod".parse().unwrap();
    let options = AuditStreamOptions {
        max_age: Duration::from_secs(3600),
        replicas: 1,
    };
    let log = NatsAuditLog::open(&conn, &platform, options).await.unwrap();
    assert_eq!(log.stream_name(), "prod_audit");
    let r = record("placement", "migration.started", Some("convex"));
    assert_eq!(
        audit_subject(&platform, &r),
        "cluster.prod.audit._by.n1.placement.migration.started"
    );
    log.append(&r).await.unwrap();
    log.append(&record("election", "acquired", Some("api")))
        .await
        .unwrap();
    let dup = record("member", "leave", None).with_id("member.leave.n2.7");
    log.append(&dup).await.unwrap();
    log.append(&dup).await.unwrap();
    for i in 0..5 {
        log.append(&record("operator", "cordon", None).with_id(format!("c{i}")))
            .await
            .unwrap();
    }

    // A record of an older node, on the subject without the writer token.
    let legacy = record("placement", "migration.completed", Some("convex"));
    conn.jetstream()
        .publish(
            "cluster.prod.audit.placement.migration.completed",
            legacy.encode().unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // Another connection reads the same stream (what `cluster audit` does).
    let other = common::connect(&[server.url()]).await;
    let reader = NatsAuditLog::open(&other, &platform, options)
        .await
        .unwrap();
    let all = reader.query(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.entries.len(), 9, "the duplicate is stored once");
    assert!(!all.truncated);
    assert_eq!(all.entries[0].record, r);
    assert_eq!(
        all.entries[0].writer.as_ref().map(NodeId::as_str),
        Some("n1")
    );
    assert_eq!(all.entries[8].record, legacy);
    assert_eq!(
        all.entries[8].writer, None,
        "an old subject vouches for nobody"
    );

    let placement = reader
        .query(&AuditFilter {
            category: Some("placement".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        placement.entries.len(),
        2,
        "both subject layouts match a category"
    );
    let by_app = reader
        .query(&AuditFilter {
            app: Some("api".parse().unwrap()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_app.entries.len(), 1);
    assert_eq!(by_app.entries[0].record.action, "acquired");

    // Paging: 3 per page, truncated until the last page.
    let mut after = None;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let page = reader
            .query(&AuditFilter {
                limit: 3,
                after,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        seen += page.entries.len();
        pages += 1;
        after = page.next_after;
        if !page.truncated {
            break;
        }
        assert_eq!(page.entries.len(), 3);
    }
    assert_eq!((seen, pages), (9, 3));

    let future = reader
        .query(&AuditFilter {
            since: Some(SystemTime::now() + Duration::from_secs(3600)),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(future.entries.is_empty());

    // Retention is configurable: reopening with another max age updates the stream.
    let week = NatsAuditLog::open(&conn, &platform, AuditStreamOptions::default())
        .await
        .unwrap();
    let info = conn
        .jetstream()
        .get_stream(week.stream_name())
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.max_age, Duration::from_secs(7 * 24 * 3600));
}
