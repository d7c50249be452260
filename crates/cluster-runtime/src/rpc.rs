//! RPC: handlers, middleware, the server side of an app and the calling side.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;
use tracing::{Instrument, Span, debug, info_span};

use super::app::App;
use super::hooks::{BoxError, handler_error};
use super::isolate;
use super::platform::Shared;
use crate::sync::read;
use cluster_core::error::{Error, Result};
use cluster_core::id::{AppName, MethodName, NodeId};
use cluster_core::mode::Mode;
use cluster_core::transport::{Headers, Message};
use cluster_core::wire::names::Names;
use cluster_core::wire::rpc::{RequestMeta, error_reply, ok_reply, parse_reply};

pub use cluster_core::wire::rpc::Routing;

/// A request as seen by a handler.
#[derive(Clone)]
pub struct Request {
    /// The method called.
    pub method: MethodName,
    /// The payload.
    pub payload: Bytes,
    /// The calling node.
    pub source_node: NodeId,
    /// The calling app, if the caller was an app.
    pub source_app: Option<AppName>,
    /// All request headers.
    pub headers: Headers,
    /// The app serving the request.
    pub app: App,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("source_node", &self.source_node)
            .field("source_app", &self.source_app)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Request {
    /// Decodes the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::InvalidArgument(format!("request payload is not valid JSON: {e}")))
    }
}

/// Encodes a handler's JSON response.
pub fn json_response<T: Serialize>(value: &T) -> Result<Bytes, BoxError> {
    Ok(Bytes::from(serde_json::to_vec(value)?))
}

/// A request handler.
pub(crate) type Handler =
    Arc<dyn Fn(Request) -> BoxFuture<'static, Result<Bytes, BoxError>> + Send + Sync>;

/// A middleware: receives the request and the rest of the chain.
pub(crate) type Middleware =
    Arc<dyn Fn(Request, Next) -> BoxFuture<'static, Result<Bytes, BoxError>> + Send + Sync>;

pub(crate) fn boxed_handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, BoxError>> + Send + 'static,
{
    Arc::new(move |r| Box::pin(f(r)))
}

pub(crate) fn boxed_middleware<F, Fut>(f: F) -> Middleware
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, BoxError>> + Send + 'static,
{
    Arc::new(move |r, n| Box::pin(f(r, n)))
}

/// The rest of a middleware chain.
pub struct Next {
    chain: Arc<Vec<Middleware>>,
    index: usize,
    handler: Handler,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").field("index", &self.index).finish()
    }
}

impl Next {
    /// Runs the next middleware, or the handler at the end of the chain.
    pub fn run(self, request: Request) -> BoxFuture<'static, Result<Bytes, BoxError>> {
        match self.chain.get(self.index).cloned() {
            Some(mw) => {
                let next = Next {
                    chain: self.chain,
                    index: self.index + 1,
                    handler: self.handler,
                };
                mw(request, next)
            }
            None => (self.handler)(request),
        }
    }
}

/// Subscribes the app's RPC subjects and serves requests until aborted.
pub(crate) async fn serve(app: &App, shared: &Arc<Shared>) -> Result<Vec<AbortHandle>> {
    let names = &shared.names;
    let name = app.name();
    let subs = [
        shared
            .transport
            .subscribe(&names.rpc_node(name, &shared.node), None)
            .await?,
        shared
            .transport
            .subscribe(&names.rpc_any(name), Some(Names::RPC_QUEUE))
            .await?,
        shared
            .transport
            .subscribe(&names.rpc_all(name), None)
            .await?,
    ];
    let mut handles = Vec::new();
    for mut sub in subs {
        let app = app.clone();
        let weak = Arc::downgrade(shared);
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(shared) = weak.upgrade() else { return };
                let app = app.clone();
                let span = info_span!("rpc.server", app = %app.name(),
                    method = msg.headers.get(cluster_core::wire::headers::METHOD).unwrap_or(""),
                    node = %shared.node);
                cluster_core::trace::extract(&msg.headers, &span);
                tokio::spawn(handle_message(app, shared, msg).instrument(span));
            }
        });
        handles.push(task.abort_handle());
    }
    Ok(handles)
}

