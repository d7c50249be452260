//! `WatchLabels` on in-memory nodes (paused time): every node's label change (an operator's
//! update or removal, a node's own `set_labels`) is delivered cluster-wide, both as a watch and
//! as a callback, and placement re-evaluates on the same change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::placement::{AppPlacementExt, planner};
use cluster::{App, Labels, NodeId, PlatformOptions};
use cluster_runtime::LabelWatch;
use cluster_testkit::scenario::{SimCluster, wait_until};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

/// (node, labels) as seen by the callback.
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

async fn next(w: &mut LabelWatch) -> (NodeId, Labels) {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a label change within 10s")
        .expect("platform running")
}

fn pairs(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn label_changes_of_any_node_are_watched_cluster_wide_and_re_evaluate_placement() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        db.on_label("role", "db").unwrap();
        c.start_node_with(n, vec![db], labels(&[("zone", "a")]))
            .await
            .unwrap();
    }
    let mut watch = c.node("n3").platform.watch_labels().await.unwrap();
    assert_eq!(watch.current().len(), 3);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let handle = c
        .node("n1")
        .platform
        .on_labels_changed(move |node, l| s.lock().unwrap().push((node.to_string(), pairs(l))))
        .await
        .unwrap();

    // An operator labels n2 from n1: seen on n3.
    c.node("n1")
        .platform
        .update_node_labels("n2", &labels(&[("role", "db")]))
        .await
        .unwrap();
    let (node, l) = next(&mut watch).await;
    assert_eq!(node, NodeId::new("n2").unwrap());
    assert_eq!(
        pairs(&l),
        vec![("role".into(), "db".into()), ("zone".into(), "a".into())]
    );
    // Placement re-evaluates: db runs where the label now matches.
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    assert_eq!(leader, "n2");

    // A node labels itself.
    c.node("n3")
        .platform
        .set_labels(&labels(&[("disk", "ssd")]))
        .await
        .unwrap();
    let (node, l) = next(&mut watch).await;
    assert_eq!(node.as_str(), "n3");
    assert_eq!(l.get("disk"), Some("ssd"));

    // A removal.
    c.node("n3")
        .platform
        .remove_node_label("n2", "role")
        .await
        .unwrap();
    let (node, l) = next(&mut watch).await;
    assert_eq!(node.as_str(), "n2");
    assert_eq!(pairs(&l), vec![("zone".into(), "a".into())]);
    wait_until("db pending again", Duration::from_secs(20), || {
        c.leader("db").is_none()
    })
    .await;

    // The callback saw the same three changes, in order, and nothing for unchanged nodes.
    wait_until("callback caught up", Duration::from_secs(10), || {
        seen.lock().unwrap().len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(got, vec!["n2", "n3", "n2"]);
    handle.abort();
}
