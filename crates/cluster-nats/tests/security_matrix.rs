//! The role × operation matrix (issue 14) against a real nats-server started with the
//! configuration `security::generate` writes: every allowed operation succeeds and every
//! forbidden one fails (a permission violation reported on the connection, a timeout or no
//! responders). Platform `p` (nodes n1, n2; apps a, b) and platform `q` (node n1) share the
//! server, one account each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::audit::{AuditFilter, AuditSink};
use cluster_core::{BucketConfig, KvStore, Transport};
use cluster_nats::security::{Credentials, Layout, Role, generate};
use cluster_nats::{AuditStreamOptions, ConnectOptions, NatsAuditLog, NatsConnection};
use cluster_testkit::nats_server::{NatsServer, NatsServerOptions};
use futures::StreamExt;

fn layout(platform: &str, nodes: &[&str], apps: &[&str]) -> Layout {
    Layout::new(
        platform.parse().unwrap(),
        nodes.iter().map(|n| n.parse().unwrap()).collect(),
        apps.iter().map(|a| a.parse().unwrap()).collect(),
    )
}

async fn connect(server: &NatsServer, layout: &Layout, dir: &Path, role: &Role) -> NatsConnection {
    let options = ConnectOptions::new([server.url()])
        .name(format!("{}/{role}", layout.platform()))
        .nkey_file(dir.join(format!("{}.nk", role.file_stem())))
        .inbox_prefix(role.inbox_prefix(layout.platform()))
        .request_timeout(Duration::from_secs(1));
    NatsConnection::connect(options)
        .await
        .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"))
}

/// One row of the matrix.
struct Row {
    role: String,
    op: &'static str,
    allowed: bool,
    succeeded: bool,
    detail: String,
}

#[derive(Default)]
struct Matrix {
    rows: Vec<Row>,
}

impl Matrix {
    /// Runs `op` as `conn`; it succeeded when it returned `Ok` and the server reported no
    /// permission violation on the connection (checked after a round trip through the server).
    async fn check<T, F>(&mut self, conn: &NatsConnection, op: &'static str, allowed: bool, f: F)
    where
        F: Future<Output = Result<T, String>>,
    {
        let before = conn.permission_violations();
        let result = f.await;
        let _ = conn.transport().flush().await;
        let mut violations = conn.permission_violations() - before;
        for _ in 0..20 {
            if violations > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            violations = conn.permission_violations() - before;
        }
        let detail = match (&result, violations) {
            (Ok(_), 0) => "ok".to_owned(),
            (Ok(_), v) => format!("{v} violation(s)"),
            (Err(e), 0) => e.clone(),
            (Err(e), v) => format!("{v} violation(s); {e}"),
        };
        self.rows.push(Row {
            role: conn.options().name.clone(),
            op,
            allowed,
            succeeded: result.is_ok() && violations == 0,
            detail,
        });
    }

    fn assert_all_as_expected(&self) {
        let mut wrong = Vec::new();
        println!("| role | operation | expected | observed |\n|---|---|---|---|");
        for r in &self.rows {
            let expected = if r.allowed { "allowed" } else { "refused" };
            let observed = if r.succeeded { "succeeded" } else { "refused" };
            println!(
                "| {} | {} | {expected} | {observed}: {} |",
                r.role, r.op, r.detail
            );
            if r.allowed != r.succeeded {
                wrong.push(format!("{} {}: {}", r.role, r.op, r.detail));
            }
        }
        assert!(wrong.is_empty(), "not as the role table says: {wrong:#?}");
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn request(conn: &NatsConnection, subject: &str) -> Result<String, String> {
    let reply = conn
        .client()
        .request(subject.to_owned(), Bytes::from_static(b"{}"))
        .await
        .map_err(err)?;
    Ok(String::from_utf8_lossy(&reply.payload).into_owned())
}

async fn subscribe(
    conn: &NatsConnection,
    subject: &str,
    queue: Option<&str>,
) -> Result<(), String> {
    let sub = match queue {
        Some(q) => {
            conn.client()
                .queue_subscribe(subject.to_owned(), q.to_owned())
                .await
        }
        None => conn.client().subscribe(subject.to_owned()).await,
    }
    .map_err(err)?;
    // Keep the subscription (if the server accepted it) for the rest of the test.
    std::mem::forget(sub);
    Ok(())
}

async fn put(conn: &NatsConnection, bucket: &str, key: &str) -> Result<(), String> {
    let subject = format!("$KV.{bucket}.{key}");
    conn.jetstream()
        .publish(subject, Bytes::from_static(b"x"))
        .await
        .map_err(err)?
        .await
        .map_err(err)?;
    Ok(())
}

async fn js_api(conn: &NatsConnection, call: &str) -> Result<String, String> {
    let reply = request(conn, &format!("$JS.API.{call}")).await?;
    if reply.contains("\"error\"") {
        return Err(reply);
    }
    Ok(reply)
}

/// Answers every request on `subject` (optionally in queue group `queue`) with `name`.
async fn serve(conn: &NatsConnection, subject: &str, queue: Option<&str>, name: &'static str) {
    let client = conn.client().clone();
    let mut sub = match queue {
        Some(q) => {
            client
                .queue_subscribe(subject.to_owned(), q.to_owned())
                .await
        }
        None => client.subscribe(subject.to_owned()).await,
    }
    .unwrap();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = client
                    .publish(reply, Bytes::from_static(name.as_bytes()))
                    .await;
            }
        }
    });
}

