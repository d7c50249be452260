//! Resources of a Singleton app follow the leader's deadline (`ActiveResource::follow_deadline`,
//! issue 11 item 6): the watch they get names the term they were activated for, moves on every
//! renewal, never lies beyond `T(1−ε)`, and ends with the term.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::{ActiveResource, DeadlineWatch, RetryPolicy};
use cluster_core::{Epoch, Result};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::SimCluster;
use tokio::time::Instant;

/// Keeps the deadline watch it was given and the epoch of its last activation.
#[derive(Default)]
struct Follower {
    watch: Mutex<Option<DeadlineWatch>>,
    calls: Mutex<u32>,
    epoch: Mutex<Option<Epoch>>,
}

#[async_trait]
impl ActiveResource for Follower {
    fn name(&self) -> &str {
        "follower"
    }

    async fn activate(&self, epoch: Epoch) -> Result<()> {
        *self.epoch.lock().unwrap() = Some(epoch);
        Ok(())
    }

    async fn deactivate(&self) -> Result<()> {
        Ok(())
    }

    fn follow_deadline(&self, deadline: DeadlineWatch) {
        *self.calls.lock().unwrap() += 1;
        *self.watch.lock().unwrap() = Some(deadline);
    }
}

impl Follower {
    fn watch(&self) -> DeadlineWatch {
        self.watch
            .lock()
            .unwrap()
            .clone()
            .expect("a deadline watch")
    }
}

#[tokio::test(start_paused = true)]
async fn resources_follow_the_leaders_deadline_until_the_term_ends() {
    let timing = PlatformOptions::fast().election;
    let act = timing.act_window();
    let app = App::singleton("db").unwrap();
    let before = Arc::new(Follower::default());
    app.add_resource(before.clone(), RetryPolicy::default());
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster.start_node("n1", vec![app.clone()]).await.unwrap();
    cluster.wait_leader("db", Duration::from_secs(5)).await;

    assert_eq!(
        *before.calls.lock().unwrap(),
        1,
        "one watch per instance start"
    );
    let epoch = before.epoch.lock().unwrap().expect("activated");
    assert_eq!(app.fencing_token(), Some(epoch));
    let watch = before.watch();
    assert_eq!(watch.margin(), timing.lease_ttl - act, "the margin is ε·T");
    let first = watch
        .deadline(epoch)
        .expect("the deadline of the current term");
    assert!(first <= Instant::now() + act, "never beyond T(1−ε)");
    assert!(watch.remaining(epoch).unwrap() > Duration::ZERO);
    assert_eq!(
        watch.deadline(Epoch(epoch.0 + 1)),
        None,
        "another term has none"
    );

    // Renewals move it.
    let mut w = watch.clone();
    tokio::time::sleep(timing.renew_interval * 3).await;
    let later = w.deadline(epoch).unwrap();
    assert!(later > first, "the deadline moved with the renewals");
    assert!(later <= Instant::now() + act);

    // A resource added to the running instance gets a watch too.
    let after = Arc::new(Follower::default());
    app.add_resource(after.clone(), RetryPolicy::default());
    assert!(after.watch().deadline(epoch).is_some());

    // The term ends: no deadline for it any more, and the watch says it changed.
    app.step_down().await.unwrap();
    assert!(w.changed().await);
    assert_eq!(w.deadline(epoch), None);
    cluster.stop_node("n1").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn spread_apps_get_no_deadline() {
    let app = App::spread("web").unwrap();
    let r = Arc::new(Follower::default());
    app.add_resource(r.clone(), RetryPolicy::default());
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster.start_node("n1", vec![app.clone()]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        r.epoch.lock().unwrap().map(|e| e.0),
        Some(0),
        "activated at start"
    );
    assert_eq!(*r.calls.lock().unwrap(), 0);
    cluster.stop_node("n1").await.unwrap();
}
