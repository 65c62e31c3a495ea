//! One remote MCP server: the Streamable HTTP connection, the one path every request to it
//! takes ([`Connection::request`]), and the handler that passes its requests and
//! notifications on to the stdio client.
//!
//! [`connect`] is the one way to a backend, for the proxy's sessions and for `status`'s check
//! alike: the same rmcp client over the same [`http::AuthorizedHttp`] layer. A check has no
//! stdio client behind it ([`BackendHandler::without_client`]) and reads less of an answer
//! ([`connect_bounded`]).

pub mod http;
mod ordered;

use std::{collections::HashMap, sync::Arc, time::Duration};

use ::http::{HeaderName, HeaderValue};

use rmcp::{
    Peer, RoleClient, RoleServer, ServiceExt,
    model::{
        ClientConfig, ClientNotification, ClientRequest, ClientResult, ErrorCode, ErrorData,
        GetMeta, RequestMetaObject, ServerNotification, ServerPeerInfo, ServerRequest,
        ServerResult,
    },
    service::{
        ClientCacheConfig, ClientInitializeError, NotificationContext, RequestContext,
        RunningService, Service,
    },
    transport::{
        StreamableHttpClientTransport, common::client_side_sse::ExponentialBackoff,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::{
    auth::{Access, AuthError},
    config,
    forward::{Hop, ProgressMap, client_error, describe, find_auth_error, forward},
    naming::Naming,
    request_error::RequestError,
    shape,
};

/// Progress tokens for both directions of one backend link.
#[derive(Clone, Default)]
pub struct ProgressMaps {
    /// Requests from the client to the backend: backend-side token to client token.
    pub to_client: ProgressMap,
    /// Requests from the backend to the client: client-side token to backend token.
    pub to_backend: ProgressMap,
}

/// Which of a backend's lists it said changed (`notifications/*/list_changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListChanged {
    /// Its tools.
    Tools,
    /// Its prompts.
    Prompts,
    /// Its resources and resource templates (one notification for both).
    Resources,
}

/// Where what a backend sends on its own initiative goes.
#[derive(Clone)]
enum Downstream {
    /// The stdio client: the proxy's sessions.
    Client(Peer<RoleServer>),
    /// Nobody: a session no client takes part in, such as `status`'s check. A ping is
    /// answered, any other request declined, notifications dropped.
    Nobody,
}

/// Receives what a backend sends on its own initiative and passes it to the stdio client — or,
/// in a session no client takes part in, answers what it can itself
/// ([`BackendHandler::without_client`]).
pub struct BackendHandler {
    name: Arc<str>,
    info: ClientConfig,
    downstream: Downstream,
    progress: ProgressMaps,
    naming: Option<Naming>,
    list_changes: Option<mpsc::UnboundedSender<ListChanged>>,
}

impl BackendHandler {
    /// A handler for backend `name` that introduces itself with `info` (the stdio client's own
    /// capabilities, so the backend only asks for what the client can do).
    pub fn new(
        name: &str,
        info: ClientConfig,
        downstream: Peer<RoleServer>,
        progress: ProgressMaps,
    ) -> Self {
        Self {
            name: name.into(),
            info,
            downstream: Downstream::Client(downstream),
            progress,
            naming: None,
            list_changes: None,
        }
    }

    /// A handler for backend `name` in a session no client takes part in (`status` checking
    /// that the backend answers), introducing itself with `info`. It answers the backend's
    /// pings, declines its other requests (sampling, elicitation, roots: no one is there to
    /// answer them) and drops its notifications.
    pub fn without_client(name: &str, info: ClientConfig) -> Self {
        Self {
            name: name.into(),
            info,
            downstream: Downstream::Nobody,
            progress: ProgressMaps::default(),
            naming: None,
            list_changes: None,
        }
    }

    /// Rewrites resource URIs and log message loggers of this backend's notifications, as the
    /// gateway exposes them.
    pub fn with_naming(mut self, naming: Naming) -> Self {
        self.naming = Some(naming);
        self
    }

    /// Sends the backend's `list_changed` notifications to `changes` instead of the client:
    /// the gateway reads the list again first, then tells the client.
    pub fn with_list_changes(mut self, changes: mpsc::UnboundedSender<ListChanged>) -> Self {
        self.list_changes = Some(changes);
        self
    }

    /// Whether the notification announced a changed list that the gateway reads itself.
    fn took_list_change(&self, notification: &ServerNotification) -> bool {
        let Some(changes) = &self.list_changes else {
            return false;
        };
        let changed = match notification {
            ServerNotification::ToolListChangedNotification(_) => ListChanged::Tools,
            ServerNotification::PromptListChangedNotification(_) => ListChanged::Prompts,
            ServerNotification::ResourceListChangedNotification(_) => ListChanged::Resources,
            _ => return false,
        };
        let _ = changes.send(changed);
        true
    }
}

impl Service<RoleClient> for BackendHandler {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let Downstream::Client(downstream) = &self.downstream else {
            return unattended(&request);
        };
        let request = match &self.naming {
            Some(naming) => attributed(naming, request).map_err(ErrorData::from)?,
            None => request,
        };
        forward(
            downstream,
            request,
            context.meta,
            &context.ct,
            &self.progress.to_backend,
            // Sampling and elicitation wait for a person: no limit but the backend's own.
            None,
            Hop::ToClient(&self.name),
        )
        .await
        .map_err(|e| client_error("client", e).into())
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let Downstream::Client(downstream) = &self.downstream else {
            tracing::debug!(
                "Dropped a notification from backend '{}': no client takes part",
                self.name
            );
            return Ok(());
        };
        if self.took_list_change(&notification) {
            return Ok(());
        }
        let notification = match notification {
            // rmcp has already cancelled the matching handler, which tells the client; progress
            // went to the client in order, straight from the transport (see `ordered`).
            ServerNotification::CancelledNotification(_)
            | ServerNotification::ProgressNotification(_) => return Ok(()),
            mut other => {
                if let Some(naming) = &self.naming {
                    rename(naming, &mut other);
                }
                *other.get_meta_mut() = context.meta;
                other
            }
        };
        // rmcp's own line of each notification holds its data: off unless `--log-content`.
        let method = tracing::enabled!(Level::DEBUG).then(|| shape::method(&notification));
        match downstream.send_notification(notification).await {
            Ok(()) => {
                if let Some(method) = method {
                    tracing::debug!("{method} from backend '{}' to the client", self.name);
                }
            }
            Err(e) => tracing::debug!("Dropped a notification from backend '{}': {e}", self.name),
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// The answer to a backend's request in a session no client takes part in: a ping is answered
/// (the backend asks whether the session is alive, and it is); anything else is declined as a
/// method the missing client does not offer.
fn unattended(request: &ServerRequest) -> Result<ClientResult, ErrorData> {
    match request {
        ServerRequest::PingRequest(_) => Ok(ClientResult::empty(())),
        other => Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "{}: no client takes part in this session (authful-mcp-proxy only checks that \
                 the server answers)",
                shape::method(other)
            ),
            None,
        )),
    }
}