/// Replies to 10 requests on `subject`, counting those not answered by `expected`.
async fn foreign_replies(conn: &NatsConnection, subject: &str, expected: &str) -> usize {
    let mut foreign = 0;
    for _ in 0..10 {
        if request(conn, subject).await.as_deref() != Ok(expected) {
            foreign += 1;
        }
    }
    foreign
}

#[tokio::test]
async fn every_role_can_do_exactly_what_the_table_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (p_dir, q_dir) = (dir.path().join("p"), dir.path().join("q"));
    let p = layout("p", &["n1", "n2"], &["a", "b"]);
    let q = layout("q", &["n1"], &[]);
    let p_gen = generate(&p, &p_dir, Credentials::Nkeys).unwrap();
    let q_gen = generate(&q, &q_dir, Credentials::Nkeys).unwrap();
    let accounts = cluster_nats::security::accounts_block([
        p_gen.account_entry.as_str(),
        q_gen.account_entry.as_str(),
    ]);
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![accounts],
        ..NatsServerOptions::default()
    });

    let node = |n: &str| Role::Node(n.parse().unwrap());
    let app = |a: &str| Role::App(a.parse().unwrap());
    let n1 = connect(&server, &p, &p_dir, &node("n1")).await;
    let n2 = connect(&server, &p, &p_dir, &node("n2")).await;
    let admin = connect(&server, &p, &p_dir, &Role::Admin).await;
    let viewer = connect(&server, &p, &p_dir, &Role::Viewer).await;
    let app_a = connect(&server, &p, &p_dir, &app("a")).await;
    let q_n1 = connect(&server, &q, &q_dir, &node("n1")).await;

    // Node n1 creates the platform's buckets and audit stream and serves its subjects.
    let store = n1.kv_store(None);
    for bucket in ["p_members", "p_election"] {
        store
            .bucket(BucketConfig::new(bucket).with_per_key_ttl())
            .await
            .unwrap();
    }
    for bucket in ["p_placement", "p_app_a", "p_app_b"] {
        store.bucket(BucketConfig::new(bucket)).await.unwrap();
    }
    let audit = NatsAuditLog::open(&n1, &"p".parse().unwrap(), AuditStreamOptions::default())
        .await
        .unwrap();
    serve(&n1, "cluster.p.app.a.rpc.n1", None, "n1").await;
    serve(&n1, "cluster.p.app.a.rpc._any", Some("rpc"), "n1").await;
    serve(&n1, "cluster.p.app.b.rpc._any", Some("rpc"), "n1").await;
    for class in ["read.", "write.", ""] {
        serve(&n1, &format!("cluster.p.admin.{class}n1"), None, "n1").await;
    }
    n1.transport().flush().await.unwrap();

    let mut m = Matrix::default();
    // node:n1
    m.check(
        &n1,
        "put members/n1 (own record)",
        true,
        put(&n1, "p_members", "n1"),
    )
    .await;
    m.check(
        &n1,
        "put election/lease.a",
        true,
        put(&n1, "p_election", "lease.a"),
    )
    .await;
    m.check(&n1, "put app a's bucket", true, put(&n1, "p_app_a", "k"))
        .await;
    m.check(&n1, "append audit as n1", true, async {
        n1.jetstream()
            .publish(
                "cluster.p.audit._by.n1.operator.cordon",
                Bytes::from_static(b"{}"),
            )
            .await
            .map_err(err)?
            .await
            .map_err(err)
    })
    .await;
    m.check(
        &n1,
        "delete the member stream",
        false,
        js_api(&n1, "STREAM.DELETE.KV_p_members"),
    )
    .await;
    // node:n2
    m.check(&n2, "put members/n1", false, put(&n2, "p_members", "n1"))
        .await;
    m.check(
        &n2,
        "serve n1's rpc subject",
        false,
        subscribe(&n2, "cluster.p.app.a.rpc.n1", None),
    )
    .await;
    m.check(
        &n2,
        "serve n1's admin subject",
        false,
        subscribe(&n2, "cluster.p.admin.write.n1", None),
    )
    .await;
    m.check(
        &n2,
        "read n1's inbox",
        false,
        subscribe(&n2, "_INBOX.p.node.n1.>", None),
    )
    .await;
    m.check(&n2, "append audit as n1 (forged)", false, async {
        n2.client()
            .publish(
                "cluster.p.audit._by.n1.operator.cordon",
                Bytes::from_static(b"{}"),
            )
            .await
            .map_err(err)
    })
    .await;
    m.check(
        &n2,
        "purge the member stream",
        false,
        js_api(&n2, "STREAM.PURGE.KV_p_members"),
    )
    .await;
    m.check(
        &n2,
        "join app b's rpc queue group",
        true,
        subscribe(&n2, "cluster.p.app.b.rpc._any", Some("rpc")),
    )
    .await;
    // admin
    m.check(
        &admin,
        "write request (drain, cordon, move, stepdown)",
        true,
        request(&admin, "cluster.p.admin.write.n1"),
    )
    .await;
    m.check(
        &admin,
        "read request (status)",
        true,
        request(&admin, "cluster.p.admin.read.n1"),
    )
    .await;
    m.check(
        &admin,
        "v1 admin request",
        true,
        request(&admin, "cluster.p.admin.n1"),
    )
    .await;
    m.check(&admin, "read the audit log", true, async {
        let log = NatsAuditLog::existing(&admin, &"p".parse().unwrap())
            .await
            .map_err(err)?;
        log.query(&AuditFilter::default()).await.map_err(err)
    })
    .await;
    m.check(
        &admin,
        "put placement/cordon.n1",
        false,
        put(&admin, "p_placement", "cordon.n1"),
    )
    .await;
    m.check(
        &admin,
        "put members/n1",
        false,
        put(&admin, "p_members", "n1"),
    )
    .await;
    m.check(&admin, "append an audit record", false, async {
        admin
            .client()
            .publish(
                "cluster.p.audit._by.n1.operator.cordon",
                Bytes::from_static(b"{}"),
            )
            .await
            .map_err(err)
    })
    .await;
    m.check(
        &admin,
        "join app a's rpc queue group",
        false,
        subscribe(&admin, "cluster.p.app.a.rpc._any", Some("rpc")),
    )
    .await;
    // viewer
    m.check(
        &viewer,
        "read request (status)",
        true,
        request(&viewer, "cluster.p.admin.read.n1"),
    )
    .await;
    m.check(
        &viewer,
        "write request (drain, cordon, move, stepdown)",
        false,
        request(&viewer, "cluster.p.admin.write.n1"),
    )
    .await;
    m.check(
        &viewer,
        "v1 admin request (class unknown)",
        false,
        request(&viewer, "cluster.p.admin.n1"),
    )
    .await;
    m.check(&viewer, "read the audit log", true, async {
        let log = NatsAuditLog::existing(&viewer, &"p".parse().unwrap())
            .await
            .map_err(err)?;
        log.query(&AuditFilter::default()).await.map_err(err)
    })
    .await;
    m.check(
        &viewer,
        "read admin's inbox",
        false,
        subscribe(&viewer, "_INBOX.p.admin.>", None),
    )
    .await;
    m.check(
        &viewer,
        "put app a's bucket",
        false,
        put(&viewer, "p_app_a", "k"),
    )
    .await;
    // app:a
    m.check(
        &app_a,
        "call a's rpc (any instance)",
        true,
        request(&app_a, "cluster.p.app.a.rpc._any"),
    )
    .await;
    m.check(
        &app_a,
        "call a's rpc on n1",
        true,
        request(&app_a, "cluster.p.app.a.rpc.n1"),
    )
    .await;
    m.check(&app_a, "put and read a's bucket", true, async {
        put(&app_a, "p_app_a", "k").await?;
        app_a
            .jetstream()
            .get_key_value("p_app_a")
            .await
            .map_err(err)?
            .get("k")
            .await
            .map_err(err)
    })
    .await;
    m.check(&app_a, "open b's bucket", false, async {
        app_a
            .jetstream()
            .get_key_value("p_app_b")
            .await
            .map_err(err)
    })
    .await;
    m.check(&app_a, "put b's bucket", false, put(&app_a, "p_app_b", "k"))
        .await;
    m.check(
        &app_a,
        "call b's rpc",
        false,
        request(&app_a, "cluster.p.app.b.rpc._any"),
    )
    .await;
    m.check(
        &app_a,
        "join a's rpc queue group",
        false,
        subscribe(&app_a, "cluster.p.app.a.rpc._any", Some("rpc")),
    )
    .await;
    m.check(
        &app_a,
        "serve a's rpc on n1",
        false,
        subscribe(&app_a, "cluster.p.app.a.rpc.n1", None),
    )
    .await;
    m.check(
        &app_a,
        "admin read request",
        false,
        request(&app_a, "cluster.p.admin.read.n1"),
    )
    .await;
    m.check(&app_a, "append an audit record", false, async {
        app_a
            .client()
            .publish(
                "cluster.p.audit._by.n1.operator.cordon",
                Bytes::from_static(b"{}"),
            )
            .await
            .map_err(err)
    })
    .await;
    // node:n1 of platform q
    m.check(&q_n1, "open p's member bucket", false, async {
        q_n1.jetstream()
            .get_key_value("p_members")
            .await
            .map_err(err)
    })
    .await;
    m.check(
        &q_n1,
        "put p's members/n1",
        false,
        put(&q_n1, "p_members", "n1"),
    )
    .await;
    m.check(
        &q_n1,
        "call p's rpc",
        false,
        request(&q_n1, "cluster.p.app.a.rpc._any"),
    )
    .await;
    m.check(&q_n1, "create and put its own members/n1", true, async {
        q_n1.kv_store(None)
            .bucket(BucketConfig::new("q_members").with_per_key_ttl())
            .await
            .map_err(err)?;
        put(&q_n1, "q_members", "n1").await
    })
    .await;
    m.assert_all_as_expected();

    // The refused subscriptions took no requests: every reply still comes from n1.
    assert_eq!(
        foreign_replies(&app_a, "cluster.p.app.a.rpc._any", "n1").await,
        0
    );
    assert_eq!(
        foreign_replies(&app_a, "cluster.p.app.a.rpc.n1", "n1").await,
        0
    );
    assert_eq!(
        foreign_replies(&admin, "cluster.p.admin.write.n1", "n1").await,
        0
    );
    // Only n1's own audit record was stored; the forged ones never reached the stream.
    let page = audit.query(&AuditFilter::default()).await;
    let stored = js_api(&n1, "STREAM.INFO.p_audit").await.unwrap();
    assert!(stored.contains("\"messages\":1,"), "{stored} / {page:?}");
}
