//! An in-process MCP server ("backend") for integration tests.
//!
//! [`TestBackend`] serves MCP over Streamable HTTP at `http://127.0.0.1:PORT/mcp`
//! with rmcp's [`StreamableHttpService`] and an in-memory session manager. When
//! [`BackendConfig::jwks_uri`] is set, every request must carry
//! `Authorization: Bearer <JWT>`: an RS256 token signed by a key from the
//! issuer's JWKS, with the configured `iss`, an `aud` that contains the
//! configured audience, an `exp` that has not passed (no leeway), and a `jti`
//! (or, failing that, a token) that has not been revoked. Anything else gets a
//! `401` with `WWW-Authenticate: Bearer error="invalid_token", ...`.
//!
//! It can also be the protected resource of the MCP authorization spec: with
//! [`BackendConfig::resource_metadata`] it publishes RFC 9728 metadata naming its
//! authorization server, points every `401` at that document (`resource_metadata=` in
//! `WWW-Authenticate`), and accepts only tokens whose `aud` is its own resource URL, so a
//! client must find the provider on its own and ask for a token meant for this server
//! (RFC 8707). With [`BackendConfig::required_scopes`] (changeable at run time with
//! [`TestBackend::set_required_scopes`], to make a client step up mid-session) a token that
//! lacks a scope gets `403` with `error="insufficient_scope"` and the scopes needed. The stats
//! record the `aud` of every token presented and the `aud` and `scope` of the last one
//! accepted, so a test can check that no backend ever saw a token meant for another.
//!
//! The MCP surface is deliberately broad (paginated tools, every content kind,
//! progress, sampling, elicitation, roots, cancellation, list-changed, logging,
//! resources with subscriptions, a prompt, completions) so that a proxy in
//! front of it can be exercised end to end. [`TestBackend::stats`] reports what
//! the backend observed.

// Sampling, roots, logging and resource subscriptions are deprecated by SEP-2577
// in rmcp 3.x, yet they are part of the 2025 protocol revisions served here.
#![allow(deprecated)]
// The whole surface of the fake is API for the tests: a knob that no test turns yet is not dead.

use std::{
    borrow::Cow,
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{
    Engine as _, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::Jwk};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult,
        CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock, CreateMessageRequest,
        CreateMessageRequestParams, ElicitRequest, ElicitRequestParams, ElicitationSchema,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, JsonObject,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        LoggingLevel, LoggingMessageNotificationParam, MetaObject, PaginatedRequestParams,
        ProgressNotificationParam, Prompt, PromptArgument, PromptMessage, ProtocolVersion,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Reference, Resource,
        ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam, Role,
        SamplingMessage, ServerCapabilities, ServerConfig, ServerRequest, SetLevelRequestParams,
        SubscribeRequestParams, Tool, ToolAnnotations, UnsubscribeRequestParams, object,
    },
    service::{PeerRequestOptions, RequestContext},
    transport::streamable_http_server::{
        SessionId, SessionManager, StreamableHttpServerConfig, StreamableHttpService,
        session::local::LocalSessionManager,
    },
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::sse_front::{self, SseFront};

/// How a [`TestBackend`] identifies itself and which callers it accepts.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// `serverInfo.name` reported by `initialize` (default `"test-backend"`).
    pub name: String,
    /// Where the issuer publishes its signing keys. `None` turns authentication
    /// off entirely (an open backend).
    pub jwks_uri: Option<String>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Value that the `aud` claim must contain (default `"mcp-backend"`). Not used when
    /// [`BackendConfig::resource_metadata`] is set: [`ResourceMetadata::audience`] rules then.
    pub audience: String,
    /// Headers that must be present with exactly these values; otherwise `403`.
    pub required_headers: Vec<(String, String)>,
    /// Page size of `tools/list`, `resources/list`, `resources/templates/list`
    /// and `prompts/list` (default 4, so that tool pagination is exercised).
    pub page_size: usize,
    /// RFC 9728 protected resource metadata: `None` (default) publishes none, and tokens
    /// need [`BackendConfig::audience`]. `Some` publishes it, names it in every `401`, and
    /// makes the required audience [`ResourceMetadata::audience`]: by default the resource
    /// itself; [`BackendConfig::audience`] is then not used.
    pub resource_metadata: Option<ResourceMetadata>,
    /// Scopes every token's `scope` claim must contain (when tokens are checked at all, that
    /// is with [`BackendConfig::jwks_uri`]); a token that lacks one gets `403`
    /// `insufficient_scope`. Default none. [`TestBackend::set_required_scopes`] changes them
    /// at run time.
    pub required_scopes: Vec<String>,
    /// Also (or, at `/mcp`, only) an HTTP+SSE server whose event stream is at this path (see
    /// [`super::sse_front`]). Default none.
    pub http_sse: Option<String>,
}

/// What a backend publishes as an OAuth protected resource (RFC 9728), and so what it asks of
/// tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// `resource`: the identifier clients ask tokens for (RFC 8707). `None` (default): the
    /// backend's own MCP URL, `http://127.0.0.1:PORT/mcp`, known once it is bound.
    pub resource: Option<String>,
    /// `authorization_servers`. `None` (default): `[BackendConfig::issuer]`.
    pub authorization_servers: Option<Vec<String>>,
    /// `scopes_supported`. `None` (default): the scopes required at the time of the request,
    /// the member left out when there are none.
    pub scopes_supported: Option<Vec<String>>,
    /// Where the document is served. Default [`MetadataLocation::PathInserted`].
    pub location: MetadataLocation,
    /// Name the document in `WWW-Authenticate` (`resource_metadata="..."`). `false`: clients
    /// must find it at a well-known address on their own. Default `true`.
    pub advertise: bool,
    /// The value tokens' `aud` must contain. `None` (default): the resource. `Some`: this value
    /// (a server that publishes metadata but checks an older, provider-chosen audience).
    pub audience: Option<String>,
    /// A `GET` without a token is `404` with no challenge: only MCP's POSTs are challenged (as
    /// some servers do). Default `false`.
    pub challenge_posts_only: bool,
}

