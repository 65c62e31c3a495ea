//! The transparent relay: one stdio client, one backend, every MCP message passed through —
//! except that lists come whole: the relay reads every page of a list from the backend and
//! answers with all of it, since desktop clients read only the first page (see [`crate::lists`]).

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
};

use rmcp::{
    RoleServer,
    model::{
        ClientNotification, ClientRequest, ErrorData, GetMeta, InitializeRequestParams,
        InitializeResult, ProgressNotification, ProtocolVersion, ServerResult,
    },
    service::{NotificationContext, RequestContext, Service},
};
use serde_json::Map;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::TokenManager,
    backend::{self, BackendHandler, BackendLink, Connection, ProgressMaps},
    config,
    lists::{self, Kind},
    protocol,
};

/// Serves one backend unchanged: its serverInfo, capabilities and instructions, its lists and
/// cursors, its results and errors.
pub struct Relay {
    backend: config::Backend,
    http: reqwest::Client,
    tokens: Option<Arc<TokenManager>>,
    progress: ProgressMaps,
    backend_connection: OnceCell<Connection>,
    link: Arc<Mutex<Option<BackendLink>>>,
}

/// Closes a relay's backend session after the stdio session has ended.
pub struct BackendCloser {
    name: String,
    link: Arc<Mutex<Option<BackendLink>>>,
}

impl BackendCloser {
    /// Ends the backend session (an HTTP DELETE), if one was opened.
    pub async fn close(self) {
        let link = self.link.lock().ok().and_then(|mut slot| slot.take());
        if let Some(link) = link
            && let Err(e) = link.cancel().await
        {
            tracing::debug!("Closing backend '{}': {e}", self.name);
        }
    }
}

impl Relay {
    /// A relay to `backend`, authorized by `tokens` when it has an OIDC profile.
    pub fn new(
        backend: config::Backend,
        http: reqwest::Client,
        tokens: Option<Arc<TokenManager>>,
    ) -> Self {
        Self {
            backend,
            http,
            tokens,
            progress: ProgressMaps::default(),
            backend_connection: OnceCell::new(),
            link: Arc::default(),
        }
    }

    /// A handle that closes the backend session once serving is over.
    pub fn closer(&self) -> BackendCloser {
        BackendCloser {
            name: self.backend.name.clone(),
            link: Arc::clone(&self.link),
        }
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let negotiated = protocol::negotiate(&params.protocol_version);
        let handler = BackendHandler::new(
            &self.backend.name,
            backend::introduction(&params),
            context.peer.clone(),
            self.progress.clone(),
        );
        let connection = self
            .backend_connection
            .get_or_try_init(|| async {
                let (link, connection) = backend::connect(
                    &self.backend,
                    self.http.clone(),
                    self.tokens.clone(),
                    handler,
                )
                .await?;
                if let Ok(mut slot) = self.link.lock() {
                    *slot = Some(link);
                }
                Ok::<_, backend::ConnectError>(connection)
            })
            .await
            .map_err(|e| {
                tracing::error!("{e}");
                ErrorData::internal_error(e.to_string(), None)
            })?;
        let Some(server) = connection.info() else {
            return Err(ErrorData::internal_error(
                format!("backend '{}' sent no initialize result", self.backend.name),
                None,
            ));
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
        connection: &Connection,
        kind: Kind,
        cursor: Option<String>,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, ErrorData> {
        if cursor.is_some() {
            tracing::debug!(
                "Answered {} with a cursor with an empty page",
                kind.method()
            );
            return kind.result(Vec::new(), Map::new());
        }
        let listing = lists::read_all(connection, kind, cancelled, lists::LIMITS).await?;
        kind.result(listing.items, listing.rest)
    }
}

/// The list a request asks for, and its cursor.
fn list_request(request: &ClientRequest) -> Option<(Kind, Option<String>)> {
    let (kind, params) = match request {
        ClientRequest::ListToolsRequest(r) => (Kind::Tools, &r.params),
        ClientRequest::ListPromptsRequest(r) => (Kind::Prompts, &r.params),
        ClientRequest::ListResourcesRequest(r) => (Kind::Resources, &r.params),
        ClientRequest::ListResourceTemplatesRequest(r) => (Kind::Templates, &r.params),
        _ => return None,
    };
    Some((kind, params.as_ref().and_then(|p| p.cursor.clone())))
}

impl Service<RoleServer> for Relay {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        if let ClientRequest::InitializeRequest(init) = request {
            return self.initialize(init.params, context).await;
        }
        let Some(connection) = self.backend_connection.get() else {
            return Err(ErrorData::invalid_request("initialize first", None));
        };
        if let Some((kind, cursor)) = list_request(&request) {
            return self.list(connection, kind, cursor, &context.ct).await;
        }
        connection.request(request, context.meta, &context.ct).await
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let Some(connection) = self.backend_connection.get() else {
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
