//! Shared test harness: the fake identity provider, the token-validating backend, a test
//! "browser" that completes logins over HTTP, and a stdio MCP client wired to the real proxy
//! loop over OS pipes; with what the tests build on them: free ports, HTTP servers on
//! loopback, settings for the drop-in and gateway backends, and calls with a time limit.

// Sampling, roots and logging are deprecated by SEP-2577 in rmcp 3.x, yet they are part of the
// 2025 protocol revisions the test client speaks.
#![allow(deprecated)]

pub mod backend;
pub mod binary;
pub mod desktop;
pub mod faults;
pub mod idp;
pub mod logs;
pub mod modern;
pub mod redirector;
pub mod scripted;
pub mod sse_front;
pub mod tasks_backend;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use authful_mcp_proxy::{
    auth::browser::Browser,
    config::{Backend, Profile, Settings},
    proxy::{self, RunError},
    secret::Secret,
};
use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
        ElicitResult, ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam,
        ResourceUpdatedNotificationParam,
    },
    service::{NotificationContext, RequestContext, RunningService},
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{net::unix::pipe, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use url::Url;

/// How the test browser treats an authorization URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserMode {
    /// Follow the provider's redirect to the callback.
    Complete,
    /// The same, after a person's pause (typing a password and an MFA code).
    CompleteAfter(Duration),
    /// First deliver a callback with a foreign `state`, then the real one.
    ForeignStateFirst,
    /// Do nothing (the user never logs in).
    Ignore,
}

/// What the test browser saw.
#[derive(Debug, Default)]
pub struct BrowserLog {
    /// Authorization URLs opened.
    pub urls: Vec<String>,
    /// (status, body) of each callback page served to the browser.
    pub pages: Vec<(u16, String)>,
    /// Callback URLs the provider redirected to (they carry the authorization codes).
    pub callbacks: Vec<String>,
}

/// A browser stand-in: performs the redirect dance with plain HTTP.
pub struct TestBrowser {
    pub mode: Mutex<BrowserMode>,
    pub opened: AtomicU32,
    pub log: Arc<Mutex<BrowserLog>>,
}

impl TestBrowser {
    pub fn new(mode: BrowserMode) -> Arc<Self> {
        Arc::new(Self {
            mode: Mutex::new(mode),
            opened: AtomicU32::new(0),
            log: Arc::default(),
        })
    }

    pub fn opened(&self) -> u32 {
        self.opened.load(Ordering::SeqCst)
    }

    pub fn pages(&self) -> Vec<(u16, String)> {
        self.log.lock().unwrap().pages.clone()
    }
}

/// Follows the authorization URL to the provider and its redirect to the callback.
pub async fn complete_login(url: &str, mode: BrowserMode, log: Arc<Mutex<BrowserLog>>) {
    if let BrowserMode::CompleteAfter(pause) = mode {
        tokio::time::sleep(pause).await;
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http.get(url).send().await.expect("authorize request");
    let Some(location) = response.headers().get("location") else {
        return;
    };
    let callback = location.to_str().unwrap().to_owned();
    log.lock().unwrap().callbacks.push(callback.clone());
    if mode == BrowserMode::ForeignStateFirst {
        let mut forged = Url::parse(&callback).unwrap();
        let pairs: Vec<(String, String)> = forged
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" {
                    "forged-state".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        forged.query_pairs_mut().clear().extend_pairs(pairs);
        let page = http.get(forged).send().await.expect("forged callback");
        let status = page.status().as_u16();
        let body = page.text().await.unwrap_or_default();
        log.lock().unwrap().pages.push((status, body));
    }
    let page = http.get(&callback).send().await.expect("callback request");
    let status = page.status().as_u16();
    let body = page.text().await.unwrap_or_default();
    log.lock().unwrap().pages.push((status, body));
}

impl Browser for TestBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().urls.push(url.to_owned());
        let mode = *self.mode.lock().unwrap();
        if mode == BrowserMode::Ignore {
            return Ok(());
        }
        let (url, log) = (url.to_owned(), Arc::clone(&self.log));
        tokio::runtime::Handle::current().spawn(complete_login_owned(url, mode, log));
        Ok(())
    }
}

pub async fn complete_login_owned(url: String, mode: BrowserMode, log: Arc<Mutex<BrowserLog>>) {
    complete_login(&url, mode, log).await;
}

