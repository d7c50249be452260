//! A platform secured by the NATS server (docs/SECURITY.md): `cluster auth gen-config`
//! output loaded into a real nats-server, three daemons (a Singleton and a Spread app) each
//! connected as its own `node:{N}` identity, the CLI as `admin` and `viewer`. Proves the
//! allow-lists are complete (leadership, membership, admin status, step-down and drain work and
//! no daemon reports a permission violation) and that a bad seed file stops at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use cluster_testkit::nats_server::{NatsServer, NatsServerOptions};
use common::{Daemon, Scratch, cli, config, wait_for};
use serde_json::Value;

const VIOLATION: &str = "NATS permission violation";

/// `cluster --nats-nkey <dir>/<who>.nk [--nats-role viewer] args…`.
fn as_identity(dir: &Path, who: &str, cfg: &str, args: &[&str]) -> common::Run {
    let key = dir.join(format!("{who}.nk"));
    let mut all = vec!["--config", cfg, "--nats-nkey", key.to_str().unwrap()];
    if who == "viewer" {
        all.extend(["--nats-role", "viewer"]);
    }
    all.extend(args);
    cli(&all)
}

/// The db leader once `who` sees three members and a leader of db.
fn leader(keys: &Path, who: &str, cfg: &str) -> Option<String> {
    let r = as_identity(keys, who, cfg, &["--json", "status"]);
    if r.code != 0 {
        return None;
    }
    let v: Value = r.json();
    let db = v["apps"].as_array()?.iter().find(|a| a["name"] == "db")?;
    (v["members"].as_array()?.len() == 3)
        .then(|| db["leader"].as_str().map(str::to_owned))
        .flatten()
}