impl Default for ResourceMetadata {
    fn default() -> Self {
        Self {
            resource: None,
            authorization_servers: None,
            scopes_supported: None,
            location: MetadataLocation::PathInserted,
            advertise: true,
            audience: None,
            challenge_posts_only: false,
        }
    }
}

/// Where a backend serves its protected resource metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetadataLocation {
    /// `/.well-known/oauth-protected-resource/mcp`: the well-known prefix inserted before the
    /// resource's path, as RFC 9728 section 3.1 builds it.
    #[default]
    PathInserted,
    /// `/.well-known/oauth-protected-resource`, at the root only: the address clients fall back
    /// to.
    Root,
    /// `/custom/metadata/location.json`: at no well-known address, so that clients find it
    /// only where the `401` names it.
    Elsewhere,
}

impl MetadataLocation {
    /// The path of the document on the backend.
    pub fn path(self) -> &'static str {
        match self {
            Self::PathInserted => "/.well-known/oauth-protected-resource/mcp",
            Self::Root => "/.well-known/oauth-protected-resource",
            Self::Elsewhere => "/custom/metadata/location.json",
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::open("test-backend")
    }
}

impl BackendConfig {
    /// A backend that accepts every request without a token.
    pub fn open(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            jwks_uri: None,
            issuer: String::new(),
            audience: "mcp-backend".to_owned(),
            required_headers: Vec::new(),
            page_size: 4,
            resource_metadata: None,
            required_scopes: Vec::new(),
            http_sse: None,
        }
    }

    /// A backend that requires tokens from `issuer`, verified against the keys
    /// served at `jwks_uri`, with audience `"mcp-backend"`.
    pub fn oidc(
        name: impl Into<String>,
        issuer: impl Into<String>,
        jwks_uri: impl Into<String>,
    ) -> Self {
        Self {
            jwks_uri: Some(jwks_uri.into()),
            issuer: issuer.into(),
            ..Self::open(name)
        }
    }

    /// Replaces the required audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Adds a header that every request must carry with exactly this value.
    pub fn with_required_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.required_headers.push((name.into(), value.into()));
        self
    }

    /// Serves HTTP+SSE with its event stream at `path` too; at `/mcp`, instead of Streamable
    /// HTTP.
    pub fn with_http_sse(mut self, path: impl Into<String>) -> Self {
        self.http_sse = Some(path.into());
        self
    }

    /// Replaces the list page size (0 is treated as 1).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// Publishes protected resource metadata (RFC 9728), which also makes the resource the
    /// required audience unless `metadata.audience` says otherwise.
    pub fn with_resource_metadata(mut self, metadata: ResourceMetadata) -> Self {
        self.resource_metadata = Some(metadata);
        self
    }
}

/// What a [`TestBackend`] has observed so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendStats {
    /// Number of `401 Unauthorized` responses served.
    pub unauthorized: u32,
    /// Number of HTTP requests that passed authentication (all requests on an
    /// open backend).
    pub authorized_requests: u32,
    /// Distinct `sub` claims of accepted tokens, in order of first appearance.
    pub subjects: Vec<String>,
    /// Number of `slow` tool calls that observed cancellation.
    pub cancelled_calls: u32,
    /// Level of the last `logging/setLevel` request (e.g. `"debug"`).
    pub log_level: Option<String>,
    /// Resource URIs currently subscribed to.
    pub subscriptions: Vec<String>,
    /// Number of MCP sessions handed out (`Mcp-Session-Id`s issued).
    pub sessions_created: u32,
    /// Progress token of the last `progress` tool call that carried one.
    pub last_progress_token_seen: Option<Value>,
    /// Number of times the JWKS was fetched (the keys are cached between).
    pub jwks_fetches: u32,
    /// Number of `403 Forbidden` responses served for missing required headers.
    pub forbidden: u32,
    /// `Mcp-Session-Id`s the client ended with an accepted HTTP `DELETE`, in order.
    pub deleted_sessions: Vec<String>,
    /// Number of `403 Forbidden` responses served for a token without a required scope.
    pub insufficient_scope: u32,
    /// `aud` of the last token accepted (authenticated, and carrying the required scopes).
    pub last_audience: Option<Value>,
    /// `scope` claim of the last token accepted (`None` if it had none).
    pub last_scope: Option<String>,
    /// Distinct `aud` claims of every bearer token presented, accepted or not, in order of
    /// first appearance (read without verifying the token): which tokens reached this server.
    pub presented_audiences: Vec<Value>,
    /// Number of protected resource metadata requests served.
    pub resource_metadata_fetches: u32,
    /// Every `_meta` key a tool call carried, in order of first appearance: what of the
    /// proxy's own bookkeeping would leak to a server.
    pub meta_keys: Vec<String>,
}

/// Claims of an accepted access token. The auth layer stores them in the HTTP
/// request's extensions, where MCP handlers find them through
/// `RequestContext::extensions` → [`http::request::Parts`] → `extensions`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TokenClaims {
    /// Subject.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience: a string or an array of strings.
    pub aud: Value,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Token id, used for revocation.
    #[serde(default)]
    pub jti: Option<String>,
    /// Granted scopes, space-separated (RFC 9068).
    #[serde(default)]
    pub scope: Option<String>,
}

/// A running in-process MCP server; stops on [`TestBackend::shutdown`] or drop.
pub struct TestBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    sse: Arc<SseFront>,
    sessions: Arc<LocalSessionManager>,
    stop: CancellationToken,
    runtime: tokio::runtime::Handle,
    server: tokio::task::JoinHandle<()>,
}

impl TestBackend {
    /// Binds `127.0.0.1:0` and starts serving MCP at `/mcp`.
    ///
    /// # Panics
    /// If the listener cannot be bound (fixture setup).
    pub async fn start(config: BackendConfig) -> TestBackend {
        Self::start_on(config, 0).await
    }

