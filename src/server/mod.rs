//! The one MCP server the proxy runs on stdio, for one backend or many. Each backend has a
//! [`Keeper`] that connects it (logins included), keeps it connected and replays the client's
//! log level to it. The [`Mode`], decided when the configuration is resolved, says how the
//! backends are served:
//!
//! - **the drop-in** (one backend, no prefix; see `drop_in.rs`): the backend as it is — its own
//!   identity, capabilities and instructions in `initialize`, every request and notification
//!   passed through, lists read whole from the backend at each request;
//! - **the gateway**: every backend behind its prefix, as one server of the gateway's name.
//!
//! Built for clients as they are. Claude Desktop and Claude Code read one page of a list and
//! Claude Desktop never reads it again, so in the gateway:
//! - every list is answered whole, merged from each backend's lists, which the keepers read
//!   whole when a backend connects and again when it sends `list_changed` (then tell the
//!   client); lists are served from memory;
//! - the first answer to each kind of list waits until every backend is ready or has failed,
//!   logins included, up to `gateway.first_list_timeout`, while `initialize` stays fast;
//! - a backend that joins after the first tool list stays reachable through two tools of the
//!   gateway's own (see `late.rs`).
//!
//! A first login takes a person longer (10-40 s with MFA) than clients wait for `initialize`:
//! both modes answer it after `gateway.startup_timeout` with what they have, and tell the
//! client with `list_changed` when the rest is there.

