//! One remote MCP server: the Streamable HTTP connection, the one path every request to it
//! takes ([`Connection::request`]), and the handler that passes its requests and
//! notifications on to the stdio client.

pub mod http;
mod ordered;

use std::{collections::HashMap, sync::Arc, time::Duration};

use ::http::{HeaderName, HeaderValue};

use rmcp::{
    Peer, RoleClient, RoleServer, ServiceExt,
    model::{
        ClientConfig, ClientNotification, ClientRequest, ClientResult, ErrorData, GetMeta,
        RequestMetaObject, ServerNotification, ServerPeerInfo, ServerRequest, ServerResult,
    },
    service::{ClientCacheConfig, NotificationContext, RequestContext, RunningService, Service},
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

/// Receives what a backend sends on its own initiative and passes it to the stdio client.
pub struct BackendHandler {
    name: Arc<str>,
    info: ClientConfig,
    downstream: Peer<RoleServer>,
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
            downstream,
            progress,
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
        let request = match &self.naming {
            Some(naming) => attributed(naming, request).map_err(ErrorData::from)?,
            None => request,
        };
        forward(
            &self.downstream,
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
        match self.downstream.send_notification(notification).await {
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
    /// The handshake failed: the connection, the HTTP exchange or the answer.
    #[error("cannot connect to backend '{backend}' at {url}: {reason}")]
    Handshake {
        /// The backend's name.
        backend: String,
        /// Its URL.
        url: String,
        /// What went wrong, in the HTTP layer's words.
        reason: String,
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
    let transport = ordered::Ordered::new(
        StreamableHttpClientTransport::with_client(
            http::AuthorizedHttp::new(http, access.clone()),
            config,
        ),
        handler.progress.to_client.clone(),
        handler.downstream.clone(),
    );
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
    let handshake = handler.serve(transport);
    let served = match backend.request_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake).await.map_err(|_| {
            ConnectError::HandshakeTimeout {
                backend: name.clone(),
                url: url.clone(),
                limit,
            }
        })?,
        None => handshake.await,
    };
    let link = served.map_err(|e| match find_auth_error(&e) {
        Some(auth) => ConnectError::Login {
            backend: name.clone(),
            url: url.clone(),
            source: auth.clone(),
        },
        None => ConnectError::Handshake {
            backend: name.clone(),
            url: url.clone(),
            reason: describe(&e),
        },
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
