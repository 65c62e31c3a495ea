//! The one MCP server the proxy runs on stdio, for one backend or many. Each backend has a
//! keeper (`keeper/`) that connects it (logins included), keeps it connected and replays the client's
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

mod capabilities;
mod catalog;
pub mod client_browser;
pub mod client_waits;
mod drop_in;
mod era;
mod keeper;
mod late;
mod listen;
mod listing;
mod requests;
mod tasks;

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{
    RoleServer,
    model::{
        ClientConfig, ClientNotification, ClientRequest, ErrorData, Implementation,
        InitializeRequestParams, InitializeResult, ProgressNotification, ProtocolVersion,
        ServerResult,
    },
    service::{NotificationContext, RequestContext, Service},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::{
    auth::Access,
    config::{self, FallbackTools, Mode},
    downstream::{self, Era},
    error_text::untrusted,
    lists,
    naming::Naming,
    protocol,
    remembered::Memory,
    request_error::RequestError,
    shutdown::Closer,
};
use catalog::Catalog;
use client_browser::ClientBrowser;
use client_waits::Waits;
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
    /// About when the client started the proxy: the first lists' waits count from here.
    started: Instant,
    /// How long this client may wait at start-up, once it has said who it is.
    waits: std::sync::OnceLock<Waits>,
    /// Sign-in pages go through the client where it takes URL elicitation.
    client_browser: Option<Arc<ClientBrowser>>,
    /// The client declared `elicitation.url`.
    url_elicitation: AtomicBool,
    /// Turns `true` when the client's input ends: what runs until the client cancels it ends.
    input_ended: tokio::sync::watch::Receiver<bool>,
    /// The gateway: which backend each task is of, by task id (see [`tasks`]).
    task_owners: Mutex<std::collections::HashMap<String, String>>,
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
        let (mode, backends, cache_dir) = (settings.mode, &settings.backends, &settings.cache_dir);
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
                let memory = settings.remember_lists.then(|| Memory::of(cache_dir, b));
                Arc::new(Keeper::new(
                    b.clone(),
                    mode,
                    naming,
                    access,
                    catalog.version(),
                    memory,
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
            started: Instant::now(),
            waits: std::sync::OnceLock::new(),
            client_browser: None,
            url_elicitation: AtomicBool::new(false),
            input_ended: tokio::sync::watch::Sender::new(false).subscribe(),
            task_owners: Mutex::default(),
        }
    }

    /// Ends what runs until the client cancels it (its `subscriptions/listen` streams) when
    /// `ended` turns `true`: the client's input is over.
    pub fn with_input_ended(mut self, ended: tokio::sync::watch::Receiver<bool>) -> Self {
        self.input_ended = ended;
        self
    }

    /// Sign-in pages go through `browser`, told here when the client is ready.
    pub fn with_client_browser(mut self, browser: Arc<ClientBrowser>) -> Self {
        self.client_browser = Some(browser);
        self
    }

    /// How long the client may wait at start-up.
    fn waits(&self) -> Waits {
        self.waits
            .get()
            .copied()
            .unwrap_or_else(|| client_waits::configured(&self.settings))
    }

    /// Runs `work` within the client's `initialize` wait; `None` when it did not end in time, or
    /// a sign-in page waits for the client to open it (which it can only do once answered).
    async fn within_initialize_wait<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let limit = self.waits().initialize;
        let page_waiting = async {
            match &self.client_browser {
                Some(browser) if self.url_elicitation.load(Ordering::SeqCst) => {
                    browser.page_waiting().await;
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            done = tokio::time::timeout(limit, work) => done.ok(),
            () = page_waiting => None,
        }
    }

    /// What is left of the first lists' wait (zero once it is over).
    fn first_list_wait(&self) -> Duration {
        self.waits()
            .first_list
            .saturating_sub(self.started.elapsed())
    }

    /// Owns the server's background work; closing it ends every backend session (an HTTP
    /// `DELETE` each, concurrently) and stops reconnecting.
    pub fn closer(&self) -> Closer {
        self.tasks.clone()
    }

    /// Begins the client's session: the shared state every keeper works with, the client's
    /// waits, and the keepers started. `None` when a session has begun already.
    fn begin(
        &self,
        peer: rmcp::Peer<RoleServer>,
        era: Era,
        client: ClientConfig,
    ) -> Option<Arc<Shared>> {
        let shared = Arc::new(Shared {
            downstream: downstream::Client::new(peer, era),
            info: protocol::introduction(&client),
            log_level: Mutex::new(None),
            announce: false.into(),
            listed: Default::default(),
            publishing: Mutex::new(()),
        });
        self.shared.set(Arc::clone(&shared)).ok()?;
        // A modern client cannot be sent requests: sign-in pages go to the system browser.
        let url_elicitation = era == Era::Legacy
            && client
                .capabilities
                .elicitation
                .as_ref()
                .is_some_and(|e| e.url.is_some());
        self.url_elicitation
            .store(url_elicitation, Ordering::SeqCst);
        if let Some(browser) = &self.client_browser {
            browser.client_introduced(url_elicitation);
        }
        let name = untrusted(&client.client_info.name);
        let (waits, known) = client_waits::for_client(&self.settings, &client.client_info.name);
        let _ = self.waits.set(waits);
        let label = known.map(|k| format!(" ({})", k.label)).unwrap_or_default();
        match era {
            Era::Legacy => tracing::info!(
                "Client '{name}'{label}: initialize within {:.1} s, the first lists within {:.1} s of the start",
                waits.initialize.as_secs_f64(),
                waits.first_list.as_secs_f64()
            ),
            Era::Modern => tracing::info!(
                "Client '{name}'{label} speaks MCP {} (no initialize): the first lists within {:.1} s of the start",
                protocol::MODERN,
                waits.first_list.as_secs_f64()
            ),
        }
        for keeper in &self.keepers {
            self.tasks.spawn(Arc::clone(keeper).keep(
                self.http.clone(),
                Arc::clone(&shared),
                self.tasks.token().clone(),
            ));
        }
        Some(shared)
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let negotiated = protocol::negotiate(&params.protocol_version);
        let Some(shared) = self.begin(context.peer.clone(), Era::Legacy, params) else {
            return Err(RequestError::AlreadyInitialized);
        };
        let waits = self.waits();
        if self.mode == Mode::DropIn {
            return self.drop_in_initialize(&shared, negotiated).await;
        }

        // Only their introductions: the first lists wait for the backends' lists.
        let startup = futures::future::join_all(self.keepers.iter().map(|s| s.introduced()));
        if self.within_initialize_wait(startup).await.is_none() {
            tracing::info!(
                "Answering initialize after {:.1} s with the backends that are ready; the first \
                 lists wait up to {:.1} s of the start for the others",
                waits.initialize.as_secs_f64(),
                waits.first_list.as_secs_f64()
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
            task if tasks::is_about_a_task(&task) => self.about_a_task(task, context).await,
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
        let era = era::of(&context);
        era::check(era, &request, &context)?;
        let answer = match request {
            // The probe may come before any session, from a process started only to ask.
            ClientRequest::DiscoverRequest(_) => self.discover(),
            ClientRequest::SubscriptionsListenRequest(listen) => {
                self.listen(listen.params.notifications, context).await
            }
            other => match era {
                Era::Modern => match self.begin_modern(&context).await {
                    Ok(()) => self.answer(other, context).await,
                    Err(e) => Err(e),
                },
                Era::Legacy => self.answer(other, context).await,
            },
        };
        era::shape(era, answer.map_err(ErrorData::from))
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        match notification {
            ClientNotification::CancelledNotification(_) => {}
            ClientNotification::InitializedNotification(_) => {
                if let Some(browser) = &self.client_browser {
                    let url = self.url_elicitation.load(Ordering::SeqCst);
                    browser.client_ready(context.peer.clone(), url);
                }
            }
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
                crate::forward::carry_meta(&mut other, context.meta);
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
        // rmcp starts a session without `initialize` for a request of one of these.
        Cow::Borrowed(protocol::SUPPORTED)
    }
}
