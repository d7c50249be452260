//! A Singleton move hands leadership only to a standby whose resources are ready
//! (`ActiveResource::standby_ready`, e.g. a database replica that caught up): it waits while
//! the target is not ready and completes as soon as it is (in-memory nodes, paused time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cluster::placement::planner;
use cluster::{App, Epoch, PlatformOptions};
use cluster_core::{ActiveResource, RetryPolicy};
use cluster_runtime::MoveRequest;
use cluster_testkit::scenario::{SimCluster, wait_until};

/// A resource whose standby readiness the test controls.
struct Gate(Arc<AtomicBool>);

#[async_trait]
impl ActiveResource for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    async fn activate(&self, _epoch: Epoch) -> cluster::Result<()> {
        Ok(())
    }

    async fn deactivate(&self) -> cluster::Result<()> {
        Ok(())
    }

    fn standby_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn a_singleton_move_waits_until_the_target_standby_is_ready() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    let mut gates = std::collections::BTreeMap::new();
    for n in ["n1", "n2"] {
        let db = App::singleton("db").unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        db.add_resource(Arc::new(Gate(ready.clone())), RetryPolicy::default());
        gates.insert(n.to_owned(), ready);
        c.start_node(n, vec![db]).await.unwrap();
    }
    let (source, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    let target = if source == "n1" { "n2" } else { "n1" }.to_owned();
    wait_until("target runs a standby", Duration::from_secs(20), || {
        c.node(&target).app("db").role() == cluster::Role::Standby
    })
    .await;
    let platform = c.node(&source).platform.clone();
    let request = MoveRequest {
        app: "db".into(),
        from: source.clone(),
        to: Some(target.clone()),
        timeout: Duration::from_secs(60),
    };
    let mv = tokio::spawn(async move { platform.move_app(request).await });
    // The target's replica is "behind": no hand-off, however long we wait.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(c.leaders("db"), vec![source.clone()]);
    assert!(!mv.is_finished(), "the move waits for the target");
    // Once it reports ready (at its next membership refresh), leadership moves.
    gates[&target].store(true, Ordering::SeqCst);
    let moved_to = tokio::time::timeout(Duration::from_secs(30), mv)
        .await
        .expect("the move completes once the target is ready")
        .unwrap()
        .unwrap();
    assert_eq!(moved_to.as_str(), target);
    assert_eq!(c.leaders("db"), vec![target.clone()]);
}
