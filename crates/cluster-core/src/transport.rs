//! The message transport: publish/subscribe and request/reply with headers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use crate::error::Result;

/// Message headers: an ordered list of name/value pairs; names compare case-sensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing any previous values of `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
        self
    }

    /// Builder-style [`Headers::insert`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Iterates over all pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Approximate encoded size in bytes (names, values and separators).
    pub fn encoded_len(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
    }
}

/// A message received from the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to.
    pub subject: String,
    /// Where to send a reply, if the publisher expects one.
    pub reply: Option<String>,
    /// Headers.
    pub headers: Headers,
    /// Payload.
    pub payload: Bytes,
}

/// A live subscription: a stream of messages. Dropping it unsubscribes.
pub struct Subscription {
    inner: BoxStream<'static, Message>,
}

impl Subscription {
    /// Wraps a message stream; the stream must unsubscribe when dropped.
    pub fn new(inner: BoxStream<'static, Message>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Subject-based messaging (core NATS semantics).
///
/// Subjects are `.`-separated tokens; subscriptions may use `*` (one token) and `>` (one or more
/// trailing tokens).
///
/// # To ensure correctness
///
/// * `publish` must reject a payload larger than [`Transport::max_payload`] with
///   `Error::PayloadTooLarge` **before** sending anything.
/// * Delivery is at most once and unordered across publishers, but messages from one publisher
///   to one subscriber arrive in publish order.
/// * Once `subscribe` has returned, every message published afterwards to a matching subject
///   through the same server is delivered to the subscription (unless the transport is
///   disconnected or partitioned). Across the servers of a NATS cluster interest propagates
///   asynchronously (typically well under a millisecond), so a publisher on another server may
///   briefly see no responders; callers of request/reply retry or treat `NoResponders` as
///   transient. A subscription with a queue group receives each message on exactly one member of
///   the group.
/// * `request` returns the first reply, `Error::NoResponders` when nobody is subscribed, and
///   `Error::Timeout` when no reply arrived within `timeout`. It never waits longer than
///   `timeout` (plus scheduling noise).
/// * Dropping a [`Subscription`] unsubscribes; no messages are buffered for it afterwards.
/// * Errors: `Unavailable` when disconnected, `InvalidArgument` for an invalid subject.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes a message, with an optional reply subject.
    async fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Headers,
        payload: Bytes,
    ) -> Result<()>;

    /// Subscribes to a subject (wildcards allowed), optionally as a member of a queue group.
    async fn subscribe(&self, subject: &str, queue_group: Option<&str>) -> Result<Subscription>;

    /// Sends a request and waits for the first reply.
    async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message>;

    /// A fresh, unique subject to receive replies on.
    fn new_inbox(&self) -> String;

    /// The largest payload (headers included) the transport accepts.
    fn max_payload(&self) -> usize;

    /// Waits until everything published so far has been handed to the server.
    async fn flush(&self) -> Result<()>;
}

/// Checks a concrete subject (no wildcards) for publishing.
pub fn validate_publish_subject(subject: &str) -> Result<()> {
    validate_subject(subject, false)
}

/// Checks a subscription subject (wildcards allowed, `>` only last).
pub fn validate_subscribe_subject(subject: &str) -> Result<()> {
    validate_subject(subject, true)
}

fn validate_subject(subject: &str, wildcards: bool) -> Result<()> {
    use crate::error::Error;
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "subject {subject:?}: {why}"
        )))
    };
    if subject.is_empty() {
        return bad("must not be empty");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return bad("has an empty token");
        }
        if t.chars().any(|c| c.is_whitespace()) {
            return bad("contains whitespace");
        }
        let is_wild = *t == "*" || *t == ">";
        if is_wild && !wildcards {
            return bad("wildcards are not allowed here");
        }
        if *t == ">" && i + 1 != tokens.len() {
            return bad("'>' must be the last token");
        }
        if !is_wild && (t.contains('*') || t.contains('>')) {
            return bad("wildcards must be whole tokens");
        }
    }
    Ok(())
}

/// Whether a concrete `subject` matches the subscription `pattern`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.d"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.*", "a.b.c"));
    }

    #[test]
    fn subject_validation() {
        assert!(validate_publish_subject("a.b.c").is_ok());
        assert!(validate_publish_subject("a.*").is_err());
        assert!(validate_publish_subject("a..b").is_err());
        assert!(validate_publish_subject("").is_err());
        assert!(validate_subscribe_subject("a.*.>").is_ok());
        assert!(validate_subscribe_subject("a.>.b").is_err());
        assert!(validate_subscribe_subject("a.b*").is_err());
        assert!(validate_publish_subject("a b").is_err());
    }

    #[test]
    fn headers_replace_on_insert() {
        let mut h = Headers::new();
        h.insert("A", "1");
        h.insert("A", "2");
        assert_eq!(h.get("A"), Some("2"));
        assert_eq!(h.len(), 1);
    }
}
