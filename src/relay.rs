//! The drop-in relay: one stdio client, one backend, every MCP message passed through —
//! except that lists come whole: the relay reads every page of a list from the backend and
//! answers with all of it, since desktop clients read only the first page (see [`crate::lists`]).
//!
//! `initialize` is answered with the backend's own identity, capabilities and instructions
//! when the backend is connected within `gateway.startup_timeout` (5 s) — at once with cached
//! tokens. A first login takes a person longer (10-40 s with MFA), longer than Claude Code
//! waits for `initialize` (30 s): then the relay answers with a provisional identity of its own
//! and every list and tool, keeps connecting, and lets requests wait for the connection (the
//! first list of each kind up to `gateway.first_list_timeout`, others up to the backend's
//! `request_timeout`); once connected it announces `list_changed`.

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rmcp::{
    Peer, RoleServer,
    model::{
        ClientConfig, ClientNotification, ClientRequest, ErrorData, GetMeta, Implementation,
        InitializeRequestParams, InitializeResult, ProgressNotification, ProtocolVersion,
        ServerCapabilities, ServerResult,
    },
    service::{NotificationContext, RequestContext, Service},
};
use serde_json::json;
use tokio::sync::{OnceCell, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Access,
    backend::{self, BackendHandler, Connection, Origin, ProgressMaps},
    config,
    lists::{self, Kind},
    protocol,
    request_error::RequestError,
    shutdown::Closer,
};

/// Where the backend connection stands.
#[derive(Clone)]
enum State {
    /// Connecting, logging in included.
    Connecting,
    Ready(Connection),
    /// The last attempt failed; the next request tries again.
    Failed(String),
}

/// What the connecting task shares with the relay.
struct Link {
    state: watch::Sender<State>,
    /// `initialize` was answered before the backend was connected, so the client has to hear
    /// when it is. Held while the connecting task publishes its outcome, so the two cannot
    /// miss each other.
    provisional: Mutex<bool>,
    /// A `logging/setLevel` that came before the connection, sent once it is there.
    log_level: Mutex<Option<ClientRequest>>,
    /// Owns the connecting task, which holds the backend session until closing.
    tasks: Closer,
}

/// Serves one backend unchanged: its serverInfo, capabilities and instructions, its lists,
/// its results and errors.
pub struct Relay {
    backend: config::Backend,
    http: reqwest::Client,
    access: Option<Access>,
    timing: config::Gateway,
    progress: ProgressMaps,
    link: Arc<Link>,
    /// The stdio client and its introduction, once it has initialized.
    client: OnceCell<(Peer<RoleServer>, ClientConfig)>,
    /// Per kind: its first list has been answered.
    first_answered: [AtomicBool; 4],
}

impl Relay {
    /// A relay to `backend`, authorized through `access` when it has an OIDC profile; `timing`
    /// says how long `initialize` and the first lists wait for the connection.
    pub fn new(
        backend: config::Backend,
        http: reqwest::Client,
        access: Option<Access>,
        timing: config::Gateway,
    ) -> Self {
        Self {
            backend,
            http,
            access,
            timing,
            progress: ProgressMaps::default(),
            link: Arc::new(Link {
                state: watch::Sender::new(State::Connecting),
                provisional: Mutex::new(false),
                log_level: Mutex::new(None),
                tasks: Closer::new(),
            }),
            client: OnceCell::new(),
            first_answered: Default::default(),
        }
    }

    /// Owns the relay's background work; closing it ends the backend session (an HTTP
    /// `DELETE`) if one was opened. Other tasks of the same stdio session may join it.
    pub fn closer(&self) -> Closer {
        self.link.tasks.clone()
    }

