//! How a client's request reaches its backend: the exposed name or URI mapped back to the
//! backend and its own name, the request sent through the backend's connection, and URIs in
//! the answer mapped to their exposed form again.

use std::sync::{Arc, atomic::Ordering};

use rmcp::{
    RoleServer,
    model::{ClientRequest, ServerResult},
    service::RequestContext,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Server, catalog, convert, keeper::Keeper, late, to_json, unavailable};
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
        // Not listed: if it looks like a backend that is down, say so rather than "unknown".
        for keeper in &self.keepers {
            if let (Some(_), Err(reason)) =
                (keeper.naming.original_name(exposed), keeper.connection())
                && keeper.backend.prefix.is_some()
            {
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

    /// Sends `request` (JSON, with names already mapped back) to `keeper` and rewrites the URIs
    /// in its answer.
    async fn send<T: DeserializeOwned>(
        &self,
        keeper: &Keeper,
        request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<T, RequestError> {
        let connection = keeper
            .connection()
            .map_err(|reason| unavailable(keeper, &reason))?;
        let request: ClientRequest = convert(request)?;
        let result = connection
            .request(request, context.meta, &context.ct)
            .await?;
        let mut value = to_json(&result)?;
        keeper.naming.rewrite_uris(&mut value);
        convert(value)
    }

    pub(super) async fn by_name<T: DeserializeOwned>(
        &self,
        kind: Kind,
        mut request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<T, RequestError> {
        let exposed = request["params"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (keeper, original) = self.route(kind, &exposed, &context.ct).await?;
        request["params"]["name"] = Value::String(original);
        self.send(&keeper, request, context).await
    }

    pub(super) async fn by_uri<T: DeserializeOwned>(
        &self,
        mut request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<T, RequestError> {
        let exposed = request["params"]["uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (keeper, original) = self.route_uri(&exposed)?;
        request["params"]["uri"] = Value::String(original);
        self.send(&keeper, request, context).await
    }

    pub(super) async fn call_tool(
        &self,
        request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let name = request["params"]["name"].as_str().unwrap_or_default();
        let result = match name {
            late::LIST_TOOLS if self.late_tools.load(Ordering::SeqCst) => {
                self.late_list_tools(&request["params"]["arguments"])?
            }
            late::CALL_TOOL if self.late_tools.load(Ordering::SeqCst) => {
                let inner = late::inner_call(&request)?;
                self.by_name(Kind::Tools, inner, context).await?
            }
            _ => self.by_name(Kind::Tools, request, context).await?,
        };
        Ok(ServerResult::CallToolResult(result))
    }

    pub(super) async fn complete(
        &self,
        mut request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let reference = &request["params"]["ref"];
        let (keeper, field, original) = if let Some(name) = reference["name"].as_str() {
            let (keeper, original) = self.route(Kind::Prompts, name, &context.ct).await?;
            (keeper, "name", original)
        } else {
            let uri = reference["uri"].as_str().unwrap_or_default().to_owned();
            let (keeper, original) = self.route_uri(&uri)?;
            (keeper, "uri", original)
        };
        request["params"]["ref"][field] = Value::String(original);
        Ok(ServerResult::CompleteResult(
            self.send(&keeper, request, context).await?,
        ))
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
