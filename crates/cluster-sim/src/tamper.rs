//! The attacker: raw writes to the election bucket through the in-memory KV, as a buggy tool
//! or an attacker with store access would do them.

use bytes::Bytes;
use cluster_core::election::FLOOR_KEY;
use cluster_core::{BucketConfig, KvBucket};
use cluster_memory::MemoryNetwork;

use crate::plan::Tamper;

/// The election bucket of platform `platform`.
fn election_bucket(platform: &str) -> BucketConfig {
    BucketConfig::new(format!("{platform}_election")).with_per_key_ttl()
}

/// Applies `what` to `app`'s records; returns a one-line outcome for the trace.
pub(crate) async fn apply(
    network: &MemoryNetwork,
    platform: &str,
    app: &str,
    nodes: &[String],
    what: Tamper,
) -> String {
    let bucket = match network.kv("attacker").open(election_bucket(platform)).await {
        Ok(b) => b,
        Err(e) => return format!("open failed: {e}"),
    };
    let key = format!("lease.{app}");
    let result = match what {
        Tamper::Corrupt => bucket
            .put(&key, Bytes::from_static(b"\x00not a lease{"))
            .await
            .map(|r| format!("rev {}", r.0)),
        Tamper::Forge { node, epoch } => {
            let node = &nodes[node % nodes.len()];
            let record =
                format!(r#"{{"v":1,"node":"{node}","instance":"forged","epoch":{epoch}}}"#);
            bucket
                .put(&key, Bytes::from(record))
                .await
                .map(|r| format!("rev {}", r.0))
        }
        Tamper::Delete => bucket.delete(&key, None).await.map(|()| "deleted".into()),
        Tamper::Replay => match bucket.get(&key).await {
            Ok(Some(entry)) => bucket
                .put(&key, entry.value)
                .await
                .map(|r| format!("rev {} replays rev {}", r.0, entry.revision.0)),
            Ok(None) => Ok("nothing to replay".into()),
            Err(e) => Err(e),
        },
        Tamper::RaiseFloor => bucket
            .put(
                FLOOR_KEY,
                Bytes::from_static(br#"{"v":1,"floor":1000000000}"#),
            )
            .await
            .map(|r| format!("rev {}", r.0)),
        Tamper::DeleteFloor => bucket
            .delete(FLOOR_KEY, None)
            .await
            .map(|()| "deleted".into()),
    };
    result.unwrap_or_else(|e| format!("failed: {e}"))
}
