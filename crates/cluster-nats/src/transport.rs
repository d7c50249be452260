//! `cluster_core::Transport` on core NATS.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{HeaderMap, Request};
use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::transport::{validate_publish_subject, validate_subscribe_subject};
use cluster_core::{Error, Headers, Message, Result, Subscription, Transport};
use futures::StreamExt;

use crate::connection::NatsConnection;
use crate::error::describe;

/// Core NATS publish/subscribe and request/reply, with headers and queue groups.
///
/// Subscriptions are restored by the client after a reconnect; messages published while the
/// connection is down are not delivered to them (core NATS is at most once).
#[derive(Clone, Debug)]
pub struct NatsTransport {
    client: async_nats::Client,
}

impl NatsTransport {
    pub(crate) fn new(client: async_nats::Client) -> Self {
        Self { client }
    }

    /// Returns once the server has processed everything this connection sent before.
    ///
    /// async-nats' `flush` only empties the socket buffer; the server handles one connection's
    /// protocol in order, so a message to a private inbox coming back proves that earlier
    /// `SUB`s and `PUB`s were processed. (In a cluster, interest still travels over the routes
    /// asynchronously; that usually takes well under a millisecond.)
    async fn barrier(&self) -> Result<()> {
        let what = |e: &dyn std::fmt::Display| Error::Unavailable(format!("flush: {e}"));
        let inbox = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| what(&describe(&e)))?;
        self.client
            .publish(inbox, Bytes::new())
            .await
            .map_err(|e| what(&describe(&e)))?;
        let timeout = self.client.timeout().unwrap_or(Duration::from_secs(5));
        match tokio::time::timeout(timeout, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::Unavailable("flush: connection closed".to_owned())),
            Err(_) => Err(Error::Timeout(format!(
                "flush: no round trip to the server within {timeout:?}"
            ))),
        }
    }

    fn check_size(&self, headers: &Headers, payload: &Bytes) -> Result<()> {
        let size = payload.len() + encoded_headers_len(headers);
        let max = self.max_payload();
        if size > max {
            return Err(Error::PayloadTooLarge { size, max });
        }
        Ok(())
    }
}

/// The exact size of the NATS header block (`NATS/1.0\r\n`, `Name: Value\r\n`..., `\r\n`).
pub(crate) fn encoded_headers_len(headers: &Headers) -> usize {
    if headers.is_empty() {
        return 0;
    }
    10 + headers
        .iter()
        .map(|(n, v)| n.len() + 2 + v.len() + 2)
        .sum::<usize>()
        + 2
}

pub(crate) fn to_header_map(headers: &Headers) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(Error::InvalidArgument(format!(
                "invalid header name {name:?}"
            )));
        }
        if value.contains(['\r', '\n']) {
            return Err(Error::InvalidArgument(format!(
                "invalid value for header {name:?}: must not contain line breaks"
            )));
        }
        map.append(name, value);
    }
    Ok(map)
}

pub(crate) fn from_header_map(map: Option<&HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    if let Some(map) = map {
        let mut pairs: Vec<(String, String)> = map
            .iter()
            .map(|(name, values)| {
                let value = values
                    .first()
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                (AsRef::<str>::as_ref(name).to_owned(), value)
            })
            .collect();
        // HeaderMap does not keep insertion order; sort for determinism.
        pairs.sort();
        for (name, value) in pairs {
            headers.insert(name, value);
        }
    }
    headers
}

fn to_message(msg: async_nats::Message) -> Message {
    Message {
        subject: msg.subject.to_string(),
        reply: msg.reply.map(|r| r.to_string()),
        headers: from_header_map(msg.headers.as_ref()),
        payload: msg.payload,
    }
}

fn validate_queue_group(group: &str) -> Result<()> {
    if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "invalid queue group {group:?}"
        )));
    }
    Ok(())
}

#[async_trait]
impl Transport for NatsTransport {
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
        NatsConnection::ensure_connected(&self.client)?;
        let subject = subject.to_owned();
        let result = match (reply, headers.is_empty()) {
            (None, true) => self.client.publish(subject, payload).await,
            (None, false) => {
                self.client
                    .publish_with_headers(subject, to_header_map(&headers)?, payload)
                    .await
            }
            (Some(reply), true) => {
                self.client
                    .publish_with_reply(subject, reply.to_owned(), payload)
                    .await
            }
            (Some(reply), false) => {
                self.client
                    .publish_with_reply_and_headers(
                        subject,
                        reply.to_owned(),
                        to_header_map(&headers)?,
                        payload,
                    )
                    .await
            }
        };
        result.map_err(|e| Error::Unavailable(format!("publish: {}", describe(&e))))
    }

    async fn subscribe(&self, subject: &str, queue_group: Option<&str>) -> Result<Subscription> {
        validate_subscribe_subject(subject)?;
        NatsConnection::ensure_connected(&self.client)?;
        let subscriber = match queue_group {
            Some(group) => {
                validate_queue_group(group)?;
                self.client
                    .queue_subscribe(subject.to_owned(), group.to_owned())
                    .await
            }
            None => self.client.subscribe(subject.to_owned()).await,
        }
        .map_err(|e| Error::Unavailable(format!("subscribe {subject}: {}", describe(&e))))?;
        // Round trip to the server, so the subscription is registered there before we return
        // (the contract: everything published afterwards is delivered).
        self.barrier().await?;
        // Dropping the async-nats Subscriber unsubscribes.
        Ok(Subscription::new(subscriber.map(to_message).boxed()))
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
        NatsConnection::ensure_connected(&self.client)?;
        let mut request = Request::new().payload(payload).timeout(Some(timeout));
        if !headers.is_empty() {
            request = request.headers(to_header_map(&headers)?);
        }
        let sent = self.client.send_request(subject.to_owned(), request);
        // Belt and braces: never wait longer than `timeout`, whatever the client does.
        let reply = tokio::time::timeout(timeout, sent)
            .await
            .map_err(|_| Error::Timeout(format!("request on {subject} after {timeout:?}")))?;
        match reply {
            Ok(msg) => Ok(to_message(msg)),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => Error::NoResponders(subject.to_owned()),
                RequestErrorKind::TimedOut => {
                    Error::Timeout(format!("request on {subject} after {timeout:?}"))
                }
                RequestErrorKind::InvalidSubject => {
                    Error::InvalidArgument(format!("request subject {subject:?}"))
                }
                RequestErrorKind::MaxPayloadExceeded => Error::PayloadTooLarge {
                    size: self.max_payload().saturating_add(1),
                    max: self.max_payload(),
                },
                RequestErrorKind::Other => {
                    Error::Unavailable(format!("request on {subject}: {}", describe(&e)))
                }
            }),
        }
    }

    fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    async fn flush(&self) -> Result<()> {
        NatsConnection::ensure_connected(&self.client)?;
        self.barrier().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_size() {
        assert_eq!(encoded_headers_len(&Headers::new()), 0);
        // "NATS/1.0\r\n" + "A: b\r\n" + "\r\n"
        assert_eq!(
            encoded_headers_len(&Headers::new().with("A", "b")),
            10 + 6 + 2
        );
    }

    #[test]
    fn header_round_trip() {
        let headers = Headers::new().with("X-One", "1").with("X-Two", "2");
        let map = to_header_map(&headers).unwrap();
        assert_eq!(from_header_map(Some(&map)), headers);
        assert!(to_header_map(&Headers::new().with("bad name", "x")).is_err());
        assert!(to_header_map(&Headers::new().with("A", "x\r\ny")).is_err());
    }
}
