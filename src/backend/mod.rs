//! One remote MCP server: the connection — Streamable HTTP, or HTTP+SSE for servers from
//! before it (`http_sse.rs`) — the one path every request to it takes
//! ([`Connection::request`]), the HTTP layer under both that authorizes every request
//! ([`authorized_http`]), and the handler that passes its requests and notifications on to
//! the stdio client ([`BackendHandler`], in `handler.rs`).
//!
//! [`connect`] is the one way to a backend, for the proxy's sessions and for `status`'s check
//! alike: the same rmcp client over the same [`authorized_http::AuthorizedHttp`] layer. A check has no
//! stdio client behind it ([`BackendHandler::without_client`]) and reads less of an answer
//! ([`connect_bounded`]).

pub mod authorized_http;
mod handler;
mod http_sse;
mod input_rounds;
mod lifecycle;
mod ordered;

pub use handler::{BackendHandler, ListChanged, ProgressMaps};

use std::{collections::HashMap, sync::Arc, time::Duration};

use ::http::{HeaderName, HeaderValue};

use rmcp::{
    Peer, RoleClient, ServiceError,
    model::{
        ClientNotification, ClientRequest, ErrorCode, ProtocolVersion, RequestMetaObject,
        ServerPeerInfo, ServerResult,
    },
    service::{
        ClientCacheConfig, ClientInitializeError, ClientLifecycleMode, ClientServiceExt,
        RunningService,
    },
    transport::{
        StreamableHttpClientTransport, common::client_side_sse::ExponentialBackoff,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::{
    auth::{Access, AuthError},
    config::{self, Protocol, Transport},
    downstream::{self, Era},
    forward::{Hop, ProgressMap, client_error, describe, find_auth_error, forward},
    legacy_tasks,
    request_error::RequestError,
    shape,
};

/// How often a broken SSE stream is resumed before its requests fail: 0.5, 1 and 2 s apart,
/// enough for a network blip or a load balancer switching over. rmcp's default retries forever
/// with ever longer pauses, which leaves a request to a dead backend waiting without end.
fn stream_resumption() -> ExponentialBackoff {
    let mut policy = ExponentialBackoff::default();
    policy.max_times = Some(3);
    policy.base_duration = Duration::from_millis(500);
    policy.max_delay = Some(Duration::from_secs(4));
    policy
}

/// `-32020`: a 2026-07-28 server found a request's headers and body disagree (SEP-2243).
const HEADER_MISMATCH: ErrorCode = ErrorCode(-32020);

/// A connected backend's session; dropping or closing it ends the session.
pub type BackendLink = RunningService<RoleClient, BackendHandler>;

/// Who a request to a backend is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client asked for it (or for what it is part of).
    Client,
    /// The proxy sends it on its own: lists read in the background, a log level restored.
    Proxy,
}

/// A connected backend as the rest of the proxy uses it. Every request to it goes through
/// [`Connection::request`], which applies the backend's `request_timeout` (restarted by each
/// progress notification), passes the caller's cancellation on, and maps progress tokens: calls,
/// lists, completions, the log level, all alike.
#[derive(Clone)]
pub struct Connection {
    name: Arc<str>,
    peer: Peer<RoleClient>,
    progress: ProgressMap,
    timeout: Option<Duration>,
    /// The backend speaks 2026-07-28: it may answer `input_required` (see [`input_rounds`]).
    modern: bool,
    /// Who puts the backend's requests to the stdio client (that input, too).
    handler: Arc<BackendHandler>,
}

impl Connection {
    /// The backend's name in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the backend said about itself in the handshake.
    pub fn info(&self) -> Option<Arc<ServerPeerInfo>> {
        self.peer.peer_info()
    }

    /// Sends `request` for the client, with its `_meta`, and returns the answer, or the error
    /// the client should see (naming the backend). `cancelled` stands for the caller giving
    /// up. A backend that wants more scopes for it may make the proxy sign in for them.
    ///
    /// A 2026-07-28 client cannot be sent the requests a backend of an older revision asks it
    /// while it works on a call: its calls to such a backend run apart, and what the backend
    /// asks comes back as `input_required` (see [`downstream::questions`]).
    pub async fn request(
        &self,
        request: ClientRequest,
        meta: RequestMetaObject,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, RequestError> {
        let modern_client = self
            .handler
            .client()
            .filter(|client| client.era() == Era::Modern);
        let Some(client) = modern_client.filter(|_| !self.modern) else {
            return self.send(request, meta, cancelled, Origin::Client).await;
        };
        let (request, retry) = input_rounds::take_retry(request);
        let Some((state, responses)) = retry else {
            return self.send(request, meta, cancelled, Origin::Client).await;
        };
        let connection = self.clone();
        let work = move |stop: CancellationToken| -> downstream::questions::Work {
            Box::pin(async move { connection.send(request, meta, &stop, Origin::Client).await })
        };
        client
            .questions
            .call(&self.name, state.as_deref(), responses, work, cancelled)
            .await
    }

    /// Sends `request` for `origin`: [`Connection::request`] for the client's requests, or the
    /// proxy's own, which never make it sign in.
    pub async fn send(
        &self,
        request: ClientRequest,
        mut meta: RequestMetaObject,
        cancelled: &CancellationToken,
        origin: Origin,
    ) -> Result<ServerResult, RequestError> {
        let request = legacy_tasks::for_backend(request, &mut meta, self.modern);
        match origin {
            Origin::Client => {
                meta.insert(authorized_http::CLIENT_REQUEST.to_owned(), true.into());
            }
            // Whatever the caller's `_meta` held, the proxy's own requests carry no mark.
            Origin::Proxy => {
                meta.remove(authorized_http::CLIENT_REQUEST);
            }
        }
        let hop = Hop::ToBackend(&self.name);
        if !self.modern {
            return match forward(
                &self.peer,
                request,
                meta,
                cancelled,
                &self.progress,
                self.timeout,
                hop,
            )
            .await
            .map_err(|e| client_error(&self.name, e))?
            {
                ServerResult::InputRequiredResult(_) => Err(RequestError::Internal(format!(
                    "backend '{}' asked for input the way MCP 2026-07-28 does, in a session of \
                     an older revision",
                    self.name
                ))),
                answer => Ok(answer),
            };
        }
        // Kept for the rounds of input the backend may ask for.
        let mut request = request;
        let mut tools_read = false;
        for _ in 0..=input_rounds::MAX_ROUNDS {
            let sent = forward(
                &self.peer,
                request.clone(),
                meta.clone(),
                cancelled,
                &self.progress,
                self.timeout,
                hop,
            )
            .await;
            // A tool's arguments that go in headers too (SEP-2243, `x-mcp-header`) are known
            // to rmcp only from a tool list it has seen in this session — which a start that
            // served the list from memory has not: it reads the list, and calls again, once.
            if let Err(ServiceError::McpError(refused)) = &sent
                && refused.code == HEADER_MISMATCH
                && !tools_read
                && matches!(request, ClientRequest::CallToolRequest(_))
            {
                tools_read = true;
                let read = crate::lists::read_answer(
                    self,
                    crate::lists::Kind::Tools,
                    cancelled,
                    crate::lists::LIMITS,
                );
                // `send` within `send`: boxed, for the recursion.
                if Box::pin(read).await.is_ok() {
                    continue;
                }
            }
            let answer = sent.map_err(|e| client_error(&self.name, e))?;
            let ServerResult::InputRequiredResult(asked) = answer else {
                return Ok(answer);
            };
            if self
                .handler
                .client()
                .is_some_and(|client| client.era() == Era::Modern)
            {
                // The client speaks the same revision: it answers, and calls again itself.
                return Ok(ServerResult::InputRequiredResult(asked));
            }
            request = input_rounds::answered(&self.name, &request, asked, &self.handler, cancelled)
                .await?;
        }
        Err(RequestError::Internal(format!(
            "backend '{}' asked for input more than {} times for one request",
            self.name,
            input_rounds::MAX_ROUNDS
        )))
    }

    /// Passes a notification on; a backend that is gone simply does not get it.
    pub async fn notify(&self, notification: ClientNotification) {
        let method = tracing::enabled!(Level::DEBUG).then(|| shape::method(&notification));
        match self.peer.send_notification(notification).await {
            Ok(()) => {
                if let Some(method) = method {
                    tracing::debug!("{method} to backend '{}'", self.name);
                }
            }
            Err(e) => tracing::debug!("Dropped a notification for backend '{}': {e}", self.name),
        }
    }

    /// Whether the session with the backend has ended.
    pub fn is_closed(&self) -> bool {
        self.peer.is_transport_closed()
    }
}

/// Why a backend could not be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A configured header cannot be sent.
    #[error("backend '{backend}': header '{header}' is not a valid HTTP header")]
    InvalidHeader {
        /// The backend's name.
        backend: String,
        /// The header's name.
        header: String,
    },
    /// No token could be had for the backend's profile.
    #[error("cannot connect to backend '{backend}' at {url}: authentication failed: {source}")]
    Login {
        /// The backend's name.
        backend: String,
        /// Its URL.
        url: String,
        /// The login problem.
        source: AuthError,
    },
    /// The backend accepted the connection but did not answer the handshake in time.
    #[error(
        "cannot connect to backend '{backend}' at {url}: no answer to the MCP handshake within \
         {} s (request_timeout)",
        .limit.as_secs_f64()
    )]
    HandshakeTimeout {
        /// The backend's name.
        backend: String,
        /// Its URL.
        url: String,
        /// Its request timeout.
        limit: Duration,
    },
    /// The backend's answer to the handshake went past the most that is read of it, or broke
    /// off (rmcp itself reports only that the connection closed).
    #[error("cannot connect to backend '{backend}' at {url}: {error}")]
    Answer {
        /// The backend's name.
        backend: String,
        /// Its URL.
        url: String,
        /// What became of the answer.
        error: authorized_http::AnswerError,
    },
    /// The HTTP+SSE stream could not be opened, or named no usable endpoint.
    #[error("cannot connect to backend '{backend}' at {url}: {error}")]
    HttpSse {
        /// The backend's name.
        backend: String,
        /// Its URL.
        url: String,
        /// What went wrong.
        error: http_sse::OpenError,
    },
    /// The handshake failed: the connection, the HTTP exchange or the answer.
    #[error("cannot connect to backend '{backend}' at {url}: {reason}")]
    Handshake {
        /// The backend's name.
        backend: String,
        /// Its URL.
        url: String,
        /// What went wrong, in the HTTP layer's words.
        reason: String,
        /// rmcp's error, for a caller that tells the cases apart (`status`: a refusal, an
        /// unreachable host, a JSON-RPC error). Not a `source`: `reason` already says it.
        cause: Box<ClientInitializeError>,
    },
}