    /// Connects (logging in if needed) in a task of its own, which publishes the outcome and
    /// then holds the backend session until closing, when it ends the session.
    fn connect_in_background(&self) {
        let Some((downstream, info)) = self.client.get() else {
            return;
        };
        let handler = BackendHandler::new(
            &self.backend.name,
            info.clone(),
            downstream.clone(),
            self.progress.clone(),
        );
        let (backend, http, access) =
            (self.backend.clone(), self.http.clone(), self.access.clone());
        let (link, downstream) = (Arc::clone(&self.link), downstream.clone());
        self.link.tasks.spawn(async move {
            let closing = link.tasks.token();
            let attempt = tokio::select! {
                attempt = backend::connect(&backend, http, access, handler) => attempt,
                () = closing.cancelled() => return,
            };
            let (session, announce) = {
                // Held while publishing: `initialize` decides under the same lock.
                let provisional = link.provisional.lock();
                let announce = provisional.as_ref().is_ok_and(|p| **p);
                match attempt {
                    Ok((session, connection)) => {
                        link.state.send_replace(State::Ready(connection));
                        (Some(session), announce)
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        link.state.send_replace(State::Failed(e.to_string()));
                        (None, false)
                    }
                }
            };
            let level = link.log_level.lock().ok().and_then(|mut l| l.take());
            let state = link.state.borrow().clone();
            if let (Some(level), State::Ready(connection)) = (level, state)
                && let Err(e) = connection
                    .send(level, Default::default(), closing, Origin::Proxy)
                    .await
            {
                tracing::debug!("Backend '{}' refused the log level: {e}", backend.name);
            }
            if announce {
                tracing::info!(
                    "Connected to backend '{}'; announcing its lists",
                    backend.name
                );
                let _ = downstream.notify_tool_list_changed().await;
                let _ = downstream.notify_prompt_list_changed().await;
                let _ = downstream.notify_resource_list_changed().await;
            }
            let Some(session) = session else {
                return;
            };
            // The session lives as long as this task: closing ends it with a DELETE.
            closing.cancelled().await;
            if let Err(e) = session.cancel().await {
                tracing::debug!("Closing backend '{}': {e}", backend.name);
            }
        });
    }

    /// The connection, waiting up to `limit` while it is being made; a failed one is tried
    /// again first (a person may be back to log in).
    async fn connection(&self, limit: Option<Duration>) -> Result<Connection, RequestError> {
        let retry = self.link.state.send_if_modified(|state| {
            let failed = matches!(state, State::Failed(_));
            if failed {
                *state = State::Connecting;
            }
            failed
        });
        if retry {
            self.connect_in_background();
        }
        let mut state = self.link.state.subscribe();
        let settled = state.wait_for(|s| !matches!(s, State::Connecting));
        let _ = match limit {
            Some(limit) => tokio::time::timeout(limit, settled).await.ok(),
            None => Some(settled.await),
        };
        let outcome = state.borrow().clone();
        match outcome {
            State::Ready(connection) => Ok(connection),
            State::Failed(reason) => Err(RequestError::NotConnected(reason)),
            State::Connecting => Err(RequestError::Unavailable {
                backend: self.backend.name.clone(),
                reason: match &self.backend.profile {
                    Some(p) => format!("still {}", p.waiting_for()),
                    None => "still connecting".into(),
                },
            }),
        }
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let negotiated = protocol::negotiate(&params.protocol_version);
        let introduction = protocol::introduction(&params);
        if self
            .client
            .set((context.peer.clone(), introduction))
            .is_err()
        {
            return Err(RequestError::AlreadyInitialized);
        }
        self.connect_in_background();
        let mut state = self.link.state.subscribe();
        let settled = state.wait_for(|s| !matches!(s, State::Connecting));
        let _ = tokio::time::timeout(self.timing.startup_timeout, settled).await;
        let outcome = {
            let mut provisional = self
                .link
                .provisional
                .lock()
                .map_err(|_| RequestError::internal("relay state poisoned"))?;
            let outcome = self.link.state.borrow().clone();
            *provisional = matches!(outcome, State::Connecting);
            outcome
        };
        match outcome {
            State::Ready(connection) => self.backends_own(&connection, negotiated),
            State::Failed(reason) => Err(RequestError::NotConnected(reason)),
            State::Connecting => {
                tracing::info!(
                    "Answering initialize after {} s, before backend '{}' is connected (a login \
                     in progress?); requests wait for it, the first lists up to {} s",
                    self.timing.startup_timeout.as_secs(),
                    self.backend.name,
                    self.timing.first_list_timeout.as_secs()
                );
                Ok(ServerResult::InitializeResult(provisional(negotiated)))
            }
        }
    }

