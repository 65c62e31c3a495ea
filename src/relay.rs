//! The transparent relay: one stdio client, one backend, every MCP message passed through.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
};

use rmcp::{
    Peer, RoleClient, RoleServer,
    model::{
        ClientNotification, ClientRequest, ErrorData, GetMeta, InitializeRequestParams,
        InitializeResult, ProgressNotification, ProtocolVersion, ServerResult,
    },
    service::{NotificationContext, RequestContext, Service},
};
use tokio::sync::OnceCell;

use crate::{
    auth::TokenManager,
    backend::{self, BackendHandler, BackendLink, ProgressMaps},
    config,
    forward::{client_error, forward},
};

/// Protocol versions offered to stdio clients: all that have an initialize handshake.
pub const CLIENT_PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// Serves one backend unchanged: its serverInfo, capabilities and instructions, its lists and
/// cursors, its results and errors.
pub struct Relay {
    backend: config::Backend,
    http: reqwest::Client,
    tokens: Option<Arc<TokenManager>>,
    progress: ProgressMaps,
    peer: OnceCell<Peer<RoleClient>>,
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
            peer: OnceCell::new(),
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
        let requested = params.protocol_version.clone();
        let handler = BackendHandler::new(
            &self.backend.name,
            backend::introduction(&params),
            context.peer.clone(),
            self.progress.clone(),
        );
        let peer = self
            .peer
            .get_or_try_init(|| async {
                let link = backend::connect(
                    &self.backend,
                    self.http.clone(),
                    self.tokens.clone(),
                    handler,
                )
                .await?;
                let peer = link.peer().clone();
                if let Ok(mut slot) = self.link.lock() {
                    *slot = Some(link);
                }
                Ok::<_, backend::ConnectError>(peer)
            })
            .await
            .map_err(|e| {
                tracing::error!("{e}");
                ErrorData::internal_error(e.to_string(), None)
            })?;
        let Some(server) = peer.peer_info() else {
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
            InitializeResult::new(server.capabilities.clone()).with_protocol_version(requested);
        if let Some(server_info) = &server.server_info {
            result = result.with_server_info(server_info.clone());
        }
        result.instructions = server.instructions.clone();
        result.meta = server.meta.clone();
        Ok(ServerResult::InitializeResult(result))
    }
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
        let Some(peer) = self.peer.get() else {
            return Err(ErrorData::invalid_request("initialize first", None));
        };
        forward(
            peer,
            request,
            context.meta,
            &context.ct,
            &self.progress.to_client,
            self.backend.request_timeout,
        )
        .await
        .map_err(|e| client_error(&self.backend.name, e))
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let Some(peer) = self.peer.get() else {
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
        if let Err(e) = peer.send_notification(notification).await {
            tracing::debug!(
                "Dropped a notification for backend '{}': {e}",
                self.backend.name
            );
        }
        Ok(())
    }

    fn get_info(&self) -> InitializeResult {
        // Never used for the handshake: `initialize` is answered with the backend's own result.
        InitializeResult::new(Default::default())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(CLIENT_PROTOCOL_VERSIONS)
    }
}
