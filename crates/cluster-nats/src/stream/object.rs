//! [`ObjectStore`] on a JetStream object store.

use std::collections::{BTreeMap, HashMap};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::object_store::{
    self, DeleteErrorKind, GetErrorKind, ObjectMetadata, PutErrorKind,
};
use async_nats::jetstream::stream;
use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::stream::{ObjectInfo, ObjectStore};
use cluster_core::{Error, Result};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::ObjectStoreConfig;
use crate::connection::NatsConnection;
use crate::error::{describe, jetstream_code, retry_unknown_stream, transient};

/// An [`ObjectStore`] on the JetStream object store `<bucket>` (stream `OBJ_<bucket>`).
///
/// The bucket's stream is created like async-nats creates object stores (chunk subjects
/// `$O.<bucket>.C.>`, metadata subjects `$O.<bucket>.M.>` with rollup) except that direct gets
/// are off, so metadata reads go to the stream leader and a `get` right after a `put` on a
/// replicated bucket sees the new object. Object contents are verified against the SHA-256
/// digest in the metadata while reading.
#[derive(Clone)]
pub struct NatsObjectStore {
    connection: NatsConnection,
    store: object_store::ObjectStore,
    config: ObjectStoreConfig,
}

impl std::fmt::Debug for NatsObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsObjectStore")
            .field("bucket", &self.config.bucket)
            .finish_non_exhaustive()
    }
}

impl NatsObjectStore {
    /// Opens the bucket of `config`, creating it when missing.
    pub async fn open(connection: &NatsConnection, config: ObjectStoreConfig) -> Result<Self> {
        let bucket = &config.bucket;
        if bucket.is_empty()
            || !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::InvalidArgument(format!(
                "invalid object store bucket name {bucket:?}"
            )));
        }
        NatsConnection::ensure_connected(connection.client())?;
        let js = connection.jetstream();
        let what = format!("open object store {bucket}");
        if js.get_object_store(bucket).await.is_err() {
            let cfg = stream::Config {
                name: format!("OBJ_{bucket}"),
                description: Some("cluster object store".to_owned()),
                subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
                storage: stream::StorageType::File,
                num_replicas: config.replicas.max(1),
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                allow_direct: false,
                ..stream::Config::default()
            };
            if let Err(e) = js.create_stream(cfg).await {
                // A concurrent creator may have won; the open below decides.
                tracing::debug!(error = %describe(&e), "object store creation failed");
            }
        }
        let store = js.get_object_store(bucket).await.map_err(|e| {
            let text = describe(&e);
            transient(&what, text.contains("timed out"), text)
        })?;
        Ok(Self {
            connection: connection.clone(),
            store,
            config,
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    fn what(&self, op: &str, name: &str) -> String {
        format!("{op} {name:?} in object store {}", self.config.bucket)
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("empty object name".into()));
    }
    Ok(())
}

fn to_info(info: &object_store::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        name: info.name.clone(),
        size: info.size as u64,
        metadata: info
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[async_trait]
impl ObjectStore for NatsObjectStore {
    async fn put(
        &self,
        name: &str,
        data: Bytes,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectInfo> {
        check_name(name)?;
        NatsConnection::ensure_connected(self.connection.client())?;
        let meta = ObjectMetadata {
            name: name.to_owned(),
            chunk_size: Some(self.config.chunk_size),
            metadata: metadata.into_iter().collect::<HashMap<_, _>>(),
            ..ObjectMetadata::default()
        };
        // A new store may not be known to this client's server yet: see retry_unknown_stream.
        let info = retry_unknown_stream(|| async {
            let mut reader: &[u8] = &data;
            self.store.put(meta.clone(), &mut reader).await
        })
        .await
        .map_err(|e| {
            let text = describe(&e);
            match e.kind() {
                PutErrorKind::InvalidName => {
                    Error::InvalidArgument(format!("{}: {text}", self.what("put", name)))
                }
                _ => transient(&self.what("put", name), text.contains("timed out"), text),
            }
        })?;
        Ok(to_info(&info))
    }

    async fn get(&self, name: &str) -> Result<Option<(ObjectInfo, Bytes)>> {
        check_name(name)?;
        NatsConnection::ensure_connected(self.connection.client())?;
        let mut object = match self.store.get(name).await {
            Ok(o) => o,
            Err(e) => {
                return match e.kind() {
                    GetErrorKind::NotFound => Ok(None),
                    GetErrorKind::InvalidName => Err(Error::InvalidArgument(
                        self.what("invalid object name", name),
                    )),
                    kind => {
                        let text = describe(&e);
                        Err(transient(
                            &self.what("get", name),
                            kind == GetErrorKind::TimedOut || text.contains("timed out"),
                            text,
                        ))
                    }
                };
            }
        };
        let info = to_info(object.info());
        let mut data = Vec::with_capacity(info.size as usize);
        object.read_to_end(&mut data).await.map_err(|e| {
            // A digest mismatch or a chunk that vanished under a concurrent replace.
            Error::Unavailable(format!("{}: {e}", self.what("read", name)))
        })?;
        if data.len() as u64 != info.size {
            return Err(Error::Unavailable(format!(
                "{}: read {} bytes, expected {}",
                self.what("read", name),
                data.len(),
                info.size
            )));
        }
        Ok(Some((info, Bytes::from(data))))
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>> {
        NatsConnection::ensure_connected(self.connection.client())?;
        let what = format!("list object store {}", self.config.bucket);
        let mut list = self.store.list().await.map_err(|e| {
            let text = describe(&e);
            transient(&what, text.contains("timed out"), text)
        })?;
        let mut out = Vec::new();
        while let Some(item) = list.next().await {
            let info = item.map_err(|e| transient(&what, false, describe(&e)))?;
            out.push(to_info(&info));
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        NatsConnection::ensure_connected(self.connection.client())?;
        match self.store.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(()),
            Err(e) => {
                let text = describe(&e);
                // The object's info message is gone already (JetStream 10037); a missing
                // stream ("stream not found") is an error, not a deleted object.
                if jetstream_code(&e) == Some(ErrorCode::NO_MESSAGE_FOUND) {
                    Ok(())
                } else {
                    Err(transient(
                        &self.what("delete", name),
                        text.contains("timed out"),
                        text,
                    ))
                }
            }
        }
    }
}
