//! The admin service over the in-memory network: status, app views, step-down with a
//! not-leader hint, unknown methods and apps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster::core::Transport;
use cluster::core::wire::admin::{AdminClass, AdminMethod, AdminReply, AdminRequest};
use cluster::runtime::{AdminClient, AdminTarget};
use cluster::{App, Error, PlatformOptions, dev};

async fn node(
    network: &dev::Network,
    name: &str,
) -> (
    cluster::Platform,
    tokio::task::JoinHandle<cluster::Result<()>>,
) {
    let p = dev::platform(network, "adm", name)
        .unwrap()
        .options(PlatformOptions::fast())
        .build()
        .unwrap();
    p.register(&App::singleton("db").unwrap()).unwrap();
    p.register(&App::spread("web").unwrap()).unwrap();
    let runner = p.clone();
    let task = tokio::spawn(async move { runner.run().await });
    p.wait_started().await.unwrap();
    (p, task)
}

#[tokio::test(start_paused = true)]
async fn admin_requests_answer_status_and_step_down() {
    let network = dev::Network::new();
    let (p1, t1) = node(&network, "n1").await;
    let (p2, t2) = node(&network, "n2").await;
    let client = AdminClient::new(network.transport("_cli"), "adm".parse().unwrap());
    // Wait until both see each other and db has a leader.
    let leader = loop {
        let all = client.status_all().await.unwrap();
        let ok: Vec<_> = all.into_iter().filter_map(|(_, r)| r.ok()).collect();
        if ok.len() == 2
            && ok.iter().all(|s| s.members.len() == 2)
            && let Some(l) = ok[0]
                .apps
                .iter()
                .find(|a| a.name.as_str() == "db")
                .and_then(|a| a.leader.clone())
        {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let standby = if leader.as_str() == "n1" { "n2" } else { "n1" };
    let standby: cluster::NodeId = standby.parse().unwrap();

    let status = client.node_status(&leader).await.unwrap();
    let db = status
        .apps
        .iter()
        .find(|a| a.name.as_str() == "db")
        .unwrap();
    assert_eq!(db.role, cluster::Role::Leader);
    assert!(db.epoch.is_some());
    assert_eq!(client.app_list(&standby).await.unwrap().apps.len(), 2);

    // A standby refuses with a hint naming the leader.
    let err = client
        .step_down(&standby, Some(&"db".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotLeader { leader: Some(l), .. } if *l == leader),
        "{err}"
    );
    // Unknown app and node.
    let err = client
        .step_down(&leader, Some(&"nope".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AppNotFound(_)), "{err}");
    let err = client
        .node_status(&"n9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NodeNotFound(_)), "{err}");
    let replies = client
        .app_status_all(&"nope".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(replies.len(), 2);
    assert!(
        replies
            .iter()
            .all(|(_, r)| matches!(r, Err(Error::AppNotFound(_))))
    );
    // An unknown method is named in the error.
    let mut req = AdminRequest::new(AdminMethod::Status);
    req.method = "frobnicate".into();
    let replies = client
        .send(&AdminTarget::Node(leader.clone()), &req)
        .await
        .unwrap();
    let err = replies
        .into_iter()
        .next()
        .unwrap()
        .into_result::<cluster::core::wire::admin::StepDownReply>()
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_method");

    // Protocol v2: a write method on the read subject is refused (the NATS server lets a viewer
    // publish there); v1 subjects, without a class, are still answered.
    let raw = network.transport("_raw");
    let names = cluster::core::wire::names::Names::new("adm".parse().unwrap());
    let stepdown = AdminRequest::new(AdminMethod::StepDown);
    let ask = |subject: String, request: AdminRequest| {
        let raw = raw.clone();
        async move {
            let (headers, payload) = request.encode().unwrap();
            let msg = raw
                .request(&subject, headers, payload, Duration::from_secs(5))
                .await
                .unwrap();
            AdminReply::decode(&msg.headers, &msg.payload)
                .unwrap()
                .into_result::<serde_json::Value>()
        }
    };
    let refused = ask(
        names.admin_class_node(AdminClass::Read, &standby),
        stepdown.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), "invalid_argument", "{refused}");
    assert!(refused.to_string().contains("admin.write"), "{refused}");
    let v1 = ask(
        names.admin_node(&standby),
        AdminRequest::new(AdminMethod::NodeStatus),
    )
    .await;
    assert_eq!(v1.unwrap()["node"], standby.as_str());
    let read = ask(
        names.admin_class_node(AdminClass::Read, &standby),
        AdminRequest::new(AdminMethod::NodeStatus),
    )
    .await;
    assert_eq!(read.unwrap()["node"], standby.as_str());
    assert_eq!(AdminMethod::StepDown.class(), AdminClass::Write);
    assert_eq!(AdminClass::of_name("frobnicate"), AdminClass::Write);

    // The leader steps down; the other node takes over with a newer epoch.
    let old_epoch = db.epoch;
    let done = client
        .step_down(&leader, Some(&"db".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(done.stepped_down.len(), 1);
    assert_eq!(done.stepped_down[0].epoch, old_epoch);
    loop {
        let st = client.node_status(&standby).await.unwrap();
        let db = st
            .apps
            .iter()
            .find(|a| a.name.as_str() == "db")
            .unwrap()
            .clone();
        if db.role == cluster::Role::Leader {
            assert!(db.epoch > old_epoch);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p1.shutdown();
    p2.shutdown();
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();
}