    /// The backend's own `initialize` answer, at the negotiated version.
    fn backends_own(
        &self,
        connection: &Connection,
        negotiated: ProtocolVersion,
    ) -> Result<ServerResult, RequestError> {
        let Some(server) = connection.info() else {
            return Err(RequestError::Internal(format!(
                "backend '{}' sent no initialize result",
                self.backend.name
            )));
        };
        tracing::info!(
            "Connected to backend '{}' ({})",
            self.backend.name,
            server
                .server_info
                .as_ref()
                .map_or("unnamed server", |s| s.name.as_str())
        );
        let mut result =
            InitializeResult::new(server.capabilities.clone()).with_protocol_version(negotiated);
        if let Some(server_info) = &server.server_info {
            result = result.with_server_info(server_info.clone());
        }
        result.instructions = server.instructions.clone();
        result.meta = server.meta.clone();
        Ok(ServerResult::InitializeResult(result))
    }

    /// Answers a list request with the backend's whole list. A cursor can only be a stale or
    /// foreign one (the relay hands out none): it gets the end of the list, an empty page.
    async fn list(
        &self,
        kind: Kind,
        cursor: Option<String>,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, RequestError> {
        if cursor.is_some() {
            tracing::debug!(
                "Answered {} with a cursor with an empty page",
                kind.method()
            );
            return Ok(kind.empty());
        }
        let first = !self.first_answered[kind.index()].swap(true, Ordering::SeqCst);
        let limit = if first {
            Some(self.timing.first_list_timeout)
        } else {
            self.backend.request_timeout
        };
        let connection = self.connection(limit).await?;
        lists::read_answer(&connection, kind, cancelled, lists::LIMITS).await
    }
}

/// What `initialize` says before the backend is connected: every list (changes announced) and
/// feature, under the proxy's own name.
fn provisional(negotiated: ProtocolVersion) -> InitializeResult {
    let capabilities: ServerCapabilities = serde_json::from_value(json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true, "subscribe": true},
        "logging": {},
        "completions": {},
    }))
    .unwrap_or_default();
    InitializeResult::new(capabilities)
        .with_protocol_version(negotiated)
        .with_server_info(Implementation::new(
            "authful-mcp-proxy",
            env!("CARGO_PKG_VERSION"),
        ))
}

impl Relay {
    async fn answer(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        if let ClientRequest::InitializeRequest(init) = request {
            return self.initialize(init.params, context).await;
        }
        if self.client.get().is_none() {
            return Err(RequestError::NotInitialized);
        }
        if let Some((kind, cursor)) = lists::asked_for(&request) {
            return self.list(kind, cursor, &context.ct).await;
        }
        if !matches!(*self.link.state.borrow(), State::Ready(_)) {
            // While a person logs in, the session must stay alive: answer what needs no backend.
            match &request {
                ClientRequest::PingRequest(_) => return Ok(ServerResult::empty(())),
                ClientRequest::SetLevelRequest(_) => {
                    if let Ok(mut level) = self.link.log_level.lock() {
                        *level = Some(request);
                    }
                    return Ok(ServerResult::empty(()));
                }
                _ => {}
            }
        }
        let connection = self.connection(self.backend.request_timeout).await?;
        connection.request(request, context.meta, &context.ct).await
    }
}

impl Service<RoleServer> for Relay {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        Ok(self.answer(request, context).await?)
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let State::Ready(connection) = self.link.state.borrow().clone() else {
            return Ok(());
        };
        let notification = match notification {
            // Cancellation reaches the backend through the forwarded request's own handler;
            // the backend link sent its own `initialized`.
            ClientNotification::CancelledNotification(_)
            | ClientNotification::InitializedNotification(_) => return Ok(()),
            ClientNotification::ProgressNotification(progress) => {
                let Some(params) = self.progress.to_backend.translate(progress.params) else {
                    return Ok(());
                };
                ClientNotification::ProgressNotification(ProgressNotification::new(params))
            }
            mut other => {
                *other.get_meta_mut() = context.meta;
                other
            }
        };
        connection.notify(notification).await;
        Ok(())
    }

    fn get_info(&self) -> InitializeResult {
        // Never used for the handshake: `initialize` is answered with the backend's own result.
        InitializeResult::new(Default::default())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(protocol::CLIENT_PROTOCOL_VERSIONS)
    }
}
