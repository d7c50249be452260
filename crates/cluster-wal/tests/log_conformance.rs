//! The `ReplicatedLog` / `ObjectStore` conformance suites against the in-memory implementations
//! (the same suites run against NATS in `cluster-nats/tests/stream_conformance.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cluster_core::Result;
use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_memory::{MemoryLog, MemoryObjectStore};
use cluster_testkit::conformance::stream::{self, LogFactory, ObjectStoreFactory};

#[derive(Default)]
struct Memory {
    logs: Mutex<HashMap<String, MemoryLog>>,
    stores: Mutex<HashMap<String, MemoryObjectStore>>,
}

#[async_trait]
impl LogFactory for Memory {
    async fn open(&self, name: &str) -> Result<Arc<dyn ReplicatedLog>> {
        let mut logs = self.logs.lock().unwrap();
        Ok(Arc::new(logs.entry(name.to_owned()).or_default().clone()))
    }
}

#[async_trait]
impl ObjectStoreFactory for Memory {
    async fn open(&self, name: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.lock().unwrap();
        Ok(Arc::new(stores.entry(name.to_owned()).or_default().clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_and_object_store_pass_the_suites() {
    let m = Memory::default();
    stream::run_log_suite(&m).await;
    stream::run_object_store_suite(&m).await;
}