    /// Like [`TestBackend::start`], on a chosen port (a backend that comes up later where the
    /// gateway expects it).
    pub async fn start_on(config: BackendConfig, port: u16) -> TestBackend {
        // Bound first: the default resource identifier is the backend's own URL.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the test backend");
        let addr = listener.local_addr().expect("test backend address");
        let shared = Arc::new(Shared::new(config, addr));
        let sessions = Arc::new(LocalSessionManager::default());
        let stop = CancellationToken::new();
        let handler = BackendHandler {
            shared: shared.clone(),
        };
        let sse = Arc::new(SseFront::default());
        let mut router = Router::new();
        if let Some(path) = &shared.config.http_sse {
            router = router.merge(sse_front::routes(path, handler.clone(), sse.clone()));
        }
        if shared.config.http_sse.as_deref() != Some("/mcp") {
            let service = StreamableHttpService::new(
                move || Ok(handler.clone()),
                sessions.clone(),
                StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
            );
            router = router.route_service("/mcp", service);
        }
        let mut router = router.layer(middleware::from_fn_with_state(shared.clone(), gatekeeper));
        // Added after the gatekeeper layer: the metadata is public.
        if let Some(metadata) = &shared.config.resource_metadata {
            let state = shared.clone();
            // Any other well-known document is absent (404), as on a real server, rather
            // than behind the gatekeeper (401): a client probing the addresses RFC 9728 and
            // RFC 8414 define must see which exist.
            router = router
                .route(
                    metadata.location.path(),
                    get(move || protected_resource_metadata(state.clone())),
                )
                .route("/.well-known/{*rest}", get(StatusCode::NOT_FOUND));
        }
        // Without TCP_NODELAY each streamed response waits on a delayed ACK (40 ms on Linux).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let signal = stop.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await
            {
                eprintln!("test backend stopped with an error: {error}");
            }
        });
        TestBackend {
            addr,
            shared,
            sse,
            sessions,
            stop,
            runtime: tokio::runtime::Handle::current(),
            server,
        }
    }

    /// Its HTTP+SSE front (see [`BackendConfig::with_http_sse`]).
    pub fn sse_front(&self) -> &SseFront {
        &self.sse
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Dies at once, as a crashed server would: the listener and every open connection
    /// (SSE streams included) are dropped without a goodbye.
    pub fn kill(&self) {
        self.stop.cancel();
        self.server.abort();
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// A snapshot of what the backend has observed.
    pub fn stats(&self) -> BackendStats {
        self.shared.state().stats.clone()
    }

    /// The resource identifier tokens must be meant for when the backend publishes protected
    /// resource metadata: [`ResourceMetadata::resource`], or the MCP URL.
    pub fn resource(&self) -> String {
        self.shared.resource()
    }

    /// Replaces the scopes every token must carry, from the next request on: raising them
    /// mid-session makes a client step up (`403 insufficient_scope`).
    pub fn set_required_scopes(&self, scopes: &[&str]) {
        self.shared.state().required_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Replaces the authorization servers its metadata names (a backend that changes its mind,
    /// or was taken over, between two runs).
    pub fn set_authorization_servers(&self, servers: &[&str]) {
        self.shared.state().authorization_servers =
            Some(servers.iter().map(|s| (*s).to_owned()).collect());
    }

    /// Makes its metadata document answer `status` (a server error, say) instead of itself;
    /// `None` serves it again.
    pub fn set_metadata_status(&self, status: Option<StatusCode>) {
        self.shared.state().metadata_status = status;
    }

    /// Refuses every token for want of the required scopes, even one that holds them (a
    /// backend that checks scopes wrongly).
    pub fn refuse_scopes_anyway(&self) {
        self.shared.state().refuse_scopes = true;
    }

    /// Every `Mcp-Session-Id` handed out and not expired, sorted.
    pub fn sessions(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.state().known_sessions.iter().cloned().collect();
        ids.sort();
        ids
    }

    /// Rejects (with `401`) every token seen so far, by `jti` or, for tokens
    /// without one, by the token itself.
    pub fn revoke_seen_tokens(&self) {
        let mut state = self.shared.state();
        let seen: Vec<String> = state.seen_tokens.iter().cloned().collect();
        state.revoked_tokens.extend(seen);
    }

    /// Forgets every MCP session: a later request that carries one of their
    /// `Mcp-Session-Id`s gets `404`, so the client must initialize again.
    pub fn expire_sessions(&self) {
        let ids: Vec<String> = {
            let mut state = self.shared.state();
            let ids: Vec<String> = state.known_sessions.drain().collect();
            state.expired_sessions.extend(ids.iter().cloned());
            ids
        };
        let sessions = self.sessions.clone();
        self.runtime.spawn(async move {
            for id in ids {
                let id: SessionId = id.into();
                if let Err(error) = sessions.close_session(&id).await {
                    eprintln!("test backend could not close session {id}: {error}");
                }
            }
        });
    }

    /// Stops accepting connections and ends every open session and stream.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------
// Shared state and token validation
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Inner {
    stats: BackendStats,
    /// Revocation keys (`jti:<id>` or `token:<jwt>`) of accepted tokens.
    seen_tokens: HashSet<String>,
    revoked_tokens: HashSet<String>,
    known_sessions: HashSet<String>,
    expired_sessions: HashSet<String>,
    dynamic_tools: Vec<String>,
    /// [`BackendConfig::required_scopes`], as changed since.
    required_scopes: Vec<String>,
    /// [`ResourceMetadata::authorization_servers`], as changed since.
    authorization_servers: Option<Vec<String>>,
    /// What the metadata document answers instead of itself, if set.
    metadata_status: Option<StatusCode>,
    /// Refuse tokens for want of the required scopes even when they hold them.
    refuse_scopes: bool,
}

type KeySet = Vec<(Option<String>, DecodingKey)>;

struct Shared {
    config: BackendConfig,
    /// `http://127.0.0.1:PORT`.
    origin: String,
    http: reqwest::Client,
    /// Cached JWKS: `(kid, key)` pairs, refetched when a token names an unknown kid.
    keys: tokio::sync::RwLock<KeySet>,
    state: Mutex<Inner>,
}

/// Why a request was not authenticated.
enum AuthError {
    /// No bearer token: `401`.
    Missing,
    /// The token is not acceptable: `401`.
    Invalid(String),
    /// The keys could not be fetched: `503`.
    Unavailable(String),
}

impl Shared {
    fn new(config: BackendConfig, addr: SocketAddr) -> Self {
        let state = Inner {
            required_scopes: config.required_scopes.clone(),
            authorization_servers: config
                .resource_metadata
                .as_ref()
                .and_then(|m| m.authorization_servers.clone()),
            ..Inner::default()
        };
        Self {
            config,
            origin: format!("http://{addr}"),
            http: reqwest::Client::new(),
            keys: tokio::sync::RwLock::new(Vec::new()),
            state: Mutex::new(state),
        }
    }

    fn resource(&self) -> String {
        self.config
            .resource_metadata
            .as_ref()
            .and_then(|m| m.resource.clone())
            .unwrap_or_else(|| format!("{}/mcp", self.origin))
    }

    fn metadata_url(&self) -> Option<String> {
        let metadata = self.config.resource_metadata.as_ref()?;
        Some(format!("{}{}", self.origin, metadata.location.path()))
    }

    /// The value a token's `aud` must contain; see [`BackendConfig::resource_metadata`].
    fn audience(&self) -> String {
        match &self.config.resource_metadata {
            None => self.config.audience.clone(),
            Some(metadata) => metadata.audience.clone().unwrap_or_else(|| self.resource()),
        }
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<TokenClaims, AuthError> {
        let token = bearer_token(headers).ok_or(AuthError::Missing)?;
        if let Some(aud) = unverified_audience(token) {
            let mut state = self.state();
            if !state.stats.presented_audiences.contains(&aud) {
                state.stats.presented_audiences.push(aud);
            }
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| AuthError::Invalid(format!("malformed token: {error}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!(
                "unsupported signing algorithm {:?}",
                header.alg
            )));
        }
        let key = self.decoding_key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[self.audience()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation)
            .map_err(|error| AuthError::Invalid(describe_jwt_error(error.kind())))?
            .claims;
        let revocation_key = match &claims.jti {
            Some(jti) => format!("jti:{jti}"),
            None => format!("token:{token}"),
        };
        let mut state = self.state();
        if state.revoked_tokens.contains(&revocation_key) {
            return Err(AuthError::Invalid("token has been revoked".to_owned()));
        }
        state.seen_tokens.insert(revocation_key);
        Ok(claims)
    }

    async fn decoding_key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        if let Some(key) = find_key(&self.keys.read().await, kid) {
            return Ok(key);
        }
        let fresh = self.fetch_keys().await?;
        let key = find_key(&fresh, kid);
        *self.keys.write().await = fresh;
        key.ok_or_else(|| match kid {
            Some(kid) => AuthError::Invalid(format!("no signing key with kid {kid:?}")),
            None => AuthError::Invalid("token has no kid and the JWKS is ambiguous".to_owned()),
        })
    }

    async fn fetch_keys(&self) -> Result<KeySet, AuthError> {
        #[derive(Deserialize)]
        struct RawJwks {
            keys: Vec<Value>,
        }
        let Some(uri) = self.config.jwks_uri.as_deref() else {
            return Ok(Vec::new());
        };
        self.state().stats.jwks_fetches += 1;
        let unavailable = |error: reqwest::Error| AuthError::Unavailable(format!("JWKS: {error}"));
        let jwks: RawJwks = self
            .http
            .get(uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        // Keys of kinds that jsonwebtoken does not know are skipped, not fatal.
        Ok(jwks
            .keys
            .into_iter()
            .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((jwk.common.key_id, key))
            })
            .collect())
    }

    fn record_authorized(&self, claims: Option<&TokenClaims>) {
        let mut state = self.state();
        state.stats.authorized_requests += 1;
        if let Some(claims) = claims {
            if !state.stats.subjects.contains(&claims.sub) {
                state.stats.subjects.push(claims.sub.clone());
            }
            state.stats.last_audience = Some(claims.aud.clone());
            state.stats.last_scope = claims.scope.clone();
        }
    }

    /// The first required scope the token lacks, with all the required ones.
    fn missing_scope(&self, claims: &TokenClaims) -> Option<(String, Vec<String>)> {
        let (required, refuse) = {
            let state = self.state();
            (state.required_scopes.clone(), state.refuse_scopes)
        };
        if refuse && let Some(first) = required.first() {
            // A backend misconfigured to want the scope in another form: it never sees it.
            return Some((first.clone(), required));
        }
        let granted: HashSet<&str> = claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let missing = required.iter().find(|s| !granted.contains(s.as_str()))?;
        Some((missing.clone(), required))
    }

    /// A `WWW-Authenticate` Bearer challenge (RFC 6750 section 3) with these parameters, plus
    /// `resource_metadata` (RFC 9728 section 5.1) when the backend advertises its metadata.
    fn challenge(&self, params: &[(&str, &str)]) -> Option<HeaderValue> {
        let advertised = self
            .config
            .resource_metadata
            .as_ref()
            .filter(|m| m.advertise)
            .and_then(|_| self.metadata_url());
        let params: Vec<String> = params
            .iter()
            .map(|(name, value)| (*name, *value))
            .chain(advertised.as_deref().map(|url| ("resource_metadata", url)))
            .map(|(name, value)| format!("{name}=\"{}\"", value.replace(['"', '\\'], "'")))
            .collect();
        let value = if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        };
        HeaderValue::from_str(&value).ok()
    }

    /// `401`. `description` is why the token was rejected; `None`: there was no token, and a
    /// backend with resource metadata then answers as RFC 6750 section 3.1 says for a
    /// request without authentication (no error code), where one without keeps the older
    /// `invalid_token` "missing bearer token".
    fn unauthorized(&self, description: Option<&str>) -> Response {
        let required = {
            let mut state = self.state();
            state.stats.unauthorized += 1;
            state.required_scopes.join(" ")
        };
        let description = match description {
            Some(description) => Some(description),
            None if self.config.resource_metadata.is_some() => None,
            None => Some("missing bearer token"),
        };
        let mut params = Vec::new();
        if let Some(description) = description {
            params.push(("error", "invalid_token"));
            params.push(("error_description", description));
        }
        if !required.is_empty() {
            params.push(("scope", required.as_str()));
        }
        let body = match description {
            Some(description) => {
                json!({"error": "invalid_token", "error_description": description})
            }
            None => json!({"error": "unauthorized", "error_description": "missing bearer token"}),
        };
        let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        if let Some(value) = self.challenge(&params) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// `403` for a valid token without a required scope (RFC 6750 section 3.1): the challenge
    /// names every scope the request needs, so that a client can ask for them (step-up).
    fn insufficient_scope(&self, missing: &str, required: &[String]) -> Response {
        self.state().stats.insufficient_scope += 1;
        let description = format!("the token lacks scope {missing}");
        let required = required.join(" ");
        let params = [
            ("error", "insufficient_scope"),
            ("scope", required.as_str()),
            ("error_description", description.as_str()),
        ];
        let body = json!({"error": "insufficient_scope", "error_description": description});
        let mut response = (StatusCode::FORBIDDEN, Json(body)).into_response();
        if let Some(value) = self.challenge(&params) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// RFC 9728 section 3.2: what the backend publishes about itself as a protected resource.
async fn protected_resource_metadata(shared: Arc<Shared>) -> Response {
    let Some(metadata) = &shared.config.resource_metadata else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (required, servers, status) = {
        let mut state = shared.state();
        state.stats.resource_metadata_fetches += 1;
        (
            state.required_scopes.clone(),
            state.authorization_servers.clone(),
            state.metadata_status,
        )
    };
    if let Some(status) = status {
        return status.into_response();
    }
    let servers = servers.unwrap_or_else(|| vec![shared.config.issuer.clone()]);
    let mut document = json!({
        "resource": shared.resource(),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
    });
    let scopes = metadata.scopes_supported.clone().unwrap_or(required);
    if !scopes.is_empty() || metadata.scopes_supported.is_some() {
        document["scopes_supported"] = json!(scopes);
    }
    Json(document).into_response()
}

/// The `aud` claim of a JWT, read without verifying anything.
fn unverified_audience(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("aud").cloned()
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn find_key(keys: &[(Option<String>, DecodingKey)], kid: Option<&str>) -> Option<DecodingKey> {
    let found = match kid {
        Some(kid) => keys
            .iter()
            .find(|(key_id, _)| key_id.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    };
    found.map(|(_, key)| key.clone())
}

fn describe_jwt_error(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token has expired".to_owned(),
        ErrorKind::InvalidIssuer => "unexpected issuer".to_owned(),
        ErrorKind::InvalidAudience => "audience does not include this server".to_owned(),
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        other => format!("invalid token: {other:?}"),
    }
}

/// HTTP middleware in front of the MCP service: authentication, required
/// headers, expired sessions, and session bookkeeping.
async fn gatekeeper(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    if shared.config.jwks_uri.is_some() {
        match shared.authenticate(request.headers()).await {
            Ok(claims) => {
                if let Some((missing, required)) = shared.missing_scope(&claims) {
                    return shared.insufficient_scope(&missing, &required);
                }
                shared.record_authorized(Some(&claims));
                request.extensions_mut().insert(claims);
            }
            Err(AuthError::Missing)
                if request.method() == axum::http::Method::GET
                    && shared
                        .config
                        .resource_metadata
                        .as_ref()
                        .is_some_and(|m| m.challenge_posts_only) =>
            {
                return StatusCode::NOT_FOUND.into_response();
            }
            Err(AuthError::Missing) => return shared.unauthorized(None),
            Err(AuthError::Invalid(description)) => {
                return shared.unauthorized(Some(&description));
            }
            Err(AuthError::Unavailable(description)) => {
                let body =
                    json!({"error": "temporarily_unavailable", "error_description": description});
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
        }
    } else {
        shared.record_authorized(None);
    }

    for (name, expected) in &shared.config.required_headers {
        let actual = request
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok());
        if actual != Some(expected.as_str()) {
            shared.state().stats.forbidden += 1;
            let body = json!({
                "error": "forbidden",
                "error_description": format!("header {name} is missing or has the wrong value"),
            });
            return (StatusCode::FORBIDDEN, Json(body)).into_response();
        }
    }

    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    if let Some(session) = session
        && shared.state().expired_sessions.contains(session)
    {
        return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
    }
    let deleting = session
        .filter(|_| request.method() == Method::DELETE)
        .map(str::to_owned);

    let response = next.run(request).await;
    if let Some(session) = deleting
        && response.status().is_success()
    {
        shared.state().stats.deleted_sessions.push(session);
    }
    if let Some(session) = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        let mut state = shared.state();
        if state.known_sessions.insert(session.to_owned()) {
            state.stats.sessions_created += 1;
        }
    }
    response
}

// ---------------------------------------------------------------------------
// MCP handler
// ---------------------------------------------------------------------------

const SUPPORTED_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const ITEM_TEMPLATE: &str = "mem://items/{id}";

#[derive(Clone)]
struct BackendHandler {
    shared: Arc<Shared>,
}

fn tool(name: &'static str, description: &'static str, input_schema: Value) -> Tool {
    Tool::new(name, description, object(input_schema))
}

fn string_props(names: &[&str]) -> Value {
    let properties: JsonObject = names
        .iter()
        .map(|name| ((*name).to_owned(), json!({"type": "string"})))
        .collect();
    json!({"type": "object", "properties": properties, "required": names})
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

fn static_tools() -> Vec<Tool> {
    let adder = tool(
        "add",
        "Adds two numbers",
        json!({
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        }),
    )
    .with_title("Adder")
    .with_raw_output_schema(Arc::new(object(json!({
        "type": "object",
        "properties": {"sum": {"type": "number"}},
        "required": ["sum"],
    }))))
    .with_annotations(ToolAnnotations::new().read_only(true))
    .with_meta(MetaObject::from(object(json!({"example.com/flag": true}))));
    vec![
        tool("whoami", "Reports the caller's token claims", no_args()),
        tool(
            "echo",
            "Returns its text unchanged",
            string_props(&["text"]),
        ),
        adder,
        tool("fail", "Always reports a tool error", no_args()),
        tool(
            "mixed",
            "Returns one content block of every kind",
            no_args(),
        ),
        tool(
            "progress",
            "Reports progress for a number of steps",
            json!({"type": "object", "properties": {
                "steps": {"type": "integer", "minimum": 0},
                "interval_ms": {"type": "integer", "minimum": 0},
                "padding": {"type": "integer", "minimum": 0},
            }}),
        ),
        tool(
            "sample",
            "Asks the client's model to complete a prompt",
            string_props(&["prompt"]),
        ),
        tool(
            "elicit",
            "Asks the user for an answer",
            string_props(&["message"]),
        ),
        tool("roots", "Lists the client's roots", no_args()),
        tool(
            "slow",
            "Waits (30 s by default) unless cancelled",
            json!({"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}}}),
        ),
        tool(
            "add_tool",
            "Adds an echo tool with the given name (with `later_ms`: answers at once, and adds \
             it and says so that much later, on the backend's own initiative)",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "later_ms": {"type": "number", "minimum": 0},
                    "times": {"type": "number", "minimum": 1},
                    "new_scope_each_time": {"type": "boolean"}
                },
                "required": ["name"]
            }),
        ),
        tool(
            "log",
            "Sends a log message notification",
            json!({
                "type": "object",
                "properties": {
                    "level": {"type": "string", "enum": ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]},
                    "message": {"type": "string"},
                },
                "required": ["level", "message"],
            }),
        ),
        tool(
            "touch",
            "Notifies subscribers that a resource changed",
            string_props(&["uri"]),
        ),
    ]
}

fn dynamic_tool(name: &str) -> Tool {
    Tool::new(
        name.to_owned(),
        "Dynamically added tool that echoes its text",
        object(string_props(&["text"])),
    )
}

/// Returns one page of `items` and the cursor of the next page, if any.
fn paginate<T: Clone>(
    kind: &str,
    items: &[T],
    request: Option<PaginatedRequestParams>,
    page_size: usize,
) -> Result<(Vec<T>, Option<String>), McpError> {
    let start = match request.and_then(|request| request.cursor) {
        None => 0,
        Some(cursor) => URL_SAFE_NO_PAD
            .decode(&cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.strip_prefix(kind)?
                    .strip_prefix(':')?
                    .parse::<usize>()
                    .ok()
            })
            .filter(|start| *start <= items.len())
            .ok_or_else(|| McpError::invalid_params(format!("invalid cursor {cursor:?}"), None))?,
    };
    let end = start.saturating_add(page_size.max(1)).min(items.len());
    let next = (end < items.len()).then(|| URL_SAFE_NO_PAD.encode(format!("{kind}:{end}")));
    Ok((items[start..end].to_vec(), next))
}

fn args(request: &CallToolRequestParams) -> JsonObject {
    request.arguments.clone().unwrap_or_default()
}

fn str_arg(args: &JsonObject, name: &str) -> Result<String, McpError> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            McpError::invalid_params(format!("argument {name:?} must be a string"), None)
        })
}