async fn handle_message(app: App, shared: Arc<Shared>, msg: Message) {
    let Some(reply) = msg.reply.clone() else {
        shared.stats.count_malformed("rpc");
        debug!(subject = %msg.subject, "dropping RPC request without reply subject");
        return;
    };
    let started = tokio::time::Instant::now();
    let method = served_method(&app, &msg);
    let result = dispatch(&app, &shared, msg).await;
    let (mut status, headers, payload) = match result {
        Ok(payload) => ("ok", ok_reply(&shared.node), payload),
        Err(e) => {
            if matches!(e, Error::Malformed(_)) {
                shared.stats.count_malformed("rpc");
            }
            (e.kind(), error_reply(&shared.node, &e), Bytes::new())
        }
    };
    let (headers, payload) =
        if headers.encoded_len() + payload.len() > shared.transport.max_payload() {
            let e = Error::PayloadTooLarge {
                size: payload.len(),
                max: shared.transport.max_payload(),
            };
            status = e.kind();
            (error_reply(&shared.node, &e), Bytes::new())
        } else {
            (headers, payload)
        };
    crate::metrics::rpc_served(app.name().as_str(), &method, status, started.elapsed());
    if let Err(e) = shared
        .transport
        .publish(&reply, None, headers, payload)
        .await
    {
        debug!(error = %e, "could not send RPC reply");
    }
}

/// The `method` label of a served request: the method if the app registers it, else `-` (a
/// caller must not be able to grow the label set with made-up names).
fn served_method(app: &App, msg: &Message) -> String {
    RequestMeta::from_headers(&msg.headers)
        .ok()
        .map(|m| m.method)
        .filter(|m| read(&app.inner.handlers).contains_key(m))
        .map_or_else(|| "-".to_owned(), |m| m.to_string())
}

async fn dispatch(app: &App, shared: &Arc<Shared>, msg: Message) -> Result<Bytes> {
    let meta = RequestMeta::from_headers(&msg.headers)?;
    if shared.is_draining() {
        return Err(Error::ShuttingDown);
    }
    if meta.requires_leader() && !app.is_leader() {
        return Err(app.not_leader());
    }
    let handler = read(&app.inner.handlers).get(&meta.method).cloned();
    let Some(handler) = handler else {
        return Err(Error::UnknownMethod {
            app: app.name().to_string(),
            method: meta.method.to_string(),
        });
    };
    let chain = Arc::new(read(&app.inner.middleware).clone());
    let request = Request {
        method: meta.method.clone(),
        payload: msg.payload,
        source_node: meta.source_node.clone(),
        source_app: meta.source_app.clone(),
        headers: msg.headers,
        app: app.clone(),
    };
    let next = Next {
        chain,
        index: 0,
        handler,
    };
    // The chain runs in its own task: a panic becomes an error reply, not a lost request.
    let chain = isolate::run(async move { next.run(request).await });
    match tokio::time::timeout(meta.timeout, chain).await {
        Ok(Ok(Ok(bytes))) => Ok(bytes),
        Ok(Ok(Err(e))) => Err(handler_error(e)),
        Ok(Err(panicked)) => {
            isolate::report(Some(&*shared.ctx), Some(app.name()), "rpc", &panicked);
            Err(Error::Handler(format!(
                "handler {} {panicked}",
                meta.method
            )))
        }
        Err(_) => Err(Error::Timeout(format!(
            "handler {} did not finish within {:?}",
            meta.method, meta.timeout
        ))),
    }
}

/// One instance's answer to a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastReply {
    /// The node that answered.
    pub node: Option<NodeId>,
    /// Its result.
    pub result: Result<Bytes>,
}

