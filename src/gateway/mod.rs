//! The aggregating gateway: one stdio server in front of several backends, their tools,
//! prompts and resources exposed under each backend's prefix.

mod catalog;
mod slots;

use std::{
    borrow::Cow,
    sync::{Arc, Mutex, atomic::Ordering},
};

use rmcp::{
    RoleServer,
    model::{
        ClientNotification, ClientRequest, ErrorCode, ErrorData, Implementation,
        InitializeRequestParams, InitializeResult, ProgressNotification, ProtocolVersion,
        ServerCapabilities, ServerResult,
    },
    service::{NotificationContext, RequestContext, Service},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::{sync::OnceCell, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::TokenManager,
    config,
    forward::{client_error, forward},
    relay::CLIENT_PROTOCOL_VERSIONS,
};
use catalog::{Kind, Routes};
use slots::{Shared, Slot};

/// Serves the tools, prompts and resources of every backend as one MCP server.
pub struct Gateway {
    settings: config::Gateway,
    slots: Vec<Arc<Slot>>,
    http: reqwest::Client,
    routes: Routes,
    shared: OnceCell<Arc<Shared>>,
    shutdown: CancellationToken,
    keepers: Arc<Mutex<JoinSet<()>>>,
}

fn convert<T: DeserializeOwned>(value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

fn unavailable(slot: &Slot, reason: &str) -> ErrorData {
    slot.wake();
    ErrorData::internal_error(
        format!("backend '{}' is unavailable: {reason}", slot.backend.name),
        None,
    )
}

impl Gateway {
    /// A gateway over `backends`, with each backend's token manager looked up by profile.
    pub fn new(
        settings: config::Gateway,
        backends: &[config::Backend],
        tokens: impl Fn(&config::Backend) -> Option<Arc<TokenManager>>,
        http: reqwest::Client,
    ) -> Self {
        let separator = settings.separator.as_str();
        let slots = backends
            .iter()
            .map(|b| Arc::new(Slot::new(b.clone(), separator, tokens(b))))
            .collect();
        Self {
            settings,
            slots,
            http,
            routes: Routes::default(),
            shared: OnceCell::new(),
            shutdown: CancellationToken::new(),
            keepers: Arc::default(),
        }
    }

    /// A handle that stops the backends once serving is over.
    pub fn closer(&self) -> GatewayCloser {
        GatewayCloser {
            shutdown: self.shutdown.clone(),
            keepers: Arc::clone(&self.keepers),
        }
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let requested = params.protocol_version.clone();
        let shared = Arc::new(Shared {
            downstream: context.peer.clone(),
            info: crate::backend::introduction(&params),
            log_level: Mutex::new(None),
            announce: false.into(),
        });
        if self.shared.set(Arc::clone(&shared)).is_err() {
            return Err(ErrorData::invalid_request("already initialized", None));
        }
        if let Ok(mut keepers) = self.keepers.lock() {
            for slot in &self.slots {
                keepers.spawn(Arc::clone(slot).keep(
                    self.http.clone(),
                    Arc::clone(&shared),
                    self.shutdown.clone(),
                ));
            }
        }
        let startup = futures::future::join_all(self.slots.iter().map(|s| s.settled()));
        if tokio::time::timeout(self.settings.startup_timeout, startup)
            .await
            .is_err()
        {
            tracing::info!(
                "Answering initialize after {} s with the backends that are ready",
                self.settings.startup_timeout.as_secs()
            );
        }
        shared.announce.store(true, Ordering::SeqCst);
        let mut result = InitializeResult::new(self.capabilities()?)
            .with_protocol_version(requested)
            .with_server_info(Implementation::new(
                self.settings.name.clone(),
                env!("CARGO_PKG_VERSION"),
            ));
        result.instructions = self.instructions();
        Ok(ServerResult::InitializeResult(result))
    }

    /// The union of the ready backends' capabilities. While some backend is not ready, its
    /// capabilities are unknown, so every list is offered; lists always announce changes,
    /// since backends come and go.
    fn capabilities(&self) -> Result<ServerCapabilities, ErrorData> {
        let mut union = serde_json::Map::new();
        let mut all_ready = true;
        for slot in &self.slots {
            let Ok(peer) = slot.peer() else {
                all_ready = false;
                continue;
            };
            let Some(info) = peer.peer_info() else {
                continue;
            };
            if let Value::Object(caps) = to_json(&info.capabilities)? {
                for (key, value) in caps {
                    merge(union.entry(key).or_insert(json!({})), value);
                }
            }
        }
        if !all_ready {
            for key in ["tools", "prompts", "resources", "logging", "completions"] {
                union.entry(key).or_insert(json!({}));
            }
            union["resources"]["subscribe"] = json!(true);
        }
        for key in ["tools", "prompts", "resources"] {
            if let Some(Value::Object(cap)) = union.get_mut(key) {
                cap.insert("listChanged".into(), json!(true));
            }
        }
        convert(Value::Object(union))
    }

    /// Each ready backend's instructions under its own heading.
    fn instructions(&self) -> Option<String> {
        let sections: Vec<String> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let info = slot.peer().ok()?.peer_info()?;
                let text = info.instructions.as_deref()?.trim();
                (!text.is_empty()).then(|| format!("## {}\n\n{text}", slot.backend.name))
            })
            .collect();
        (!sections.is_empty()).then(|| sections.join("\n\n"))
    }

    /// The backend and original name of an exposed tool or prompt.
    async fn route(&self, kind: Kind, exposed: &str) -> Result<(Arc<Slot>, String), ErrorData> {
        if self.routes.get(kind, exposed).is_none() {
            catalog::refresh(kind, &self.slots, &self.routes).await;
        }
        if let Some(route) = self.routes.get(kind, exposed)
            && let Some(slot) = self.slots.get(route.slot)
        {
            return Ok((Arc::clone(slot), route.original));
        }
        // Not listed: if it looks like a backend that is down, say so rather than "unknown".
        for slot in &self.slots {
            if let (Some(_), Err(reason)) = (slot.naming.original_name(exposed), slot.peer())
                && slot.backend.prefix.is_some()
            {
                return Err(unavailable(slot, &reason));
            }
        }
        let what = if kind == Kind::Tools {
            "tool"
        } else {
            "prompt"
        };
        Err(ErrorData::invalid_params(
            format!("unknown {what}: {exposed}"),
            None,
        ))
    }

    /// The backend and original URI of an exposed resource URI.
    fn route_uri(&self, exposed: &str) -> Result<(Arc<Slot>, String), ErrorData> {
        let owner = catalog::uri_owner(&self.slots, exposed)
            .and_then(|(i, original)| Some((self.slots.get(i)?, original)));
        match owner {
            Some((slot, original)) => Ok((Arc::clone(slot), original.to_owned())),
            None => Err(ErrorData::new(
                ErrorCode::RESOURCE_NOT_FOUND,
                format!("no backend serves resource {exposed}"),
                None,
            )),
        }
    }

    /// Sends `request` (JSON, with names already mapped back) to `slot` and rewrites the URIs
    /// in its answer.
    async fn send<T: DeserializeOwned>(
        &self,
        slot: &Slot,
        request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<T, ErrorData> {
        let peer = slot.peer().map_err(|reason| unavailable(slot, &reason))?;
        let request: ClientRequest = convert(request)?;
        let result = forward(
            &peer,
            request,
            context.meta,
            &context.ct,
            &slot.progress.to_client,
            slot.backend.request_timeout,
        )
        .await
        .map_err(|e| client_error(&slot.backend.name, e))?;
        let mut value = to_json(&result)?;
        slot.naming.rewrite_uris(&mut value);
        convert(value)
    }

    async fn by_name<T: DeserializeOwned>(
        &self,
        kind: Kind,
        mut request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<T, ErrorData> {
        let exposed = request["params"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (slot, original) = self.route(kind, &exposed).await?;
        request["params"]["name"] = Value::String(original);
        self.send(&slot, request, context).await
    }

    async fn by_uri<T: DeserializeOwned>(
        &self,
        mut request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<T, ErrorData> {
        let exposed = request["params"]["uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (slot, original) = self.route_uri(&exposed)?;
        request["params"]["uri"] = Value::String(original);
        self.send(&slot, request, context).await
    }

    async fn complete(
        &self,
        mut request: Value,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let reference = &request["params"]["ref"];
        let (slot, field, original) = if let Some(name) = reference["name"].as_str() {
            let (slot, original) = self.route(Kind::Prompts, name).await?;
            (slot, "name", original)
        } else {
            let uri = reference["uri"].as_str().unwrap_or_default().to_owned();
            let (slot, original) = self.route_uri(&uri)?;
            (slot, "uri", original)
        };
        request["params"]["ref"][field] = Value::String(original);
        Ok(ServerResult::CompleteResult(
            self.send(&slot, request, context).await?,
        ))
    }

    async fn set_level(&self, request: ClientRequest) -> Result<ServerResult, ErrorData> {
        if let Some(shared) = self.shared.get()
            && let Ok(mut level) = shared.log_level.lock()
        {
            *level = Some(request.clone());
        }
        let sends = self.slots.iter().filter_map(|slot| {
            let peer = slot.peer().ok()?;
            let request = request.clone();
            Some(async move {
                if let Err(e) = peer.send_request(request).await {
                    tracing::debug!(
                        "Backend '{}' refused logging/setLevel: {e}",
                        slot.backend.name
                    );
                }
            })
        });
        futures::future::join_all(sends).await;
        Ok(ServerResult::empty(()))
    }

    async fn list(&self, kind: Kind, request: &Value) -> Result<ServerResult, ErrorData> {
        let cursor = request["params"]["cursor"].as_str();
        let page = catalog::list_page(kind, &self.slots, &self.routes, cursor).await?;
        Ok(match kind {
            Kind::Tools => ServerResult::ListToolsResult(convert(page)?),
            Kind::Prompts => ServerResult::ListPromptsResult(convert(page)?),
            Kind::Resources => ServerResult::ListResourcesResult(convert(page)?),
            Kind::Templates => ServerResult::ListResourceTemplatesResult(convert(page)?),
        })
    }
}

/// Merges one backend's capability into the union: objects key by key, `true` wins.
fn merge(into: &mut Value, value: Value) {
    match (into, value) {
        (Value::Object(into), Value::Object(value)) => {
            for (key, v) in value {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, v),
                    None => {
                        into.insert(key, v);
                    }
                }
            }
        }
        (into @ Value::Bool(false), v @ Value::Bool(true)) => *into = v,
        _ => {}
    }
}

/// Stops a gateway's backends after the stdio session ended.
pub struct GatewayCloser {
    shutdown: CancellationToken,
    keepers: Arc<Mutex<JoinSet<()>>>,
}

impl GatewayCloser {
    /// Closes every backend session and waits (bounded) for them to finish.
    pub async fn close(self) {
        self.shutdown.cancel();
        let mut keepers = match self.keepers.lock() {
            Ok(mut keepers) => std::mem::take(&mut *keepers),
            Err(_) => return,
        };
        let all = async { while keepers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(6), all).await;
    }
}

impl Service<RoleServer> for Gateway {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let request = match request {
            ClientRequest::InitializeRequest(init) => {
                return self.initialize(init.params, context).await;
            }
            ClientRequest::PingRequest(_) => return Ok(ServerResult::empty(())),
            ClientRequest::SetLevelRequest(_) => return self.set_level(request).await,
            other => other,
        };
        let json = to_json(&request)?;
        match request {
            ClientRequest::ListToolsRequest(_) => self.list(Kind::Tools, &json).await,
            ClientRequest::ListPromptsRequest(_) => self.list(Kind::Prompts, &json).await,
            ClientRequest::ListResourcesRequest(_) => self.list(Kind::Resources, &json).await,
            ClientRequest::ListResourceTemplatesRequest(_) => {
                self.list(Kind::Templates, &json).await
            }
            ClientRequest::CallToolRequest(_) => Ok(ServerResult::CallToolResult(
                self.by_name(Kind::Tools, json, context).await?,
            )),
            ClientRequest::GetPromptRequest(_) => Ok(ServerResult::GetPromptResult(
                self.by_name(Kind::Prompts, json, context).await?,
            )),
            ClientRequest::ReadResourceRequest(_) => Ok(ServerResult::ReadResourceResult(
                self.by_uri(json, context).await?,
            )),
            ClientRequest::SubscribeRequest(_) | ClientRequest::UnsubscribeRequest(_) => {
                self.by_uri::<Value>(json, context).await?;
                Ok(ServerResult::empty(()))
            }
            ClientRequest::CompleteRequest(_) => self.complete(json, context).await,
            _ => Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "{} is not supported by the gateway",
                    json["method"].as_str().unwrap_or("this method")
                ),
                None,
            )),
        }
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        _context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        match notification {
            ClientNotification::CancelledNotification(_)
            | ClientNotification::InitializedNotification(_) => {}
            ClientNotification::ProgressNotification(progress) => {
                // Progress for a request a backend sent: find the backend that owns the token.
                for slot in &self.slots {
                    if let Some(params) =
                        slot.progress.to_backend.translate(progress.params.clone())
                        && let Ok(peer) = slot.peer()
                    {
                        let relayed = ClientNotification::ProgressNotification(
                            ProgressNotification::new(params),
                        );
                        let _ = peer.send_notification(relayed).await;
                        break;
                    }
                }
            }
            other => {
                for slot in &self.slots {
                    if let Ok(peer) = slot.peer() {
                        let _ = peer.send_notification(other.clone()).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn get_info(&self) -> InitializeResult {
        // Never used for the handshake: `initialize` builds its answer from the backends.
        InitializeResult::new(Default::default())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(CLIENT_PROTOCOL_VERSIONS)
    }
}
