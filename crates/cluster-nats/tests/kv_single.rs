//! The KV contract against one real nats-server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cluster_testkit::nats_server::NatsServer;
use common::kv_scenarios as s;

async fn store(server: &NatsServer) -> cluster_nats::NatsKvStore {
    common::connect(&[server.url()]).await.kv_store(Some(1))
}

macro_rules! scenario {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let server = NatsServer::start();
            s::$name(&store(&server).await).await;
        }
    };
}

scenario!(put_get_and_revisions);
scenario!(create_is_exclusive);
scenario!(update_is_compare_and_set);
scenario!(delete_rules);
scenario!(keys_are_sorted_and_live);
scenario!(watch_reports_changes_in_order);
scenario!(ttl_expiry_and_renewal);
scenario!(rejects_bad_input);
