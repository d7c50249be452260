//! [`Transport`] over the in-memory network.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::transport::{validate_publish_subject, validate_subscribe_subject};
use cluster_core::{Error, Headers, Message, Result, Subscription, Transport};
use futures::StreamExt;

use crate::delivery::{self, Gate};
use crate::lock::lock;
use crate::network::Shared;

/// One node's connection to a [`MemoryNetwork`](crate::MemoryNetwork), with NATS core
/// semantics (see [`Transport`]).
pub struct MemoryTransport {
    shared: Arc<Shared>,
    node: String,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Removes a subscription from the bus when its stream is dropped.
struct Unsubscribe {
    shared: Weak<Shared>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.bus).remove(self.id);
        }
    }
}

impl MemoryTransport {
    pub(crate) fn new(shared: Arc<Shared>, node: &str) -> Self {
        Self {
            shared,
            node: node.to_owned(),
        }
    }

    /// The node this connection belongs to.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn check_size(&self, headers: &Headers, payload: &Bytes) -> Result<()> {
        let size = payload.len() + headers.encoded_len();
        let max = self.shared.config.max_payload;
        if size > max {
            return Err(Error::PayloadTooLarge { size, max });
        }
        Ok(())
    }

    /// Routes a message and returns the number of interested reachable subscriptions, or
    /// `None` when this node is partitioned (the message is dropped).
    fn send(&self, message: Message) -> Option<usize> {
        let faults = &self.shared.faults;
        faults.count_published(&self.node);
        if faults.is_partitioned(&self.node) {
            faults.count_dropped(&self.node);
            return None;
        }
        Some(lock(&self.shared.bus).route(faults, &self.node, message))
    }

    fn subscribe_now(&self, subject: &str, queue_group: Option<&str>) -> Subscription {
        let mut bus = lock(&self.shared.bus);
        let id = bus.reserve_id();
        let guard = Unsubscribe {
            shared: Arc::downgrade(&self.shared),
            id,
        };
        let (tx, stream) = delivery::channel(
            self.shared.faults.clone(),
            &self.node,
            Gate::Drop,
            Box::new(guard),
        );
        bus.insert(id, &self.node, subject, queue_group, tx);
        Subscription::new(stream)
    }
}

fn validate_queue_group(queue_group: Option<&str>) -> Result<()> {
    match queue_group {
        Some(q) if q.is_empty() || q.chars().any(|c| c.is_whitespace()) => {
            Err(Error::InvalidArgument(format!("invalid queue group {q:?}")))
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Headers,
        payload: Bytes,
    ) -> Result<()> {
        validate_publish_subject(subject)?;
        if let Some(reply) = reply {
            validate_publish_subject(reply)?;
        }
        self.check_size(&headers, &payload)?;
        self.send(Message {
            subject: subject.to_owned(),
            reply: reply.map(str::to_owned),
            headers,
            payload,
        });
        Ok(())
    }

    async fn subscribe(&self, subject: &str, queue_group: Option<&str>) -> Result<Subscription> {
        validate_subscribe_subject(subject)?;
        validate_queue_group(queue_group)?;
        Ok(self.subscribe_now(subject, queue_group))
    }

    async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message> {
        validate_publish_subject(subject)?;
        self.check_size(&headers, &payload)?;
        let inbox = self.new_inbox();
        let mut replies = self.subscribe_now(&inbox, None);
        let sent = self.send(Message {
            subject: subject.to_owned(),
            reply: Some(inbox),
            headers,
            payload,
        });
        if sent == Some(0) {
            return Err(Error::NoResponders(subject.to_owned()));
        }
        match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(reply)) => Ok(reply),
            _ => Err(Error::Timeout(format!(
                "no reply on {subject} within {timeout:?}"
            ))),
        }
    }

    fn new_inbox(&self) -> String {
        self.shared.new_inbox()
    }

    fn max_payload(&self) -> usize {
        self.shared.config.max_payload
    }

    async fn flush(&self) -> Result<()> {
        // Routing is synchronous, so everything published is already with the "server";
        // a partitioned node cannot reach it until healed.
        let timeout = self.shared.config.kv_op_timeout;
        tokio::time::timeout(timeout, self.shared.faults.wait_reachable(&self.node))
            .await
            .map_err(|_| Error::Unavailable(format!("node {} is partitioned", self.node)))
    }
}
