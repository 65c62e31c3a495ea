//! How a client's request reaches its backend in the gateway: the exposed name or URI mapped
//! back to the backend and its own name, the request sent through the backend's connection,
//! and URIs in the answer mapped to their exposed form again — all on rmcp's typed requests
//! and results, so a call crosses the gateway without being turned into JSON and back.

use std::sync::{Arc, atomic::Ordering};

use rmcp::{
    RoleServer,
    model::{CallToolRequest, ClientRequest, Reference, ServerResult},
    service::RequestContext,
};
use tokio_util::sync::CancellationToken;

use super::{Server, catalog, keeper::Keeper, late, unavailable};
use crate::{lists::Kind, request_error::RequestError};

impl Server {
    /// The backend and original name of an exposed tool or prompt.
    async fn route(
        &self,
        kind: Kind,
        exposed: &str,
        cancelled: &CancellationToken,
    ) -> Result<(Arc<Keeper>, String), RequestError> {
        if self.catalog.route(kind, &self.keepers, exposed).is_none() {
            // A backend may add a tool without saying so: read the lists again, once.
            self.read_again(kind, cancelled).await;
        }
        if let Some(route) = self.catalog.route(kind, &self.keepers, exposed)
            && let Some(keeper) = self.keepers.get(route.keeper)
        {
            return Ok((Arc::clone(keeper), route.original));
        }
        // Not listed: the name may be of a backend still connecting or signing in (called
        // through the gateway's own tools, by a client that saw the list before it was there):
        // wait for it as long as a request may, then look again. One that is down is said to
        // be, rather than the name unknown.
        for keeper in &self.keepers {
            if keeper.naming.original_name(exposed).is_none() || keeper.backend.prefix.is_none() {
                continue;
            }
            if keeper.connection().is_err() && !keeper.is_settled() {
                keeper
                    .settled_within(keeper.backend.request_timeout, cancelled)
                    .await;
                if let Some(route) = self.catalog.route(kind, &self.keepers, exposed)
                    && let Some(keeper) = self.keepers.get(route.keeper)
                {
                    return Ok((Arc::clone(keeper), route.original));
                }
            }
            if let Err(reason) = keeper.connection() {
                return Err(unavailable(keeper, &reason));
            }
        }
        Err(RequestError::UnknownName {
            kind: if kind == Kind::Tools {
                "tool"
            } else {
                "prompt"
            },
            name: exposed.to_owned(),
        })
    }

    /// Reads the `kind` lists of every connected backend again, concurrently.
    async fn read_again(&self, kind: Kind, cancelled: &CancellationToken) {
        let reads = self.keepers.iter().filter_map(|keeper| {
            let connection = keeper.connection().ok()?;
            Some(async move { keeper.read_lists(&connection, &[kind], cancelled).await })
        });
        futures::future::join_all(reads).await;
    }

    /// The backend and original URI of an exposed resource URI.
    fn route_uri(&self, exposed: &str) -> Result<(Arc<Keeper>, String), RequestError> {
        let owner = catalog::uri_owner(&self.keepers, exposed)
            .and_then(|(i, original)| Some((self.keepers.get(i)?, original)));
        match owner {
            Some((keeper, original)) => Ok((Arc::clone(keeper), original.to_owned())),
            None => Err(RequestError::NoSuchResource {
                uri: exposed.to_owned(),
            }),
        }
    }

    /// Sends `request` (its names already mapped back) to `keeper`'s backend and maps the
    /// URIs in its answer to their exposed form.
    pub(super) async fn send(
        &self,
        keeper: &Keeper,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        // A backend still connecting or signing in (its tools listed from the last run, or
        // called through the gateway's own tools) is waited for, as long as a request may be.
        let connection = keeper
            .connection_when_ready(keeper.backend.request_timeout, &context.ct)
            .await
            .map_err(|reason| unavailable(keeper, &reason))?;
        let mut result = connection
            .request(request, context.meta, &context.ct)
            .await?;
        self.note_task(keeper, &result);
        keeper.naming.expose_result(&mut result);
        Ok(result)
    }

    /// A tool call: to a backend's tool, or to one of the gateway's own (see [`late`]).
    pub(super) async fn call_tool(
        &self,
        mut call: CallToolRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let late_tools = self.late_tools.load(Ordering::SeqCst);
        match call.params.name.as_ref() {
            late::LIST_TOOLS if late_tools => {
                let arguments = call.params.arguments.unwrap_or_default();
                return Ok(ServerResult::CallToolResult(
                    self.late_list_tools(&arguments)?,
                ));
            }
            late::CALL_TOOL if late_tools => call = late::inner_call(call)?,
            _ => {}
        }
        let (keeper, original) = self
            .route(Kind::Tools, &call.params.name, &context.ct)
            .await?;
        call.params.name = original.into();
        self.send(&keeper, ClientRequest::CallToolRequest(call), context)
            .await
    }

    /// A request about one prompt or resource: routed by its exposed name or URI.
    pub(super) async fn routed(
        &self,
        mut request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let keeper = match &mut request {
            ClientRequest::GetPromptRequest(r) => {
                let (keeper, original) = self
                    .route(Kind::Prompts, &r.params.name, &context.ct)
                    .await?;
                r.params.name = original;
                keeper
            }
            ClientRequest::ReadResourceRequest(r) => {
                let (keeper, original) = self.route_uri(&r.params.uri)?;
                r.params.uri = original;
                keeper
            }
            ClientRequest::SubscribeRequest(r) => {
                let (keeper, original) = self.route_uri(&r.params.uri)?;
                r.params.uri = original;
                keeper
            }
            ClientRequest::UnsubscribeRequest(r) => {
                let (keeper, original) = self.route_uri(&r.params.uri)?;
                r.params.uri = original;
                keeper
            }
            ClientRequest::CompleteRequest(r) => match &mut r.params.r#ref {
                Reference::Prompt(prompt) => {
                    let (keeper, original) =
                        self.route(Kind::Prompts, &prompt.name, &context.ct).await?;
                    prompt.name = original;
                    keeper
                }
                Reference::Resource(resource) => {
                    let (keeper, original) = self.route_uri(&resource.uri)?;
                    resource.uri = original;
                    keeper
                }
                _ => {
                    return Err(RequestError::InvalidParams(
                        "completion/complete: a reference to neither a prompt nor a resource"
                            .to_owned(),
                    ));
                }
            },
            other => {
                return Err(RequestError::Unsupported {
                    method: other.method().to_owned(),
                });
            }
        };
        let subscription = matches!(
            request,
            ClientRequest::SubscribeRequest(_) | ClientRequest::UnsubscribeRequest(_)
        );
        let result = self.send(&keeper, request, context).await?;
        // What the client gets for a subscription is an empty result, whatever the backend's.
        Ok(if subscription {
            ServerResult::empty(())
        } else {
            result
        })
    }

    pub(super) async fn set_level(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        if let Some(shared) = self.shared.get()
            && let Ok(mut level) = shared.log_level.lock()
        {
            *level = Some(request.clone());
        }
        let sends = self.keepers.iter().filter_map(|keeper| {
            let connection = keeper.connection().ok()?;
            let (request, meta, cancelled) = (request.clone(), context.meta.clone(), &context.ct);
            Some(async move {
                if let Err(e) = connection.request(request, meta, cancelled).await {
                    tracing::debug!(
                        "Backend '{}' refused logging/setLevel: {e}",
                        keeper.backend.name
                    );
                }
            })
        });
        futures::future::join_all(sends).await;
        Ok(ServerResult::empty(()))
    }
}