impl ConnectError {
    /// The person did not complete the sign-in (refused it, let it or its device code time
    /// out), or the provider would not grant the scopes the backend wants: retrying on its own
    /// would only pop up another browser tab or device code.
    pub fn login_failed(&self) -> bool {
        matches!(
            self,
            ConnectError::Login {
                source: AuthError::Denied { .. }
                    | AuthError::LoginTimeout { .. }
                    | AuthError::DeviceExpired { .. }
                    | AuthError::ScopeNotGranted { .. },
                ..
            }
        )
    }
}

/// Connects to `backend` (logging in first if its profile needs it) and runs the MCP
/// initialize handshake, pinned to the newest protocol version that has one. Returns the
/// session, to close it, and the connection, to use it.
pub async fn connect(
    backend: &config::Backend,
    http: reqwest::Client,
    access: Option<Access>,
    handler: BackendHandler,
    spoken: Option<&ProtocolVersion>,
) -> Result<(BackendLink, Connection), ConnectError> {
    connect_reading(backend, http, access, handler, None, spoken).await
}

/// [`connect`], reading no more than `max_answer_bytes` of any one answer: a JSON body, an SSE
/// event, the events of one request's stream together (see
/// [`AuthorizedHttp::with_answer_limit`](authorized_http::AuthorizedHttp::with_answer_limit)). An answer
/// past it fails the handshake with [`ConnectError::Answer`].
pub async fn connect_bounded(
    backend: &config::Backend,
    http: reqwest::Client,
    access: Option<Access>,
    handler: BackendHandler,
    max_answer_bytes: usize,
) -> Result<(BackendLink, Connection), ConnectError> {
    connect_reading(backend, http, access, handler, Some(max_answer_bytes), None).await
}

