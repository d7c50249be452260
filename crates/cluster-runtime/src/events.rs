//! Events: publish/subscribe with wildcards, per app or platform-wide.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tracing::debug;

use super::app::App;
use super::event_registry::Registration;
use super::isolate;
use super::platform::Shared;
use cluster_core::error::{Error, Result};
use cluster_core::id::AppName;
use cluster_core::transport::{Subscription, validate_publish_subject, validate_subscribe_subject};
use cluster_core::wire::event::{decode_event, event_headers};

pub use cluster_core::wire::event::Event;

#[derive(Debug, Clone)]
enum Scope {
    App(AppName),
    Platform,
}

/// An event namespace: an app's own ([`App::events`]) or the platform's
/// ([`Platform::events`](super::Platform::events)).
///
/// Subjects are `.`-separated tokens (`user.created`); subscriptions may use `*` and `>`.
/// Delivery is at most once (core messaging): subscribers see every event published while they
/// are subscribed and connected, in publish order per publisher.
#[derive(Clone)]
pub struct Events {
    shared: Weak<Shared>,
    scope: Scope,
    source_app: Option<AppName>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("scope", &self.scope)
            .finish()
    }
}

impl Events {
    pub(crate) fn for_app(app: App) -> Self {
        Self {
            shared: app.inner.platform.get().cloned().unwrap_or_default(),
            scope: Scope::App(app.name().clone()),
            source_app: Some(app.name().clone()),
        }
    }

    pub(crate) fn for_platform(shared: &Arc<Shared>) -> Self {
        Self {
            shared: Arc::downgrade(shared),
            scope: Scope::Platform,
            source_app: None,
        }
    }

    fn shared(&self) -> Result<Arc<Shared>> {
        self.shared.upgrade().ok_or_else(|| {
            Error::InvalidArgument(
                "events used before the app was registered with a platform".into(),
            )
        })
    }

    fn full(&self, shared: &Shared, subject: &str) -> String {
        match &self.scope {
            Scope::App(app) => shared.names.app_event(app, subject),
            Scope::Platform => shared.names.platform_event(subject),
        }
    }

    /// Publishes an event. The subject must not contain wildcards.
    pub async fn publish(&self, subject: &str, data: impl Into<Bytes>) -> Result<()> {
        validate_publish_subject(subject)?;
        let shared = self.shared()?;
        let data = data.into();
        let headers = event_headers(&shared.node, self.source_app.as_ref(), shared.clock.wall());
        let size = headers.encoded_len() + data.len();
        if size > shared.transport.max_payload() {
            return Err(Error::PayloadTooLarge {
                size,
                max: shared.transport.max_payload(),
            });
        }
        shared
            .transport
            .publish(&self.full(&shared, subject), None, headers, data)
            .await
    }

    /// Subscribes to `pattern` and returns a stream of events. Dropping it unsubscribes.
    pub async fn stream(&self, pattern: &str) -> Result<EventStream> {
        validate_subscribe_subject(pattern)?;
        let shared = self.shared()?;
        let sub = shared
            .transport
            .subscribe(&self.full(&shared, pattern), None)
            .await?;
        Ok(EventStream {
            sub,
            shared: Arc::downgrade(&shared),
            scope: self.scope.clone(),
        })
    }

    /// Subscribes `handler` to `pattern`; it is called for each event, in order. Stop it with
    /// [`Events::unsubscribe`] (every handler on that pattern), by calling
    /// [`EventSubscription::unsubscribe`] or by dropping the returned handle.
    ///
    /// A handler that panics loses that event only: the panic is logged, counted
    /// (`gc_hook_panics_total{hook="event"}`) and audited, and the next event is delivered.
    pub async fn subscribe<F>(&self, pattern: &str, handler: F) -> Result<EventSubscription>
    where
        F: Fn(Event) + Send + Sync + 'static,
    {
        let mut stream = self.stream(pattern).await?;
        let shared = self.shared()?;
        let subject = self.full(&shared, pattern);
        let Registration { id, stop, done } = shared.event_subs.register(&subject);
        let (weak, app) = (self.shared.clone(), self.source_app.clone());
        let task = tokio::spawn(async move {
            // Dropped when the task ends (or is aborted): `Events::unsubscribe` waits for it.
            let _done = done;
            loop {
                let event = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    event = stream.next() => match event {
                        Some(event) => event,
                        None => return,
                    },
                };
                // A panicking handler loses this event only; the subscription goes on.
                let call =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(event)));
                if let Err(payload) = call {
                    let panicked = isolate::Panicked::from_payload(payload);
                    isolate::report(
                        weak.upgrade().as_deref().map(|s| &*s.ctx),
                        app.as_ref(),
                        "event",
                        &panicked,
                    );
                }
            }
        });
        Ok(EventSubscription {
            task,
            shared: self.shared.clone(),
            subject,
            id,
        })
    }

    /// Stops every handler subscription on `pattern` made through this namespace on this node
    /// (by any handle of it: `app.events()` twice is the same namespace) and returns how many
    /// were stopped (0 when none was). When it returns, none of their handlers runs any more.
    /// Streams ([`Events::stream`]) are not affected: drop them to unsubscribe.
    pub async fn unsubscribe(&self, pattern: &str) -> Result<usize> {
        validate_subscribe_subject(pattern)?;
        let shared = self.shared()?;
        let subject = self.full(&shared, pattern);
        Ok(shared.event_subs.stop_all(&subject).await)
    }
}

/// A subscription running a handler. Dropping it unsubscribes.
#[derive(Debug)]
pub struct EventSubscription {
    task: JoinHandle<()>,
    shared: Weak<Shared>,
    subject: String,
    id: u64,
}

impl EventSubscription {
    /// Stops delivering events: no new handler call starts (one already running finishes).
    pub fn unsubscribe(self) {}
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(shared) = self.shared.upgrade() {
            shared.event_subs.forget(&self.subject, self.id);
        }
    }
}

/// A stream of decoded events; malformed messages are counted and skipped.
pub struct EventStream {
    sub: Subscription,
    shared: Weak<Shared>,
    scope: Scope,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("scope", &self.scope)
            .finish()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            let msg = match self.sub.poll_next_unpin(cx) {
                Poll::Ready(Some(m)) => m,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let Some(shared) = self.shared.upgrade() else {
                return Poll::Ready(None);
            };
            let relative = match &self.scope {
                Scope::App(app) => shared.names.app_event_suffix(app, &msg.subject),
                Scope::Platform => shared.names.platform_event_suffix(&msg.subject),
            };
            let decoded = relative
                .ok_or_else(|| Error::Malformed(format!("unexpected subject {}", msg.subject)))
                .and_then(|subject| decode_event(subject, &msg.headers, msg.payload));
            match decoded {
                Ok(event) => return Poll::Ready(Some(event)),
                Err(e) => {
                    shared.stats.count_malformed("event");
                    debug!(error = %e, "dropping malformed event");
                }
            }
        }
    }
}
