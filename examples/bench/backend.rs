//! The bench's own MCP backend, in-process, so that what the proxies add is all that differs.
//!
//! rmcp's [`StreamableHttpService`] under axum on `127.0.0.1:0`, as a real Rust MCP server
//! would be built. It runs on a runtime and threads of its own, as a server process would:
//! the bench's client side ("direct", the pipes of the stdio peers) never waits for a worker
//! thread that is busy serving, nor the other way round. Three things the integration tests'
//! `TestBackend` does not have:
//!
//! - `TCP_NODELAY` on every accepted connection. Without it a small answer written in two
//!   pieces (headers, then the SSE event) waits for the client's delayed ACK: 40 ms on Linux,
//!   which once showed up as a "44 ms cached-token call".
//! - Any number of tools: `echo` plus generated `tool_NNNN`s, all of which echo their
//!   `message`, for the gateway's 20 × 500-tool scale scenario. The list comes whole in one
//!   page and is built once.
//! - Bearer validation that costs what a real server's costs and no more: an RS256 JWT checked
//!   against the identity provider's JWKS (fetched once at start), with `iss`, `aud` and `exp`.
//!   Anything else gets `401`.
//!
//! `echo` takes `{"message": "..."}`, as `server-everything`'s does, so every backend is
//! called with the same arguments.

use std::{
    borrow::Cow,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
        Tool, object,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The revisions it speaks: those with `initialize`, which every peer under test uses.
const VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// Which tokens a backend accepts.
#[derive(Clone)]
pub struct TokenCheck {
    /// Required `iss`.
    pub issuer: String,
    /// Where the issuer publishes its keys.
    pub jwks_uri: String,
    /// Required `aud` (the FakeIdp's default is `mcp-backend`).
    pub audience: String,
}

/// A running backend; stops when dropped.
pub struct BenchBackend {
    addr: SocketAddr,
    stop: CancellationToken,
    /// How long every answer is held back, in milliseconds (a slow server, or one far away).
    delay_ms: Arc<AtomicU64>,
}

impl BenchBackend {
    /// Serves `name` with `tools` tools (`echo` and `tools - 1` generated ones); with `check`,
    /// only requests with a valid bearer token are served.
    pub async fn start(
        name: &str,
        tools: usize,
        check: Option<TokenCheck>,
    ) -> Result<Self, String> {
        let keys = match &check {
            Some(check) => Some(Arc::new(Keys::fetch(check).await?)),
            None => None,
        };
        let handler = Handler {
            name: name.to_owned(),
            tools: Arc::new(tool_list(tools)),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|e| format!("backend {name}: cannot bind 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("backend {name}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("backend-{name}"))
            .enable_all()
            .build()
            .map_err(|e| format!("backend {name}: no runtime: {e}"))?;
        let stop = CancellationToken::new();
        let serving = stop.clone();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = Arc::clone(&delay_ms);
        std::thread::Builder::new()
            .name(format!("backend-{name}"))
            .spawn(move || runtime.block_on(serve(listener, handler, keys, delay, serving)))
            .map_err(|e| format!("backend {name}: no thread: {e}"))?;
        Ok(Self {
            addr,
            stop,
            delay_ms,
        })
    }

    /// Holds every answer back by `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

/// Serves MCP at `/mcp` on `listener` until `stop` is cancelled.
async fn serve(
    listener: std::net::TcpListener,
    handler: Handler,
    keys: Option<Arc<Keys>>,
    delay_ms: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
    );
    let mut router = Router::new().route_service("/mcp", service);
    if let Some(keys) = keys {
        router = router.layer(middleware::from_fn_with_state(keys, require_token));
    }
    router = router.layer(middleware::from_fn_with_state(delay_ms, hold_back));
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

/// Holds the request back by the backend's delay, if it has one.
async fn hold_back(
    State(delay_ms): State<Arc<AtomicU64>>,
    request: Request,
    next: Next,
) -> Response {
    let delay = delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    next.run(request).await
}

impl Drop for BenchBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `echo`, then `tool_0001`, `tool_0002`, ... up to `count` tools in all.
fn tool_list(count: usize) -> Vec<Tool> {
    let schema = |what: &str| {
        object(json!({
            "type": "object",
            "properties": {"message": {"type": "string", "description": what}},
            "required": ["message"],
        }))
    };
    let mut tools = vec![Tool::new(
        "echo",
        "Returns its message unchanged",
        schema("The text to return"),
    )];
    tools.extend((1..count).map(|n| {
        Tool::new(
            format!("tool_{n:04}"),
            format!("Generated tool {n} of {count}: returns its message unchanged"),
            schema("The text to return"),
        )
    }));
    tools
}

#[derive(Clone)]
struct Handler {
    name: String,
    tools: Arc<Vec<Tool>>,
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .with_server_info(Implementation::new(self.name.clone(), "1.0.0"))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if !self.tools.iter().any(|tool| tool.name == request.name) {
            return Err(McpError::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        }
        let message = request
            .arguments
            .as_ref()
            .and_then(|args| args.get("message"))
            .and_then(Value::as_str)
            .ok_or_else(|| McpError::invalid_params("\"message\" must be a string", None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(message)]).into())
    }
}

/// The issuer's signing keys and the rules a token must meet.
struct Keys {
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
}

impl Keys {
    async fn fetch(check: &TokenCheck) -> Result<Self, String> {
        let fetch_error = |e: reqwest::Error| format!("backend: JWKS {}: {e}", check.jwks_uri);
        let set: JwkSet = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(fetch_error)?
            .get(&check.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch_error)?
            .json()
            .await
            .map_err(fetch_error)?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[&check.issuer]);
        validation.set_audience(&[&check.audience]);
        Ok(Self { keys, validation })
    }

    fn accepts(&self, token: &str) -> bool {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        let key = self
            .keys
            .iter()
            .find(|(kid, _)| header.kid.is_none() || *kid == header.kid);
        key.is_some_and(|(_, key)| {
            jsonwebtoken::decode::<Value>(token, key, &self.validation).is_ok()
        })
    }
}

/// `401` unless the request carries a valid bearer token.
async fn require_token(State(keys): State<Arc<Keys>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|token| keys.accepts(token)) {
        next.run(request).await
    } else {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")];
        (StatusCode::UNAUTHORIZED, challenge).into_response()
    }
}
