//! The conformance factories of the in-memory network (`cluster-memory`): each connection is a
//! new node.

use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::{KvStore, Result, Transport};
use cluster_memory::MemoryNetwork;

use crate::conformance::kv::KvFactory;
use crate::conformance::transport::TransportFactory;

#[async_trait]
impl KvFactory for MemoryNetwork {
    async fn connect(&self) -> Result<Arc<dyn KvStore>> {
        Ok(self.kv(&self.new_client_name()))
    }
}

#[async_trait]
impl TransportFactory for MemoryNetwork {
    async fn connect(&self) -> Result<Arc<dyn Transport>> {
        Ok(self.transport(&self.new_client_name()))
    }
}