/// `handshake`, given up after `limit` when there is one (the limit is the error then).
async fn within<T>(
    limit: Option<Duration>,
    handshake: impl Future<Output = T>,
) -> Result<T, Duration> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, handshake)
            .await
            .map_err(|_| limit),
        None => Ok(handshake.await),
    }
}

/// The handshake over `transport` in `lifecycle`: the backend's progress reaches the client in
/// order, when there is one.
async fn serve<T>(
    transport: T,
    handler: BackendHandler,
    lifecycle: ClientLifecycleMode,
) -> Result<BackendLink, ClientInitializeError>
where
    T: rmcp::transport::Transport<RoleClient> + 'static,
{
    match handler.client() {
        Some(client) => {
            let progress = handler.progress_to_client();
            let ordered = ordered::Ordered::new(transport, progress, client.peer().clone());
            handler.serve_with_lifecycle(ordered, lifecycle).await
        }
        // No client: no progress to pass on in order.
        None => handler.serve_with_lifecycle(transport, lifecycle).await,
    }
}

/// A handshake's outcome: the session, rmcp's refusal, or the limit it went past.
type Handshake = Result<Result<BackendLink, ClientInitializeError>, Duration>;

/// The handshake over HTTP+SSE, the stream's opening included in `limit`.
async fn over_http_sse(
    backend: &config::Backend,
    authorized: &authorized_http::AuthorizedHttp,
    headers: HashMap<HeaderName, HeaderValue>,
    handler: &BackendHandler,
    limit: Option<Duration>,
) -> Result<Handshake, ConnectError> {
    let handshake = async {
        let opened = http_sse::HttpSse::open(authorized.clone(), &backend.url, headers).await?;
        // HTTP+SSE is MCP 2024-11-05's transport: `initialize` always.
        let lifecycle = ClientLifecycleMode::Initialize;
        Ok::<_, http_sse::OpenError>(serve(opened, handler.clone(), lifecycle).await)
    };
    match within(limit, handshake).await {
        Ok(Ok(served)) => Ok(Ok(served)),
        Ok(Err(error)) => {
            if let http_sse::OpenError::Http(e) = &error
                && let Some(auth) = find_auth_error(e)
            {
                return Err(ConnectError::Login {
                    backend: backend.name.clone(),
                    url: backend.url.to_string(),
                    source: auth.clone(),
                });
            }
            Err(ConnectError::HttpSse {
                backend: backend.name.clone(),
                url: backend.url.to_string(),
                error,
            })
        }
        Err(limit) => Ok(Err(limit)),
    }
}