/// A plain rmcp client connected straight to a backend, to compare with what the proxy relays.
pub async fn direct(url: &str) -> RunningService<RoleClient, ClientConfig> {
    use rmcp::transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    TestClient::new("2025-11-25")
        .info
        .serve(transport)
        .await
        .expect("direct connection")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `router` on a fresh loopback port until `stop` is cancelled; returns the address.
pub async fn serve_http(router: axum::Router, stop: &CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signal = stop.clone().cancelled_owned();
    // Without TCP_NODELAY each small response waits on a delayed ACK (40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await;
    });
    addr
}

/// A profile for `idp` with a fresh callback port.
pub fn profile(idp: &idp::FakeIdp, secret: Option<&str>) -> Arc<Profile> {
    let redirect = Url::parse(&format!("http://127.0.0.1:{}/auth/callback", free_port())).unwrap();
    Arc::new(Profile {
        client_secret: secret.map(Secret::new),
        login_timeout: Duration::from_secs(10),
        ..Profile::new("default", Some(&idp.issuer()), &idp.client_id(), redirect)
    })
}

/// Single-backend settings, as the drop-in builds them.
pub fn settings(backend_url: &str, profile: Option<Arc<Profile>>, cache_dir: &Path) -> Settings {
    Settings {
        cache_dir: cache_dir.to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::DropIn,
        backends: vec![Backend::new(
            "default",
            Url::parse(backend_url).unwrap(),
            profile,
            None,
        )],
        gateway: Default::default(),
    }
}

/// A gateway backend prefixed by its name, as a `backends.NAME` entry without `prefix`.
pub fn prefixed(name: &str, url: &str, profile: Option<&Arc<Profile>>) -> Backend {
    Backend::new(name, Url::parse(url).unwrap(), profile.cloned(), Some(name))
}

/// `profile` under another name (a second `oidc_profiles` entry for the same provider).
pub fn named(profile: Arc<Profile>, name: &str) -> Arc<Profile> {
    let mut p = (*profile).clone();
    p.name = name.into();
    Arc::new(p)
}

/// A provider, a backend that accepts only its tokens, and a directory for the token cache.
pub async fn oidc_backend(config: idp::IdpConfig) -> (idp::FakeIdp, backend::TestBackend, TempDir) {
    let idp = idp::FakeIdp::start(config).await;
    let backend = backend::TestBackend::start(backend::BackendConfig::oidc(
        "secured",
        idp.issuer(),
        idp.jwks_uri(),
    ))
    .await;
    (idp, backend, tempfile::tempdir().unwrap())
}

/// Everything the stdio client received unprompted.
#[derive(Debug, Default)]
pub struct ClientEvents {
    pub progress: Vec<ProgressNotificationParam>,
    pub logs: Vec<LoggingMessageNotificationParam>,
    pub updated: Vec<ResourceUpdatedNotificationParam>,
    pub tools_changed: u32,
    pub sampling_requests: Vec<CreateMessageRequestParams>,
    /// Elicitation requests, as JSON.
    pub elicitations: Vec<Value>,
    /// Sampling requests the backend gave up on (the client saw their cancellation).
    pub sampling_cancelled: u32,
}

/// The desktop client stand-in: answers sampling, elicitation and roots, records notifications.
#[derive(Clone)]
pub struct TestClient {
    pub info: ClientConfig,
    pub events: Arc<Mutex<ClientEvents>>,
}

impl TestClient {
    pub fn new(protocol_version: &str) -> Self {
        let info: ClientConfig = serde_json::from_value(json!({
            "protocolVersion": protocol_version,
            "capabilities": {
                "sampling": {},
                "elicitation": {},
                "roots": { "listChanged": true }
            },
            "clientInfo": { "name": "test-desktop", "version": "9.9.9" }
        }))
        .unwrap();
        Self {
            info,
            events: Arc::default(),
        }
    }
}