#[test]
fn a_platform_runs_with_generated_permissions() {
    let dir = Scratch::new("secure");
    let keys = dir.0.join("auth");
    let keys_s = keys.to_str().unwrap();
    let r = cli(&[
        "--platform",
        "sec",
        "--json",
        "auth",
        "gen-config",
        "--nodes",
        "n1,n2,n3",
        "--apps",
        "db,web",
        "--out",
        keys_s,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let identities = r.json()["identities"].as_array().unwrap().len();
    assert_eq!(identities, 7, "3 nodes, admin, viewer, 2 apps");
    let mode = std::fs::metadata(keys.join("node-n1.nk"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let accounts = std::fs::read_to_string(keys.join("accounts.conf")).unwrap();
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![accounts],
        ..NatsServerOptions::default()
    });
    let cfg = dir.file("cluster.toml", &config("sec", &server.url()));
    let cfg_s = cfg.to_str().unwrap();

    // Without credentials nothing connects (the server now requires a user).
    let r = cli(&["--config", cfg_s, "--timeout", "2s", "status"]);
    assert_ne!(r.code, 0, "{r:?}");

    let daemons: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| {
            let key = keys.join(format!("node-{n}.nk"));
            Daemon::start_with(&cfg, n, &dir.0, &["--nats-nkey", key.to_str().unwrap()])
        })
        .collect();
    let logs = || {
        daemons
            .iter()
            .map(|d| format!("--- {}\n{}", d.node, d.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Membership and leadership work; admin and viewer both read the status.
    let first = wait_for("3 members and a db leader", Duration::from_secs(30), || {
        leader(&keys, "admin", cfg_s)
    });
    assert!(leader(&keys, "viewer", cfg_s).is_some(), "viewer status");

    // RPC: an `app:db` client reaches the daemons' `rpc._any` queue group (they answer
    // `unknown_method`: the config apps register no handler) and gets the replies on its
    // private inbox; web's RPC is refused to it.
    let repliers = rpc_as_app_db(&server.url(), &keys);
    assert!(
        !repliers.is_empty()
            && repliers
                .iter()
                .all(|n| ["n1", "n2", "n3"].contains(&n.as_str())),
        "{repliers:?}"
    );

    // The viewer cannot step down (the server refuses the write subject): no change.
    let r = as_identity(
        &keys,
        "viewer",
        cfg_s,
        &["--timeout", "2s", "stepdown", "--app", "db"],
    );
    assert_ne!(r.code, 0, "viewer stepdown must fail: {r:?}");
    assert_eq!(
        leader(&keys, "admin", cfg_s).as_deref(),
        Some(first.as_str())
    );

    // The admin can: another node leads.
    let r = as_identity(&keys, "admin", cfg_s, &["stepdown", "--app", "db"]);
    assert_eq!(r.code, 0, "admin stepdown: {r:?}\n{}", logs());
    let second = wait_for("a new db leader", Duration::from_secs(30), || {
        leader(&keys, "admin", cfg_s).filter(|l| *l != first)
    });

    // Drain the leader's node: db moves, the drain completes.
    let r = as_identity(
        &keys,
        "admin",
        cfg_s,
        &["node", "drain", &second, "--timeout", "30s"],
    );
    assert_eq!(r.code, 0, "drain: {r:?}\n{}", logs());
    assert!(r.stdout.contains("drained"), "{r:?}");
    let third = wait_for(
        "db led off the drained node",
        Duration::from_secs(30),
        || leader(&keys, "admin", cfg_s).filter(|l| *l != second),
    );
    assert_ne!(third, second);

    // The audit log names the writer of each record, vouched for by the subject.
    let r = as_identity(
        &keys,
        "viewer",
        cfg_s,
        &["--json", "audit", "--limit", "1000"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let audit = r.json();
    let entries = audit["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        assert_eq!(e["writer"], e["node"], "{e}");
    }

    // The doctor, as the viewer: version above the secure floor, the default lazy fsync
    // flagged, the platform's streams at 1 replica on 1 server, the clock offset shown.
    let monitor = format!("http://{}", server.monitor_addr());
    let r = as_identity(
        &keys,
        "viewer",
        cfg_s,
        &["--json", "doctor", "--monitor", &monitor],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let checks: Vec<(String, String)> = r.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let status_of = |name: &str| -> Vec<&str> {
        checks
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    assert_eq!(status_of("server-version"), ["ok"], "{checks:?}");
    assert_eq!(status_of("sync-interval"), ["warn"], "{checks:?}");
    assert_eq!(status_of("replicas"), ["ok"; 5], "{checks:?}");
    assert_eq!(status_of("clock"), ["ok"], "{checks:?}");

    // Nothing the platform did was refused: the allow-lists are complete.
    for d in &daemons {
        let log = d.log_text();
        assert!(log.contains("connected to NATS"), "{}:\n{log}", d.node);
        assert!(
            !log.contains(VIOLATION),
            "{} hit a violation:\n{log}",
            d.node
        );
    }
    eprintln!(
        "db leaders: {first}, after stepdown {second}, after draining it {third}; {} audit \
         records, all with writer = node; db RPC answered by {repliers:?}",
        entries.len()
    );
}

/// Calls db's RPC 12 times as `app:db`; returns the nodes that answered. Panics unless every
/// call is answered with `unknown_method` and a call to web's RPC fails.
fn rpc_as_app_db(url: &str, keys: &Path) -> BTreeSet<String> {
    use cluster::core::wire::rpc::{RequestMeta, Routing, parse_reply};
    use cluster::core::{Error, Transport};
    use cluster::nats::security::Role;

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db: cluster::AppName = "db".parse().unwrap();
        let role = Role::App(db.clone());
        let options = cluster::nats::ConnectOptions::new([url])
            .nkey_file(keys.join("app-db.nk"))
            .inbox_prefix(role.inbox_prefix(&"sec".parse().unwrap()));
        let conn = cluster::nats::connect(options).await.unwrap();
        let transport = conn.transport();
        let meta = |app: &cluster::AppName| {
            RequestMeta::new(
                "ping".parse().unwrap(),
                "client".parse().unwrap(),
                Some(app.clone()),
                Some(&Routing::ToAny),
                Duration::from_secs(2),
            )
            .to_headers()
        };
        let mut repliers = BTreeSet::new();
        for _ in 0..12 {
            let reply = transport
                .request(
                    "cluster.sec.app.db.rpc._any",
                    meta(&db),
                    bytes::Bytes::new(),
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
            let err = parse_reply(&reply.headers).unwrap_err();
            assert!(matches!(err, Error::UnknownMethod { .. }), "{err}");
            repliers.insert(reply.headers.get("Cluster-Reply-Node").unwrap().to_owned());
        }
        let web = transport
            .request(
                "cluster.sec.app.web.rpc._any",
                meta(&"web".parse().unwrap()),
                bytes::Bytes::new(),
                Duration::from_secs(1),
            )
            .await;
        assert!(web.is_err(), "app:db reached web's RPC: {web:?}");
        assert!(conn.permission_violations() >= 1);
        repliers
    })
}

#[test]
fn a_missing_or_bad_seed_file_stops_at_start() {
    let dir = Scratch::new("secure-bad");
    let cfg = dir.file("cluster.toml", &config("sec", "nats://127.0.0.1:1"));
    let cfg_s = cfg.to_str().unwrap();
    let missing = dir.0.join("node-n1.nk");
    let missing_s = missing.to_str().unwrap();
    let r = cli(&[
        "--config",
        cfg_s,
        "--node",
        "n1",
        "--nats-nkey",
        missing_s,
        "run",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains(missing_s) && r.stderr.contains("cannot read"),
        "{r:?}"
    );
    let junk = dir.file("junk.nk", "not a seed\n");
    let r = cli(&[
        "--config",
        cfg_s,
        "--nats-nkey",
        junk.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("not an nkey user seed"), "{r:?}");
    let r = cli(&["--config", cfg_s, "--nats-creds", missing_s, "status"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("creds file") && r.stderr.contains(missing_s),
        "{r:?}"
    );
}

/// The platform part of a configuration connecting over mutual TLS with `cert`/`key`.
fn tls_config(url: &str, certs: &Path, who: &str) -> String {
    let p = |f: &str| certs.join(f).display().to_string();
    common::platform_config("sec", url, "10s")
        + &format!(
            "[nats.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n[[apps]]\nname = \"db\"\nmode = \"singleton\"\n",
            p("ca.pem"),
            p(&format!("{who}.pem")),
            p(&format!("{who}.key"))
        )
}

#[test]
fn daemons_connect_with_client_certificates_mapped_to_identities() {
    let dir = Scratch::new("secure-tls");
    let (certs, other) = (dir.0.join("certs"), dir.0.join("other-ca"));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    cluster_testkit::nats_server::make_certs(&certs, &["node-n1", "admin"]);
    cluster_testkit::nats_server::make_certs(&other, &["node-n1"]);
    let keys = dir.0.join("auth");
    let r = cli(&[
        "--platform",
        "sec",
        "auth",
        "gen-config",
        "--tls",
        "--nodes",
        "n1",
        "--apps",
        "db",
        "--out",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("CN=node-n1"), "{r:?}");
    let p = |f: &str| certs.join(f).display().to_string();
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![
            std::fs::read_to_string(keys.join("accounts.conf")).unwrap(),
            format!(
                "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify_and_map: true, timeout: 2 }}",
                p("server.pem"),
                p("server.key"),
                p("ca.pem")
            ),
        ],
        ..NatsServerOptions::default()
    });
    let node_cfg = dir.file("n1.toml", &tls_config(&server.url(), &certs, "node-n1"));
    let admin_cfg = dir.file("admin.toml", &tls_config(&server.url(), &certs, "admin"));
    let admin_s = admin_cfg.to_str().unwrap();
    let daemon = Daemon::start(&node_cfg, "n1", &dir.0);
    wait_for("n1 leads db over mTLS", Duration::from_secs(30), || {
        let r = cli(&["--config", admin_s, "--json", "status"]);
        let v = (r.code == 0).then(|| r.json())?;
        let db = v["apps"].as_array()?.iter().find(|a| a["name"] == "db")?;
        (db["leader"] == "n1").then_some(())
    });
    let log = daemon.log_text();
    assert!(!log.contains(VIOLATION), "{log}");

    // A certificate from another CA is refused at the handshake: exit 4 naming TLS (another
    // node id: n1's host lock is held by the running daemon).
    let wrong_cfg = dir.file("wrong.toml", &tls_config(&server.url(), &other, "node-n1"));
    let mut wrong = Daemon::start(&wrong_cfg, "n2", &dir.0.join("other-ca"));
    let status = wrong.wait_exit(Duration::from_secs(20));
    let text = wrong.log_text();
    assert_eq!(status.code(), Some(4), "{text}");
    assert!(text.to_lowercase().contains("tls"), "{text}");

    // A client certificate the server's CA did not sign (the server's own is trusted): refused
    // by the server, exit 4 naming TLS.
    let foreign = tls_config(&server.url(), &other, "node-n1").replace(
        &other.join("ca.pem").display().to_string(),
        &certs.join("ca.pem").display().to_string(),
    );
    let foreign_cfg = dir.file("foreign.toml", &foreign);
    let r = cli(&[
        "--config",
        foreign_cfg.to_str().unwrap(),
        "--node",
        "n3",
        "run",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.to_lowercase().contains("tls"), "{r:?}");
    eprintln!("refused client certificate: {}", r.stderr.trim());

    // A missing certificate file: exit 4 naming it, before connecting.
    let missing = tls_config(&server.url(), &dir.0.join("nowhere"), "node-n1");
    let missing_cfg = dir.file("missing.toml", &missing);
    let r = cli(&[
        "--config",
        missing_cfg.to_str().unwrap(),
        "--node",
        "n1",
        "run",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("nowhere/node-n1.pem"), "{r:?}");
}

#[test]
fn managed_mode_runs_on_minted_short_lived_credentials() {
    let dir = Scratch::new("secure-managed");
    let keys = dir.0.join("managed");
    let keys_s = keys.to_str().unwrap();
    let r = cli(&[
        "--platform",
        "sec",
        "auth",
        "gen-config",
        "--managed",
        "--out",
        keys_s,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let server = NatsServer::start_with(NatsServerOptions {
        extra_config: vec![std::fs::read_to_string(keys.join("operator.conf")).unwrap()],
        ..NatsServerOptions::default()
    });
    let account = keys.join("account-sec.nk");
    let mint = |identity: &str, ttl: &str, file: &str| {
        let out = dir.0.join(file);
        let r = cli(&[
            "--platform",
            "sec",
            "auth",
            "mint",
            "--identity",
            identity,
            "--apps",
            "db,web",
            "--ttl",
            ttl,
            "--account-key",
            account.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{r:?}");
        out
    };
    let node = mint("node:n1", "10m", "n1.creds");
    let admin = mint("admin", "10m", "admin.creds");
    let mode = std::fs::metadata(&node).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let cfg = dir.file("cluster.toml", &config("sec", &server.url()));
    let cfg_s = cfg.to_str().unwrap();
    let daemon = Daemon::start_with(
        &cfg,
        "n1",
        &dir.0,
        &["--nats-creds", node.to_str().unwrap()],
    );
    wait_for(
        "n1 leads db on minted credentials",
        Duration::from_secs(30),
        || {
            let r = cli(&[
                "--config",
                cfg_s,
                "--nats-creds",
                admin.to_str().unwrap(),
                "--json",
                "status",
            ]);
            let v = (r.code == 0).then(|| r.json())?;
            let db = v["apps"].as_array()?.iter().find(|a| a["name"] == "db")?;
            (db["leader"] == "n1").then_some(())
        },
    );
    let log = daemon.log_text();
    assert!(!log.contains(VIOLATION), "{log}");

    // Expired credentials: exit 4 naming the file.
    let expired = mint("admin", "1s", "expired.creds");
    std::thread::sleep(Duration::from_millis(2100));
    let r = cli(&[
        "--config",
        cfg_s,
        "--nats-creds",
        expired.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("expired") && r.stderr.contains("expired.creds"),
        "{r:?}"
    );
}