mod catalog;
mod drop_in;
mod keeper;
mod late;
mod requests;

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use rmcp::{
    RoleServer,
    model::{
        ClientNotification, ClientRequest, ErrorData, GetMeta, Implementation,
        InitializeRequestParams, InitializeResult, ProgressNotification, Prompt, ProtocolVersion,
        Resource, ResourceTemplate, ServerCapabilities, ServerResult, Tool,
    },
    service::{NotificationContext, RequestContext, Service},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::{
    auth::Access,
    config::{self, FallbackTools, Mode},
    lists::{self, Kind},
    naming::Naming,
    protocol,
    request_error::RequestError,
    shutdown::Closer,
};
use catalog::{Catalog, Exposed};
use keeper::{Keeper, Shared};

/// Serves the tools, prompts and resources of its backends as one MCP server.
pub struct Server {
    mode: Mode,
    settings: config::Gateway,
    keepers: Vec<Arc<Keeper>>,
    http: reqwest::Client,
    catalog: Catalog,
    shared: OnceCell<Arc<Shared>>,
    /// Owns the backends' keepers, which close their sessions when it closes.
    tasks: Closer,
    /// The backends that were in the first tool list, once it has been answered.
    first_tools: Mutex<Option<Vec<String>>>,
    /// The gateway's own tools for late backends are listed (see [`late`]).
    late_tools: AtomicBool,
    /// The drop-in: per kind, its first list has been answered.
    first_answered: [AtomicBool; 4],
}

fn convert<T: DeserializeOwned>(value: Value) -> Result<T, RequestError> {
    serde_json::from_value(value).map_err(RequestError::internal)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, RequestError> {
    serde_json::to_value(value).map_err(RequestError::internal)
}

/// The backend of `keeper` cannot be reached; it is tried again at once.
fn unavailable(keeper: &Keeper, reason: &str) -> RequestError {
    keeper.wake();
    RequestError::Unavailable {
        backend: keeper.backend.name.clone(),
        reason: reason.to_owned(),
    }
}

impl Server {
    /// A server of `settings`' backends in its mode, with each backend's token manager
    /// looked up by profile.
    pub fn new(
        settings: &config::Settings,
        access: impl Fn(&config::Backend) -> Option<Access>,
        http: reqwest::Client,
    ) -> Self {
        let (mode, backends) = (settings.mode, &settings.backends);
        let settings = settings.gateway.clone();
        let catalog = Catalog::default();
        let separator = settings.separator.as_str();
        let keepers = backends
            .iter()
            .map(|b| {
                let mut naming = Naming::new(&b.name, b.prefix.as_deref(), separator);
                naming.max_len = settings.max_name_length;
                if b.prefix.is_none() {
                    naming.others = backends.iter().filter_map(|o| o.prefix.clone()).collect();
                }
                let access = access(b);
                Arc::new(Keeper::new(
                    b.clone(),
                    mode,
                    naming,
                    access,
                    catalog.version(),
                ))
            })
            .collect();
        if settings.fallback_tools != FallbackTools::Never {
            catalog.reserve(&late::NAMES);
        }
        let late_tools = settings.fallback_tools == FallbackTools::Always;
        Self {
            mode,
            settings,
            keepers,
            http,
            catalog,
            shared: OnceCell::new(),
            tasks: Closer::new(),
            first_tools: Mutex::new(None),
            late_tools: late_tools.into(),
            first_answered: Default::default(),
        }
    }

    /// Owns the server's background work; closing it ends every backend session (an HTTP
    /// `DELETE` each, concurrently) and stops reconnecting.
    pub fn closer(&self) -> Closer {
        self.tasks.clone()
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let negotiated = protocol::negotiate(&params.protocol_version);
        let shared = Arc::new(Shared {
            downstream: context.peer.clone(),
            info: protocol::introduction(&params),
            log_level: Mutex::new(None),
            announce: false.into(),
            listed: Default::default(),
            publishing: Mutex::new(()),
        });
        if self.shared.set(Arc::clone(&shared)).is_err() {
            return Err(RequestError::AlreadyInitialized);
        }
        for keeper in &self.keepers {
            self.tasks.spawn(Arc::clone(keeper).keep(
                self.http.clone(),
                Arc::clone(&shared),
                self.tasks.token().clone(),
            ));
        }
        if self.mode == Mode::DropIn {
            return self.drop_in_initialize(&shared, negotiated).await;
        }

        // Only their introductions: the first lists wait for the backends' lists.
        let startup = futures::future::join_all(self.keepers.iter().map(|s| s.introduced()));
        if tokio::time::timeout(self.settings.startup_timeout, startup)
            .await
            .is_err()
        {
            tracing::info!(
                "Answering initialize after {} s with the backends that are ready; the first \
                 lists wait up to {} s for the others",
                self.settings.startup_timeout.as_secs(),
                self.settings.first_list_timeout.as_secs()
            );
        }
        shared.announce.store(true, Ordering::SeqCst);
        let mut result = InitializeResult::new(self.capabilities()?)
            .with_protocol_version(negotiated)
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
    fn capabilities(&self) -> Result<ServerCapabilities, RequestError> {
        let mut union = serde_json::Map::new();
        let mut all_ready = true;
        for keeper in &self.keepers {
            let Ok(connection) = keeper.connection() else {
                all_ready = false;
                continue;
            };
            let Some(info) = connection.info() else {
                continue;
            };
            if let Value::Object(caps) = to_json(&info.capabilities)? {
                for (key, value) in caps {
                    merge(union.entry(key).or_insert(json!({})), value);
                }
            }
        }
        if !all_ready || self.settings.fallback_tools == FallbackTools::Always {
            union.entry("tools").or_insert(json!({}));
        }
        if !all_ready {
            for key in ["prompts", "resources", "logging", "completions"] {
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
            .keepers
            .iter()
            .filter_map(|keeper| {
                let info = keeper.connection().ok()?.info()?;
                let text = info.instructions.as_deref()?.trim();
                (!text.is_empty()).then(|| format!("## {}\n\n{text}", keeper.backend.name))
            })
            .collect();
        (!sections.is_empty()).then(|| sections.join("\n\n"))
    }

    /// A whole list, from memory. The first of each kind waits for the backends first.
    async fn list(&self, kind: Kind, cursor: Option<String>) -> Result<ServerResult, RequestError> {
        if cursor.is_some() {
            // The gateway hands out no cursors: this one is stale or foreign, and its page is
            // the end of the list.
            tracing::debug!(
                "Answered {} with a cursor with an empty page",
                kind.method()
            );
            return Ok(kind.empty());
        }
        let Some(shared) = self.shared.get() else {
            return Err(RequestError::NotInitialized);
        };
        if !shared.listed[kind.index()].load(Ordering::SeqCst) {
            self.wait_for_backends(kind).await;
            if kind == Kind::Tools {
                self.first_tool_list();
            }
            // Before the answer is made: a backend whose lists arrive from now on is announced.
            shared.listed[kind.index()].store(true, Ordering::SeqCst);
        }
        Ok(match kind {
            Kind::Tools => {
                let lead = if self.late_tools.load(Ordering::SeqCst) {
                    late::definitions(&self.keepers)
                } else {
                    Vec::new()
                };
                self.whole::<Tool>(lead)
            }
            Kind::Prompts => self.whole::<Prompt>(Vec::new()),
            Kind::Resources => self.whole::<Resource>(Vec::new()),
            Kind::Templates => self.whole::<ResourceTemplate>(Vec::new()),
        })
    }

    /// `lead`, then every backend's items of `T`'s list.
    fn whole<T: Exposed>(&self, mut lead: Vec<T>) -> ServerResult {
        let merged = self.catalog.list::<T>(&self.keepers);
        lead.extend(merged.iter().cloned());
        T::answer(T::fresh_page(), lead)
    }

    /// Holds the first list of `kind` until every backend is ready or has failed, up to
    /// `gateway.first_list_timeout`.
    async fn wait_for_backends(&self, kind: Kind) {
        let limit = self.settings.first_list_timeout;
        if limit.is_zero() || self.keepers.iter().all(|s| s.is_settled()) {
            return;
        }
        let started = Instant::now();
        let all = futures::future::join_all(self.keepers.iter().map(|s| s.settled()));
        if tokio::time::timeout(limit, all).await.is_ok() {
            tracing::info!(
                "Answering the first {} after {:.1} s, once every backend was ready or had failed",
                kind.method(),
                started.elapsed().as_secs_f64()
            );
            return;
        }
        let missing: Vec<String> = self
            .keepers
            .iter()
            .filter(|s| !s.is_settled())
            .map(|s| match s.connection() {
                Ok(_) => format!("'{}' (still reading its lists)", s.backend.name),
                Err(reason) => format!("'{}' ({reason})", s.backend.name),
            })
            .collect();
        tracing::warn!(
            "Answering the first {} after {} s (gateway.first_list_timeout) without backend {}; \
             they are announced with list_changed when ready",
            kind.method(),
            limit.as_secs(),
            missing.join(", ")
        );
    }

    /// Notes which backends the first tool list has, and offers the gateway's own tools if
    /// some backend is missing from it.
    fn first_tool_list(&self) {
        let (present, missing): (Vec<&Arc<Keeper>>, Vec<&Arc<Keeper>>) = self
            .keepers
            .iter()
            .partition(|s| s.listed::<Tool>().is_some());
        if let Ok(mut first) = self.first_tools.lock() {
            *first = Some(present.iter().map(|s| s.backend.name.clone()).collect());
        }
        if self.settings.fallback_tools == FallbackTools::Auto
            && !missing.is_empty()
            && !self.late_tools.swap(true, Ordering::SeqCst)
        {
            let names: Vec<&str> = missing.iter().map(|s| s.backend.name.as_str()).collect();
            tracing::info!(
                "The first tool list lacks backend {}: it carries {} and {}, which reach them \
                 once they are ready",
                names.join(", "),
                late::LIST_TOOLS,
                late::CALL_TOOL
            );
        }
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

impl Server {
    async fn answer(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        if self.mode == Mode::DropIn {
            return self.drop_in_answer(request, context).await;
        }
        let request = match request {
            ClientRequest::InitializeRequest(init) => {
                return self.initialize(init.params, context).await;
            }
            ClientRequest::PingRequest(_) => return Ok(ServerResult::empty(())),
            ClientRequest::SetLevelRequest(_) => return self.set_level(request, context).await,
            other => other,
        };
        if let Some((kind, cursor)) = lists::asked_for(&request) {
            return self.list(kind, cursor).await;
        }
        match request {
            ClientRequest::CallToolRequest(call) => self.call_tool(call, context).await,
            other => self.routed(other, context).await,
        }
    }
}

impl Service<RoleServer> for Server {
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
        match notification {
            ClientNotification::CancelledNotification(_)
            | ClientNotification::InitializedNotification(_) => {}
            ClientNotification::ProgressNotification(progress) => {
                // Progress for a request a backend sent: find the backend that owns the token.
                for keeper in &self.keepers {
                    if let Some(params) = keeper
                        .progress
                        .to_backend
                        .translate(progress.params.clone())
                        && let Ok(connection) = keeper.connection()
                    {
                        let relayed = ClientNotification::ProgressNotification(
                            ProgressNotification::new(params),
                        );
                        connection.notify(relayed).await;
                        break;
                    }
                }
            }
            mut other => {
                *other.get_meta_mut() = context.meta;
                for keeper in &self.keepers {
                    if let Ok(connection) = keeper.connection() {
                        connection.notify(other.clone()).await;
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
        Cow::Borrowed(protocol::CLIENT_PROTOCOL_VERSIONS)
    }
}