/// The request with the backend's name where the person sees it (see [`Naming::attribute`]).
fn attributed(naming: &Naming, request: ServerRequest) -> Result<ServerRequest, RequestError> {
    let mut value = serde_json::to_value(&request).map_err(RequestError::internal)?;
    let method = value["method"].as_str().unwrap_or_default().to_owned();
    if let Some(params) = value.get_mut("params") {
        naming.attribute(&method, params);
    }
    serde_json::from_value(value).map_err(RequestError::internal)
}

/// Shows the backend's log messages under its name and its resources under its prefix.
#[allow(deprecated)] // Logging is deprecated by SEP-2577, yet clients still use it.
fn rename(naming: &Naming, notification: &mut ServerNotification) {
    match notification {
        ServerNotification::LoggingMessageNotification(log) => {
            log.params.logger = Some(naming.logger(log.params.logger.as_deref()));
        }
        ServerNotification::ResourceUpdatedNotification(updated) => {
            updated.params.uri = naming.uri(&updated.params.uri);
        }
        _ => {}
    }
}

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
    pub async fn request(
        &self,
        request: ClientRequest,
        meta: RequestMetaObject,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, RequestError> {
        self.send(request, meta, cancelled, Origin::Client).await
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
        match origin {
            Origin::Client => {
                meta.insert(http::CLIENT_REQUEST.to_owned(), true.into());
            }
            // Whatever the caller's `_meta` held, the proxy's own requests carry no mark.
            Origin::Proxy => {
                meta.remove(http::CLIENT_REQUEST);
            }
        }
        forward(
            &self.peer,
            request,
            meta,
            cancelled,
            &self.progress,
            self.timeout,
            Hop::ToBackend(&self.name),
        )
        .await
        .map_err(|e| client_error(&self.name, e))
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
        error: http::AnswerError,
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
) -> Result<(BackendLink, Connection), ConnectError> {
    connect_reading(backend, http, access, handler, None).await
}

/// [`connect`], reading no more than `max_answer_bytes` of any one answer: a JSON body, an SSE
/// event, the events of one request's stream together (see
/// [`AuthorizedHttp::with_answer_limit`](http::AuthorizedHttp::with_answer_limit)). An answer
/// past it fails the handshake with [`ConnectError::Answer`].
pub async fn connect_bounded(
    backend: &config::Backend,
    http: reqwest::Client,
    access: Option<Access>,
    handler: BackendHandler,
    max_answer_bytes: usize,
) -> Result<(BackendLink, Connection), ConnectError> {
    connect_reading(backend, http, access, handler, Some(max_answer_bytes)).await
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

/// [`connect`] and [`connect_bounded`].
async fn connect_reading(
    backend: &config::Backend,
    http: reqwest::Client,
    access: Option<Access>,
    handler: BackendHandler,
    max_answer_bytes: Option<usize>,
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
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(backend.url.as_str()).custom_headers(headers);
    config.retry_config = Arc::new(stream_resumption());
    let mut authorized = http::AuthorizedHttp::new(http, access.clone());
    if let Some(bytes) = max_answer_bytes {
        authorized = authorized.with_answer_limit(bytes);
    }
    let broken = authorized.broken_answers();
    let transport = StreamableHttpClientTransport::with_client(authorized, config);
    let progress = handler.progress.to_client.clone();
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
    let served = match handler.downstream.clone() {
        Downstream::Client(client) => {
            let ordered = ordered::Ordered::new(transport, progress.clone(), client);
            within(limit, handler.serve(ordered)).await
        }
        // No client: no progress to pass on in order.
        Downstream::Nobody => within(limit, handler.serve(transport)).await,
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
        ConnectError::Handshake {
            backend: name.clone(),
            url: url.clone(),
            reason: describe(&e),
            cause: Box::new(e),
        }
    })?;
    // A cached list would hide changes and errors from the client.
    link.peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    let connection = Connection {
        name: backend.name.as_str().into(),
        peer: link.peer().clone(),
        progress,
        timeout: backend.request_timeout,
    };
    Ok((link, connection))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a client, a backend's ping is answered and what only a client could answer is
    /// declined, naming the method.
    #[test]
    fn a_session_without_client_answers_pings_and_declines_the_rest() {
        let ping = ServerRequest::PingRequest(Default::default());
        assert!(matches!(
            unattended(&ping),
            Ok(ClientResult::EmptyResult(_))
        ));
        let roots = ServerRequest::ListRootsRequest(Default::default());
        let declined = unattended(&roots).expect_err("no client to list its roots");
        assert_eq!(declined.code, ErrorCode::METHOD_NOT_FOUND);
        assert!(
            declined.message.starts_with("roots/list: "),
            "{}",
            declined.message
        );
    }
}
