//! Resources held by leaders: order, fencing tokens, failure → step-down, no overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::{ActiveResource, RetryPolicy};
use cluster_core::{Epoch, Error, Result};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::{SimCluster, wait_until};

/// Records every activation in a log shared by all nodes, and the set of active holders.
struct Probe {
    node: String,
    name: String,
    log: Arc<Mutex<Vec<String>>>,
    holders: Arc<Mutex<Vec<String>>>,
    fail: bool,
}

#[async_trait]
impl ActiveResource for Probe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn activate(&self, epoch: Epoch) -> Result<()> {
        if self.fail {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {} fail", self.node, self.name));
            return Err(Error::Unavailable("port in use".into()));
        }
        let mut holders = self.holders.lock().unwrap();
        assert!(
            holders.iter().all(|h| h.starts_with(&self.node)),
            "{} activates {} while {holders:?} hold it",
            self.node,
            self.name
        );
        holders.push(format!("{}:{}", self.node, self.name));
        self.log.lock().unwrap().push(format!(
            "{} {} up {}",
            self.node,
            self.name,
            epoch.get() > 0
        ));
        Ok(())
    }

    async fn deactivate(&self) -> Result<()> {
        let tag = format!("{}:{}", self.node, self.name);
        self.holders.lock().unwrap().retain(|h| *h != tag);
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {} down", self.node, self.name));
        Ok(())
    }
}

fn app(
    node: &str,
    log: &Arc<Mutex<Vec<String>>>,
    holders: &Arc<Mutex<Vec<String>>>,
    fail_vip: bool,
) -> App {
    let app = App::singleton("db").unwrap();
    let policy = RetryPolicy {
        attempts: 2,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(1),
    };
    for (name, fail) in [("vip", fail_vip), ("backend", false)] {
        app.add_resource(
            Arc::new(Probe {
                node: node.into(),
                name: name.into(),
                log: log.clone(),
                holders: holders.clone(),
                fail,
            }),
            policy,
        );
    }
    let l = log.clone();
    let n = node.to_owned();
    app.on_active(move |_| {
        let l = l.clone();
        let n = n.clone();
        async move {
            l.lock().unwrap().push(format!("{n} on_active"));
            Ok(())
        }
    });
    let l = log.clone();
    let n = node.to_owned();
    app.on_passive(move |_| {
        let l = l.clone();
        let n = n.clone();
        async move {
            l.lock().unwrap().push(format!("{n} on_passive"));
            Ok(())
        }
    });
    app
}

#[tokio::test(start_paused = true)]
async fn resources_activate_in_order_before_on_active_and_release_in_reverse() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let holders = Arc::new(Mutex::new(Vec::new()));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster
        .start_node("n1", vec![app("n1", &log, &holders, false)])
        .await
        .unwrap();
    cluster.wait_leader("db", Duration::from_secs(5)).await;
    cluster
        .start_node("n2", vec![app("n2", &log, &holders, false)])
        .await
        .unwrap();
    cluster.node("n1").app("db").step_down().await.unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    assert_eq!(leader, "n2");
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "n1 vip up true",
            "n1 backend up true",
            "n1 on_active",
            "n1 on_passive",
            "n1 backend down",
            "n1 vip down",
            "n2 vip up true",
            "n2 backend up true",
            "n2 on_active",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_resource_that_cannot_activate_makes_the_node_step_down() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let holders = Arc::new(Mutex::new(Vec::new()));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster
        .start_node("n1", vec![app("n1", &log, &holders, true)])
        .await
        .unwrap();
    cluster
        .start_node("n2", vec![app("n2", &log, &holders, false)])
        .await
        .unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(leader, "n2", "a node that cannot hold its VIP never leads");
    let log = log.lock().unwrap().clone();
    assert!(!log.contains(&"n1 on_active".to_owned()), "{log:?}");
    wait_until("n1 stays standby", Duration::from_secs(3), || {
        !cluster.node("n1").app("db").is_leader()
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn crash_and_partition_never_leave_two_holders() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let holders = Arc::new(Mutex::new(Vec::new()));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2", "n3"] {
        cluster
            .start_node(n, vec![app(n, &log, &holders, false)])
            .await
            .unwrap();
    }
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    // Partition: the old leader must release before anyone else activates (the probe asserts).
    cluster.network.partition(&first);
    wait_until("another leader", Duration::from_secs(10), || {
        cluster.leader("db").is_some_and(|l| l != first)
    })
    .await;
    assert_eq!(
        holders.lock().unwrap().len(),
        2,
        "exactly one node holds vip and backend"
    );
}