fn num_arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a serde_json::Number, McpError> {
    match args.get(name) {
        Some(Value::Number(number)) => Ok(number),
        _ => Err(McpError::invalid_params(
            format!("argument {name:?} must be a number"),
            None,
        )),
    }
}

fn text(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

fn tool_error(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

/// A 44-byte WAV header announcing zero samples of 8 kHz mono 8-bit audio.
fn empty_wav() -> Vec<u8> {
    let mut wav = Vec::with_capacity(44);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&36u32.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    wav.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&0u32.to_le_bytes());
    wav
}

fn filter_prefix(candidates: &[&str], prefix: &str) -> Vec<String> {
    candidates
        .iter()
        .filter(|candidate| candidate.starts_with(prefix))
        .map(|candidate| (*candidate).to_owned())
        .collect()
}

impl BackendHandler {
    fn name(&self) -> &str {
        &self.shared.config.name
    }

    fn all_tools(&self) -> Vec<Tool> {
        let mut tools = static_tools();
        let dynamic = self.shared.state().dynamic_tools.clone();
        tools.extend(dynamic.iter().map(|name| dynamic_tool(name)));
        tools
    }

    fn greeting(&self) -> String {
        format!("hello from {}", self.name())
    }

    fn whoami(context: &RequestContext<RoleServer>) -> CallToolResponse {
        let claims = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<TokenClaims>());
        let (summary, structured) = match claims {
            Some(claims) => (
                claims.sub.clone(),
                json!({"sub": claims.sub, "aud": claims.aud, "iss": claims.iss}),
            ),
            None => (
                "anonymous".to_owned(),
                json!({"sub": null, "aud": null, "iss": null}),
            ),
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(summary)]);
        result.structured_content = Some(structured);
        result.into()
    }

    fn add(args: &JsonObject) -> Result<CallToolResponse, McpError> {
        let (a, b) = (num_arg(args, "a")?, num_arg(args, "b")?);
        let sum = match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a.checked_add(b).map(Value::from),
            _ => None,
        };
        let sum = match sum {
            Some(sum) => sum,
            None => json!(a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN)),
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(sum.to_string())]);
        result.structured_content = Some(json!({"sum": sum}));
        Ok(result.into())
    }

    fn mixed(&self) -> CallToolResponse {
        CallToolResult::success(vec![
            ContentBlock::text("mixed content"),
            ContentBlock::image(TINY_PNG, "image/png"),
            ContentBlock::audio(STANDARD.encode(empty_wav()), "audio/wav"),
            ContentBlock::resource_link(
                Resource::new("mem://greeting", "greeting").with_mime_type("text/plain"),
            ),
            ContentBlock::embedded_text("mem://greeting", self.greeting()),
        ])
        .into()
    }

    async fn progress(
        &self,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let steps = match args.get("steps") {
            None => 3,
            Some(value) => value
                .as_u64()
                .filter(|steps| *steps <= 1000)
                .ok_or_else(|| {
                    McpError::invalid_params("steps must be an integer in 0..=1000", None)
                })?,
        };
        let interval_ms = args
            .get("interval_ms")
            .and_then(Value::as_u64)
            .unwrap_or(20);
        // Long messages make each notification slower to pass on: races show.
        let padding = args
            .get("padding")
            .and_then(Value::as_u64)
            .map_or(0, |p| p.min(1 << 20) as usize);
        let token = context.meta.get_progress_token();
        if let Some(token) = &token {
            self.shared.state().stats.last_progress_token_seen = serde_json::to_value(token).ok();
        }
        for step in 1..=steps {
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), step as f64)
                    .with_total(steps as f64)
                    .with_message(format!("step {step} of {steps}{}", ".".repeat(padding)));
                if let Err(error) = context.peer.notify_progress(param).await {
                    return Ok(tool_error(format!("could not send progress: {error}")));
                }
            }
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
        Ok(text(format!("done {steps}")))
    }

    async fn sample(
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let prompt = str_arg(args, "prompt")?;
        let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 256);
        // With `timeout_ms`, give up on the client after that long: rmcp then sends it
        // `notifications/cancelled` for the sampling request.
        let timeout = args
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis);
        let outcome = match timeout {
            None => context.peer.create_message(params).await,
            Some(timeout) => {
                let request =
                    ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
                match context
                    .peer
                    .send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
                    .await
                {
                    Ok(handle) => match handle.await_response().await {
                        Ok(ClientResult::CreateMessageResult(result)) => Ok(*result),
                        Ok(_) => Err(rmcp::ServiceError::UnexpectedResponse),
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error),
                }
            }
        };
        match outcome {
            Ok(result) => {
                let reply = result
                    .message
                    .content
                    .first()
                    .and_then(|block| block.as_text())
                    .map(|content| content.text.clone())
                    .unwrap_or_default();
                Ok(text(format!("sampled: {reply}")))
            }
            Err(error) => Ok(tool_error(format!("sampling failed: {error}"))),
        }
    }

    async fn elicit(
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let message = str_arg(args, "message")?;
        let requested_schema = ElicitationSchema::builder()
            .required_string("answer")
            .build()
            .map_err(|error| McpError::internal_error(error, None))?;
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(
            ElicitRequestParams::FormElicitationParams {
                meta: None,
                message,
                requested_schema,
            },
        ));
        match context.peer.send_request(request).await {
            Ok(ClientResult::ElicitResult(result)) => {
                let action = serde_json::to_value(&result.action)
                    .ok()
                    .and_then(|action| action.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let content = result.content.unwrap_or(Value::Null);
                Ok(text(format!("elicited: {action} {content}")))
            }
            Ok(other) => Ok(tool_error(format!(
                "unexpected elicitation reply: {other:?}"
            ))),
            Err(error) => Ok(tool_error(format!("elicitation failed: {error}"))),
        }
    }

    async fn roots(context: &RequestContext<RoleServer>) -> CallToolResponse {
        match context.peer.list_roots().await {
            Ok(result) => {
                let uris: Vec<&str> = result.roots.iter().map(|root| root.uri.as_str()).collect();
                text(uris.join(","))
            }
            Err(error) => tool_error(format!("roots/list failed: {error}")),
        }
    }

    async fn slow(
        &self,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let seconds = match args.get("seconds") {
            None => 30.0,
            Some(value) => value
                .as_f64()
                .ok_or_else(|| McpError::invalid_params("seconds must be a number", None))?,
        };
        let duration = Duration::try_from_secs_f64(seconds)
            .map_err(|error| McpError::invalid_params(format!("seconds: {error}"), None))?;
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(text("slow done")),
            () = context.ct.cancelled() => {
                self.shared.state().stats.cancelled_calls += 1;
                Err(McpError::internal_error("slow call cancelled", None))
            }
        }
    }

    /// `list_changed` that no request of the client's is waiting on: the client may sit idle
    /// when it comes.
    /// With `times`, it does so that many times, `ms` apart (tools `name-1`, `name-2`, ...);
    /// with `new_scope_each_time`, it first demands a scope never asked for before
    /// (`scope-1`, `scope-2`, ...): a backend that tries to make its client sign in again and
    /// again.
    fn add_tool_later(
        &self,
        args: &JsonObject,
        name: String,
        ms: u64,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let times = args.get("times").and_then(Value::as_u64).unwrap_or(1);
        let rescope = args
            .get("new_scope_each_time")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (shared, peer) = (self.shared.clone(), context.peer.clone());
        tokio::spawn(async move {
            for i in 1..=times {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                {
                    let mut state = shared.state();
                    if rescope {
                        state.required_scopes = vec![format!("scope-{i}")];
                    }
                    let tool = if times == 1 {
                        name.clone()
                    } else {
                        format!("{name}-{i}")
                    };
                    state.dynamic_tools.push(tool);
                }
                let _ = peer.notify_tool_list_changed().await;
            }
        });
        Ok(text("later"))
    }

    async fn add_tool(
        &self,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = str_arg(args, "name")?;
        if let Some(ms) = args.get("later_ms").and_then(Value::as_u64) {
            return self.add_tool_later(args, name, ms, context);
        }
        if self.all_tools().iter().any(|tool| tool.name == name) {
            return Ok(tool_error(format!("tool {name:?} already exists")));
        }
        self.shared.state().dynamic_tools.push(name);
        if let Err(error) = context.peer.notify_tool_list_changed().await {
            return Ok(tool_error(format!("could not notify: {error}")));
        }
        Ok(text("added"))
    }

    async fn log(
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let level_name = str_arg(args, "level")?;
        let message = str_arg(args, "message")?;
        let level: LoggingLevel = serde_json::from_value(Value::String(level_name.clone()))
            .map_err(|_| {
                McpError::invalid_params(format!("unknown log level {level_name:?}"), None)
            })?;
        let param = LoggingMessageNotificationParam::new(level, json!({"message": message}))
            .with_logger("test-backend");
        match context.peer.notify_logging_message(param).await {
            Ok(()) => Ok(text("logged")),
            Err(error) => Ok(tool_error(format!("could not log: {error}"))),
        }
    }

    async fn touch(
        &self,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let uri = str_arg(args, "uri")?;
        let subscribed = self.shared.state().stats.subscriptions.contains(&uri);
        if !subscribed {
            return Ok(text("not subscribed"));
        }
        match context
            .peer
            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
            .await
        {
            Ok(()) => Ok(text("touched")),
            Err(error) => Ok(tool_error(format!("could not notify: {error}"))),
        }
    }
}