/// Calls instances of one app; from inside an app ([`App::rpc`]) or across apps
/// ([`Platform::api`](super::Platform::api)).
#[derive(Clone)]
pub struct RpcClient {
    shared: std::sync::Weak<Shared>,
    source_app: Option<AppName>,
    target: AppName,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("source_app", &self.source_app)
            .field("target", &self.target)
            .finish()
    }
}

impl RpcClient {
    pub(crate) fn for_app(app: App) -> Self {
        Self {
            shared: app.inner.platform.get().cloned().unwrap_or_default(),
            source_app: Some(app.name().clone()),
            target: app.name().clone(),
        }
    }

    pub(crate) fn cross_app(shared: &Arc<Shared>, target: AppName) -> Self {
        Self {
            shared: Arc::downgrade(shared),
            source_app: None,
            target,
        }
    }

    fn shared(&self) -> Result<Arc<Shared>> {
        self.shared.upgrade().ok_or(Error::ShuttingDown)
    }

    /// The app this client calls.
    pub fn target(&self) -> &AppName {
        &self.target
    }

    /// Calls `method` with the platform's default RPC timeout.
    pub async fn call(
        &self,
        routing: Routing,
        method: impl AsRef<str>,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes> {
        let timeout = self.shared()?.options.rpc_timeout;
        self.call_with_timeout(routing, method, payload, timeout)
            .await
    }

    /// Calls `method`, routed by the target app's mode: the leader of a Singleton app, any
    /// instance otherwise.
    pub async fn call_auto(
        &self,
        method: impl AsRef<str>,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes> {
        let routing = self.default_routing()?;
        self.call(routing, method, payload).await
    }

    /// The default routing for the target app, from its mode as advertised by its members.
    pub fn default_routing(&self) -> Result<Routing> {
        let shared = self.shared()?;
        match shared.app_mode(&self.target) {
            Some(Mode::Singleton) => Ok(Routing::ToLeader),
            Some(_) => Ok(Routing::ToAny),
            None => Err(Error::AppNotFound(self.target.to_string())),
        }
    }

    /// Calls `method` with an explicit timeout.
    pub async fn call_with_timeout(
        &self,
        routing: Routing,
        method: impl AsRef<str>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes> {
        let method = method.as_ref();
        let span = info_span!("rpc.client", app = %self.target, method, routing = ?routing);
        let started = tokio::time::Instant::now();
        let result = self
            .call_inner(routing, method, payload.into(), timeout)
            .instrument(span)
            .await;
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        crate::metrics::rpc(self.target.as_str(), method, status, started.elapsed());
        result
    }

    async fn call_inner(
        &self,
        routing: Routing,
        method: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        let shared = self.shared()?;
        let method = MethodName::new(method)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let routing = match routing {
            Routing::ForKey(key) => Routing::ToNode(shared.ring_owner(&self.target, &key)?),
            other => other,
        };
        let subject = match &routing {
            Routing::ToNode(node) => shared.names.rpc_node(&self.target, node),
            Routing::ForKey(_) => return Err(Error::Internal("unresolved key routing".into())),
            Routing::ToAny => shared.names.rpc_any(&self.target),
            Routing::ToLeader => {
                let leader = shared.resolve_leader(&self.target, deadline).await?;
                shared.names.rpc_node(&self.target, &leader)
            }
        };
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        if timeout.is_zero() {
            return Err(Error::Timeout(format!(
                "call {}.{method}: no leader found in time",
                self.target
            )));
        }
        let no_responders = |routing: &Routing| match routing {
            Routing::ToNode(n) => Error::NodeNotFound(format!(
                "{n} (no instance of app {} answers there)",
                self.target
            )),
            Routing::ToAny => {
                Error::AppNotFound(format!("{} (no instance is running)", self.target))
            }
            Routing::ToLeader => Error::NoLeader(format!("app {}", self.target)),
            Routing::ForKey(_) => Error::Internal("unresolved key routing".into()),
        };
        let reply = self
            .send(
                &shared,
                &method,
                &subject,
                &routing,
                payload.clone(),
                timeout,
            )
            .await
            .map_err(|e| match e {
                Error::NoResponders(_) => no_responders(&routing),
                e => e,
            })?;
        match parse_reply(&reply.headers) {
            Ok(_) => Ok(reply.payload),
            // One redirect to the leader named in a NotLeader reply (the caller's view of the
            // leader was stale). The request still says `ToLeader`, so a second stale node
            // answers NotLeader again instead of serving it.
            Err(Error::NotLeader {
                leader: Some(leader),
                ..
            }) if routing == Routing::ToLeader => {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let subject = shared.names.rpc_node(&self.target, &leader);
                let reply = self
                    .send(&shared, &method, &subject, &routing, payload, remaining)
                    .await
                    .map_err(|e| match e {
                        Error::NoResponders(_) => no_responders(&routing),
                        e => e,
                    })?;
                parse_reply(&reply.headers)?;
                Ok(reply.payload)
            }
            Err(e) => {
                if matches!(e, Error::Malformed(_)) {
                    shared.stats.count_malformed("rpc");
                }
                Err(e)
            }
        }
    }

    /// Sends one request (headers with the request metadata and the trace context) and returns
    /// the raw reply.
    async fn send(
        &self,
        shared: &Arc<Shared>,
        method: &MethodName,
        subject: &str,
        routing: &Routing,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message> {
        let meta = RequestMeta::new(
            method.clone(),
            shared.node.clone(),
            self.source_app.clone(),
            Some(routing),
            timeout,
        );
        let mut headers = meta.to_headers();
        cluster_core::trace::inject(&Span::current(), &mut headers);
        check_size(shared, &headers, &payload)?;
        shared
            .transport
            .request(subject, headers, payload, timeout)
            .await
    }

    /// Calls `method` with a JSON request and decodes the JSON response.
    pub async fn call_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        routing: Routing,
        method: impl AsRef<str>,
        request: &Req,
    ) -> Result<Resp> {
        let payload = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidArgument(format!("request is not serialisable: {e}")))?;
        let reply = self.call(routing, method, payload).await?;
        serde_json::from_slice(&reply)
            .map_err(|e| Error::Malformed(format!("response is not the expected JSON: {e}")))
    }

    /// Sends `method` to every instance and gathers replies until `timeout`, returning early
    /// once every member known to run the app has answered.
    pub async fn broadcast(
        &self,
        method: impl AsRef<str>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Vec<BroadcastReply>> {
        let shared = self.shared()?;
        let method = MethodName::new(method.as_ref())?;
        let payload = payload.into();
        let expected = shared.members_running(&self.target);
        let inbox = shared.transport.new_inbox();
        let mut sub = shared.transport.subscribe(&inbox, None).await?;
        let meta = RequestMeta::new(
            method,
            shared.node.clone(),
            self.source_app.clone(),
            None,
            timeout,
        );
        let mut headers = meta.to_headers();
        cluster_core::trace::inject(&Span::current(), &mut headers);
        check_size(&shared, &headers, &payload)?;
        shared
            .transport
            .publish(
                &shared.names.rpc_all(&self.target),
                Some(&inbox),
                headers,
                payload,
            )
            .await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut replies = Vec::new();
        while replies.len() < expected || expected == 0 {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(msg)) => {
                    let node = msg
                        .headers
                        .get(cluster_core::wire::headers::REPLY_NODE)
                        .and_then(|n| NodeId::new(n).ok());
                    let result = parse_reply(&msg.headers).map(|_| msg.payload);
                    replies.push(BroadcastReply { node, result });
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(replies)
    }
}

fn check_size(shared: &Shared, headers: &Headers, payload: &Bytes) -> Result<()> {
    let size = headers.encoded_len() + payload.len();
    let max = shared.transport.max_payload();
    if size > max {
        return Err(Error::PayloadTooLarge { size, max });
    }
    Ok(())
}
