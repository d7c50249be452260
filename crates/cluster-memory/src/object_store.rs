//! An in-memory [`ObjectStore`] (the snapshot store of JetStream's object store), for dev mode,
//! tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::stream::{ObjectInfo, ObjectStore};
use cluster_core::{Error, Result};

use crate::lock::lock;

/// An in-memory object store. Clones share the store.
#[derive(Debug, Clone, Default)]
pub struct MemoryObjectStore {
    objects: Arc<Mutex<BTreeMap<String, (ObjectInfo, Bytes)>>>,
}

impl MemoryObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, (ObjectInfo, Bytes)>> {
        lock(&self.objects)
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn put(
        &self,
        name: &str,
        data: Bytes,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectInfo> {
        if name.is_empty() {
            return Err(Error::InvalidArgument("empty object name".into()));
        }
        let info = ObjectInfo {
            name: name.to_owned(),
            size: data.len() as u64,
            metadata,
        };
        self.lock().insert(name.to_owned(), (info.clone(), data));
        Ok(info)
    }

    async fn get(&self, name: &str) -> Result<Option<(ObjectInfo, Bytes)>> {
        Ok(self.lock().get(name).cloned())
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>> {
        Ok(self.lock().values().map(|(i, _)| i.clone()).collect())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.lock().remove(name);
        Ok(())
    }
}
