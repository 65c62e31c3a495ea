//! What a backend sends on its own initiative — its requests to the client (sampling,
//! elicitation, roots), its notifications (progress, log messages, changed lists, updated
//! resources) — passed on to the stdio client, under the names the gateway exposes; or, in a
//! session no client takes part in (`status`'s check), answered as far as that is possible.

use std::sync::Arc;

use rmcp::{
    Peer, RoleClient,
    model::{
        ClientConfig, ClientResult, ErrorCode, ErrorData, NotificationMetaObject,
        ServerNotification, ServerRequest, SubscriptionFilter,
    },
    service::{NotificationContext, RequestContext, Service},
};

use tokio::sync::mpsc;
use tracing::Level;

use crate::{
    downstream,
    forward::{ProgressMap, carry_meta},
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
    /// The stdio client, in the era it speaks.
    Client(Arc<downstream::Client>),
    /// Nobody: a session no client takes part in, such as `status`'s check. A ping is
    /// answered, any other request declined, notifications dropped.
    Nobody,
}

/// Receives what a backend sends on its own initiative and passes it to the stdio client — or,
/// in a session no client takes part in, answers what it can itself
/// ([`BackendHandler::without_client`]).
#[derive(Clone)]
pub struct BackendHandler {
    name: Arc<str>,
    info: ClientConfig,
    downstream: Downstream,
    progress: ProgressMaps,
    naming: Option<Naming>,
    list_changes: Option<mpsc::UnboundedSender<ListChanged>>,
}

impl BackendHandler {
    /// The stdio client it passes things on to, if there is one.
    pub(super) fn client(&self) -> Option<&Arc<downstream::Client>> {
        match &self.downstream {
            Downstream::Client(client) => Some(client),
            Downstream::Nobody => None,
        }
    }

    /// The progress map of the client's requests to this backend.
    pub(super) fn progress_to_client(&self) -> ProgressMap {
        self.progress.to_client.clone()
    }

    /// A handler for backend `name` that introduces itself with `info` (the stdio client's own
    /// capabilities, so the backend only asks for what the client can do).
    pub fn new(
        name: &str,
        info: ClientConfig,
        downstream: Arc<downstream::Client>,
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

impl BackendHandler {
    /// A notification from the backend, to the client: list changes to the gateway, which
    /// reads the lists again and tells the client itself; progress and cancellations, which
    /// take other ways, dropped; the rest renamed (in the gateway) and passed on with `meta`.
    async fn pass_on(&self, notification: ServerNotification, meta: NotificationMetaObject) {
        let Downstream::Client(downstream) = &self.downstream else {
            tracing::debug!(
                "Dropped a notification from backend '{}': no client takes part",
                self.name
            );
            return;
        };
        if self.took_list_change(&notification) {
            return;
        }
        let notification = match notification {
            // rmcp has already cancelled the matching handler, which tells the client; progress
            // went to the client in order, straight from the transport (see `ordered`).
            ServerNotification::CancelledNotification(_)
            | ServerNotification::ProgressNotification(_) => return,
            mut other => {
                if let Some(naming) = &self.naming {
                    rename(naming, &mut other);
                }
                carry_meta(&mut other, meta);
                other
            }
        };
        // rmcp's own line of each notification holds its data: off unless `--log-content`.
        let method = tracing::enabled!(Level::DEBUG).then(|| shape::method(&notification));
        let sent = downstream.notify(notification).await;
        if let Some(method) = method {
            match sent {
                true => tracing::debug!("{method} from backend '{}' to the client", self.name),
                false => tracing::debug!(
                    "Dropped {method} from backend '{}': the client did not ask for it, or is gone",
                    self.name
                ),
            }
        }
    }

    /// A request of the backend's (sampling, elicitation, roots), put to the client under the
    /// backend's name; answered here when no client takes part. `cancelled`: the backend gave up.
    pub(super) async fn ask_client(
        &self,
        request: ServerRequest,
        meta: rmcp::model::RequestMetaObject,
        cancelled: &tokio_util::sync::CancellationToken,
    ) -> Result<ClientResult, ErrorData> {
        let Downstream::Client(downstream) = &self.downstream else {
            return unattended(&request);
        };
        let request = match &self.naming {
            Some(naming) => attributed(naming, request).map_err(ErrorData::from)?,
            None => request,
        };
        downstream
            .ask(
                &self.name,
                request,
                meta,
                cancelled,
                &self.progress.to_backend,
            )
            .await
    }

    /// A backend of MCP 2026-07-28 tells of changed lists only on a `subscriptions/listen`
    /// stream, which the proxy opens for the lists it says change, for as long as the session
    /// lasts; what comes on it goes where the older revision's notifications go.
    pub(super) fn listen_for_list_changes(&self, peer: Peer<RoleClient>) {
        let Some(capabilities) = peer.peer_info().map(|i| i.capabilities.clone()) else {
            return;
        };
        let mut filter = SubscriptionFilter::default();
        if capabilities.tools.as_ref().and_then(|t| t.list_changed) == Some(true) {
            filter.tools_list_changed = Some(true);
        }
        if capabilities.prompts.as_ref().and_then(|p| p.list_changed) == Some(true) {
            filter.prompts_list_changed = Some(true);
        }
        if capabilities.resources.as_ref().and_then(|r| r.list_changed) == Some(true) {
            filter.resources_list_changed = Some(true);
        }
        if filter == SubscriptionFilter::default() {
            return;
        }
        let handler = self.clone();
        tokio::spawn(async move {
            let mut subscription = match peer.listen(filter).await {
                Ok(subscription) => subscription,
                Err(e) => {
                    tracing::warn!(
                        "Backend '{}' would not tell of list changes (subscriptions/listen): {e}",
                        handler.name
                    );
                    return;
                }
            };
            while let Ok(Some(notification)) = subscription.next().await {
                handler
                    .pass_on(notification, NotificationMetaObject::default())
                    .await;
            }
        });
    }
}

impl Service<RoleClient> for BackendHandler {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        self.ask_client(request, context.meta, &context.ct).await
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        self.pass_on(notification, context.meta).await;
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

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientResult, ErrorCode, ServerRequest};

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