/// [`connect`] and [`connect_bounded`]; `spoken` is the revision the backend spoke last time,
/// if that is known.
async fn connect_reading(
    backend: &config::Backend,
    http: reqwest::Client,
    access: Option<Access>,
    handler: BackendHandler,
    max_answer_bytes: Option<usize>,
    spoken: Option<&ProtocolVersion>,
) -> Result<(BackendLink, Connection), ConnectError> {
    let mut headers = HashMap::new();
    for (name, value) in &backend.headers {
        let parsed = HeaderName::try_from(name.as_str())
            .ok()
            .zip(HeaderValue::try_from(value.expose()).ok());
        let Some((name, value)) = parsed else {
            return Err(ConnectError::InvalidHeader {
                backend: backend.name.clone(),
                header: name.clone(),
            });
        };
        headers.insert(name, value);
    }
    let mut authorized = authorized_http::AuthorizedHttp::new(http, access.clone());
    if let Some(bytes) = max_answer_bytes {
        authorized = authorized.with_answer_limit(bytes);
    }
    let broken = authorized.broken_answers();
    let refused = authorized.refused_initialize();
    let progress = handler.progress_to_client();
    // Log in first, outside the time limit: a person at a browser takes as long as it takes
    // (the login has its own timeout). The handshake itself then gets the request timeout, so
    // a backend that accepts connections and never answers cannot stall the session start.
    let (name, url) = (backend.name.clone(), backend.url.to_string());
    if let Some(access) = &access
        && let Err(source) = access.token().await
    {
        return Err(ConnectError::Login {
            backend: name,
            url,
            source,
        });
    }
    let limit = backend.request_timeout;
    let auto = backend.transport == Transport::Auto;
    let named_sse = http_sse::named_like_sse(&backend.url);
    // HTTP+SSE first where the configuration says so, or the URL as fastmcp reads it; a
    // Streamable HTTP server that happens to live at such a URL is tried next.
    let mut over_sse = None;
    if backend.transport == Transport::Sse || (auto && named_sse) {
        match over_http_sse(backend, &authorized, headers.clone(), &handler, limit).await {
            Ok(served) => over_sse = Some(served),
            Err(ConnectError::HttpSse { error, .. }) if auto && !error.is_from_a_stream() => {
                tracing::debug!("Backend '{name}': {error}; trying Streamable HTTP");
            }
            Err(other) => return Err(other),
        }
    }
    let served = match over_sse {
        Some(served) => served,
        None => {
            let streamable = |lifecycle| {
                let mut config =
                    StreamableHttpClientTransportConfig::with_uri(backend.url.as_str())
                        .custom_headers(headers.clone());
                config.retry_config = Arc::new(stream_resumption());
                let transport =
                    StreamableHttpClientTransport::with_client(authorized.clone(), config);
                within(limit, serve(transport, handler.clone(), lifecycle))
            };
            let mut served = streamable(lifecycle::first(backend.protocol, spoken)).await;
            // A backend that speaks only 2026-07-28 refuses `initialize` for it, naming the
            // revisions it has: it gets `server/discover` on a new connection.
            if backend.protocol == Protocol::Auto
                && let Ok(Err(refusal)) = &served
                && lifecycle::refuses_initialize_for_2026(refusal)
            {
                tracing::debug!("Backend '{name}' speaks only MCP 2026-07-28; discovering it");
                served = streamable(lifecycle::modern()).await;
            }
            // The specification's backwards compatibility: a server that refuses the
            // `initialize` POST with 400, 404 or 405 (and no JSON-RPC error) may be an
            // HTTP+SSE server.
            if auto
                && !named_sse
                && matches!(served, Ok(Err(_)))
                && let Some(status) = refused.status()
            {
                tracing::debug!(
                    "Backend '{name}' refused Streamable HTTP (HTTP {status}); trying HTTP+SSE"
                );
                match over_http_sse(backend, &authorized, headers.clone(), &handler, limit).await {
                    Ok(over_sse) => served = over_sse,
                    // Not an HTTP+SSE server either: the first refusal says more.
                    Err(ConnectError::HttpSse { error, .. }) if !error.is_from_a_stream() => {
                        tracing::debug!("Backend '{name}': no HTTP+SSE either: {error}");
                    }
                    Err(other) => return Err(other),
                }
            }
            served
        }
    };
    let served = served.map_err(|limit| ConnectError::HandshakeTimeout {
        backend: name.clone(),
        url: url.clone(),
        limit,
    })?;
    let link = served.map_err(|e| {
        if let Some(auth) = find_auth_error(&e) {
            return ConnectError::Login {
                backend: name.clone(),
                url: url.clone(),
                source: auth.clone(),
            };
        }
        // An answer that failed is why rmcp gave up, though it says "connection closed".
        if let Some(error) = broken.first() {
            return ConnectError::Answer {
                backend: name.clone(),
                url: url.clone(),
                error,
            };
        }
        let reason = if lifecycle::refuses_initialize_for_2026(&e) {
            "it speaks only MCP 2026-07-28 and refused `initialize` (-32022); set its \
             `protocol` to `auto` or `2026-07-28`"
                .to_owned()
        } else {
            describe(&e)
        };
        ConnectError::Handshake {
            backend: name.clone(),
            url: url.clone(),
            reason,
            cause: Box::new(e),
        }
    })?;
    // A cached list would hide changes and errors from the client.
    link.peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    let modern = link
        .peer()
        .peer_info()
        .is_some_and(|info| lifecycle::is_modern(&info.protocol_version));
    if modern {
        handler.listen_for_list_changes(link.peer().clone());
    }
    let connection = Connection {
        name: backend.name.as_str().into(),
        peer: link.peer().clone(),
        progress,
        timeout: backend.request_timeout,
        modern,
        handler: Arc::new(handler),
    };
    Ok((link, connection))
}