impl ServerHandler for BackendHandler {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_completions()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities)
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .with_server_info(Implementation::new(self.name(), "1.2.3").with_title("Test Backend"))
            .with_instructions(format!("Instructions from {}.", self.name()))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(SUPPORTED_VERSIONS)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = self.all_tools();
        let (page, next) = paginate("tools", &tools, request, self.shared.config.page_size)?;
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = args(&request);
        {
            let mut state = self.shared.state();
            for key in context.meta.keys() {
                if !state.stats.meta_keys.contains(key) {
                    state.stats.meta_keys.push(key.clone());
                }
            }
        }
        match request.name.as_ref() {
            "whoami" => Ok(Self::whoami(&context)),
            "echo" => Ok(text(str_arg(&args, "text")?)),
            "add" => Self::add(&args),
            "fail" => Ok(tool_error("the fail tool always fails")),
            "mixed" => Ok(self.mixed()),
            "progress" => self.progress(&args, &context).await,
            "sample" => Self::sample(&args, &context).await,
            "elicit" => Self::elicit(&args, &context).await,
            "roots" => Ok(Self::roots(&context).await),
            "slow" => self.slow(&args, &context).await,
            "add_tool" => self.add_tool(&args, &context).await,
            "log" => Self::log(&args, &context).await,
            "touch" => self.touch(&args, &context).await,
            name if self
                .shared
                .state()
                .dynamic_tools
                .iter()
                .any(|tool| tool == name) =>
            {
                Ok(text(str_arg(&args, "text")?))
            }
            name => Err(McpError::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let resources = [
            Resource::new("mem://greeting", "greeting")
                .with_description("A greeting from this backend")
                .with_mime_type("text/plain"),
            Resource::new("mem://blob", "blob")
                .with_description("Four bytes: 0, 1, 2, 3")
                .with_mime_type("application/octet-stream")
                .with_size(4),
        ];
        let (page, next) = paginate(
            "resources",
            &resources,
            request,
            self.shared.config.page_size,
        )?;
        let mut result = ListResourcesResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let templates = [ResourceTemplate::new(ITEM_TEMPLATE, "item")
            .with_description("An item by id")
            .with_mime_type("text/plain")];
        let (page, next) = paginate(
            "templates",
            &templates,
            request,
            self.shared.config.page_size,
        )?;
        let mut result = ListResourceTemplatesResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let contents = match uri.as_str() {
            "mem://greeting" => ResourceContents::text(self.greeting(), &uri),
            "mem://blob" => ResourceContents::blob(STANDARD.encode([0u8, 1, 2, 3]), &uri)
                .with_mime_type("application/octet-stream"),
            _ => match uri.strip_prefix("mem://items/").filter(|id| !id.is_empty()) {
                Some(id) => ResourceContents::text(format!("item {id}"), &uri),
                None => {
                    return Err(McpError::resource_not_found(
                        format!("resource not found: {uri}"),
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let mut state = self.shared.state();
        if !state.stats.subscriptions.contains(&request.uri) {
            state.stats.subscriptions.push(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.shared
            .state()
            .stats
            .subscriptions
            .retain(|uri| *uri != request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let prompts = [Prompt::new(
            "greet",
            Some("Greets someone by name"),
            Some(vec![
                PromptArgument::new("name")
                    .with_description("Who to greet")
                    .with_required(true),
            ]),
        )];
        let (page, next) = paginate("prompts", &prompts, request, self.shared.config.page_size)?;
        let mut result = ListPromptsResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if request.name != "greet" {
            return Err(McpError::invalid_params(
                format!("unknown prompt {:?}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| McpError::invalid_params("argument \"name\" is required", None))?;
        let mut result = GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Hello, {name}!"),
        )]);
        result.description = Some("Greets someone by name".to_owned());
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let argument = &request.argument;
        let candidates: &[&str] = match &request.r#ref {
            Reference::Prompt(prompt) if prompt.name == "greet" && argument.name == "name" => {
                &["alice", "albert", "bob"]
            }
            Reference::Resource(resource)
                if resource.uri == ITEM_TEMPLATE && argument.name == "id" =>
            {
                &["1", "2", "3"]
            }
            _ => &[],
        };
        let completion =
            CompletionInfo::with_all_values(filter_prefix(candidates, &argument.value))
                .map_err(|error| McpError::internal_error(error, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let level = serde_json::to_value(request.level)
            .ok()
            .and_then(|level| level.as_str().map(str::to_owned));
        self.shared.state().stats.log_level = level;
        Ok(())
    }
}