impl ClientHandler for TestClient {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, rmcp::ErrorData> {
        let text = serde_json::to_value(&params.messages)
            .ok()
            .and_then(|m| m[0]["content"]["text"].as_str().map(str::to_owned))
            .unwrap_or_default();
        self.events.lock().unwrap().sampling_requests.push(params);
        if text == "hang" {
            // Answer only by being cancelled.
            context.ct.cancelled().await;
            self.events.lock().unwrap().sampling_cancelled += 1;
            return Err(rmcp::ErrorData::internal_error("cancelled", None));
        }
        Ok(serde_json::from_value(json!({
            "model": "test-model",
            "role": "assistant",
            "content": { "type": "text", "text": format!("pong: {text}") },
            "stopReason": "endTurn"
        }))
        .unwrap())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        self.events
            .lock()
            .unwrap()
            .elicitations
            .push(serde_json::to_value(&request).unwrap());
        Ok(
            serde_json::from_value(json!({"action": "accept", "content": {"answer": "42"}}))
                .unwrap(),
        )
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, rmcp::ErrorData> {
        Ok(serde_json::from_value(json!({
            "roots": [{"uri": "file:///work/a", "name": "a"}, {"uri": "file:///work/b"}]
        }))
        .unwrap())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.events.lock().unwrap().progress.push(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.events.lock().unwrap().logs.push(params);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.events.lock().unwrap().updated.push(params);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.events.lock().unwrap().tools_changed += 1;
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// The real proxy loop on two OS pipes, as a desktop client starts the command: the client's
/// ends of the pipes and the loop's task.
pub struct Pipes {
    /// The proxy's stdin: dropping it is EOF.
    pub to_proxy: pipe::Sender,
    /// The proxy's stdout.
    pub from_proxy: pipe::Receiver,
    /// `proxy::serve`, until stdin closes or `shutdown` fires.
    pub proxy: JoinHandle<Result<(), RunError>>,
}

/// Starts `proxy::serve` on two fresh pipes; it stops at stdin EOF or when `shutdown` fires.
pub fn serve_on_pipes(
    settings: Settings,
    browser: Arc<dyn Browser>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Pipes {
    let (to_proxy, proxy_in) = pipe::pipe().unwrap();
    let (proxy_out, from_proxy) = pipe::pipe().unwrap();
    let proxy = tokio::spawn(proxy::serve(
        settings, browser, proxy_in, proxy_out, shutdown,
    ));
    Pipes {
        to_proxy,
        from_proxy,
        proxy,
    }
}

/// A stdio MCP client of the proxy, in-process or a child process.
pub type Client = RunningService<RoleClient, TestClient>;

/// Calls `tool` with JSON arguments, failing the test if no answer comes within `limit`.
pub async fn call_within(
    client: &Client,
    limit: Duration,
    tool: &str,
    args: Value,
) -> Result<Value, String> {
    let params = serde_json::from_value(json!({"name": tool, "arguments": args})).unwrap();
    match tokio::time::timeout(limit, client.call_tool(params)).await {
        Ok(Ok(result)) => Ok(serde_json::to_value(result).unwrap()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => panic!("{tool}: no answer within {limit:?}"),
    }
}

/// The real proxy loop, driven over two OS pipes by a [`TestClient`].
pub struct Harness {
    pub client: Client,
    pub events: Arc<Mutex<ClientEvents>>,
    pub proxy: JoinHandle<Result<(), RunError>>,
}

/// Starts the proxy on pipes and connects a client speaking `protocol_version`.
pub async fn start(
    settings: Settings,
    browser: Arc<dyn Browser>,
    protocol_version: &str,
) -> Harness {
    try_start(settings, browser, protocol_version)
        .await
        .expect("client initialize")
}

/// The error a client sees first with `settings`: at `initialize`, or else at a call of
/// `tool` (a backend that fails to connect may be left out of the start and fail its call).
pub async fn first_error(settings: Settings, browser: Arc<dyn Browser>, tool: &str) -> String {
    match try_start(settings, browser, "2025-11-25").await {
        Err(error) => error,
        Ok(h) => {
            let error = h
                .call(tool, json!({}))
                .await
                .expect_err("the call should fail")
                .to_string();
            h.stop().await.unwrap();
            error
        }
    }
}

/// Like [`start`], returning the initialize error instead of panicking.
pub async fn try_start(
    settings: Settings,
    browser: Arc<dyn Browser>,
    protocol_version: &str,
) -> Result<Harness, String> {
    let pipes = serve_on_pipes(settings, browser, std::future::pending());
    let client = TestClient::new(protocol_version);
    let events = Arc::clone(&client.events);
    let client = client
        .serve((pipes.from_proxy, pipes.to_proxy))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Harness {
        client,
        events,
        proxy: pipes.proxy,
    })
}

impl Harness {
    /// Closes the client's side (stdin EOF for the proxy) and waits for the proxy to finish.
    pub async fn stop(self) -> Result<(), RunError> {
        let _ = self.client.cancel().await;
        tokio::time::timeout(Duration::from_secs(10), self.proxy)
            .await
            .expect("proxy exits after stdin closes")
            .expect("proxy task")
    }

    /// Calls a tool with JSON arguments.
    pub async fn call(&self, name: &str, args: Value) -> Result<Value, rmcp::ServiceError> {
        let params = serde_json::from_value(json!({"name": name, "arguments": args})).unwrap();
        let result = self.client.call_tool(params).await?;
        Ok(serde_json::to_value(result).unwrap())
    }
}

/// The text of a tool result's first content item.
pub fn first_text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `check` holds (polling), or panics after `seconds`.
pub async fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
