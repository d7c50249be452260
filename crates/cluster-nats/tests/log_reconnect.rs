//! `NatsReplicatedLog::read_from` survives a server restart: the ordered consumer is recreated
//! after the reconnect and the reader continues after the last entry it delivered, without
//! gaps or duplicates, also when it had delivered nothing yet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_core::Headers;
use cluster_core::stream::{LogStream, MSG_ID_HEADER, ReplicatedLog};
use cluster_nats::{LogConfig, NatsReplicatedLog};
use cluster_testkit::nats_server::NatsServer;
use futures::StreamExt;

const RECOVER: Duration = Duration::from_secs(30);

async fn next_seq(s: &mut LogStream) -> u64 {
    tokio::time::timeout(RECOVER, s.next())
        .await
        .expect("an entry in time")
        .expect("stream open")
        .expect("no error")
        .seq
}

async fn append_retrying(log: &NatsReplicatedLog, id: &str) -> u64 {
    common::eventually(RECOVER, || async {
        log.append(
            Headers::new().with(MSG_ID_HEADER, id),
            Bytes::from_static(b"x"),
            None,
        )
        .await
        .ok()
        .map(|a| a.seq)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_continue_after_a_server_restart() {
    let mut server = NatsServer::start();
    let conn = common::connect(&[server.url()]).await;
    let log = NatsReplicatedLog::open(&conn, LogConfig::new("RECON", "recon.log"))
        .await
        .unwrap();
    for i in 1..=5 {
        append_retrying(&log, &format!("a{i}")).await;
    }
    let mut live = log.read_from(1).await.unwrap();
    for i in 1..=5 {
        assert_eq!(next_seq(&mut live).await, i);
    }
    // A reader that has delivered nothing yet (waiting beyond the tail).
    let mut waiting = log.read_from(7).await.unwrap();

    server.restart();
    common::eventually(RECOVER, || async { conn.is_connected().then_some(()) }).await;
    for i in 6..=9 {
        let seq = append_retrying(&log, &format!("b{i}")).await;
        assert_eq!(seq, i, "sequences continue after the restart");
    }
    for i in 6..=9 {
        assert_eq!(next_seq(&mut live).await, i, "no gap and no duplicate");
    }
    for i in 7..=9 {
        assert_eq!(
            next_seq(&mut waiting).await,
            i,
            "a reader recreated before its first delivery still starts at its start sequence"
        );
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), live.next()).await {
        panic!("unexpected extra entry {extra:?}");
    }
}
