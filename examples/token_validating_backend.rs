//! A remote MCP server that only serves callers holding a valid OIDC access token.
//!
//! It is the kind of backend `authful-mcp-proxy` is meant to sit in front of:
//! MCP over Streamable HTTP at `/mcp`, every request checked for
//! `Authorization: Bearer <JWT>` signed by one of the issuer's keys (found via
//! `{OIDC_ISSUER_URL}/.well-known/openid-configuration` → `jwks_uri`), with the
//! right `iss`, an unexpired `exp` and, when configured, the right `aud`.
//! Bad tokens get `401` with a `WWW-Authenticate: Bearer error="invalid_token"`
//! challenge. One tool, `whoami`, returns the caller's claims.
//!
//! ```text
//! OIDC_ISSUER_URL=https://login.example.com/realms/demo \
//! OIDC_AUDIENCE=mcp-backend \
//! cargo run --example token_validating_backend
//! ```
//!
//! `OIDC_ISSUER_URL` is required; without `OIDC_AUDIENCE` the audience is not
//! checked; `MCP_HOST` and `MCP_PORT` default to `127.0.0.1` and `8000`.
//! Logs go to stderr (`RUST_LOG` filters them); tokens are never logged.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation, jwk::Jwk};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, object,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Map, Value, json};
use tokio::sync::RwLock;

/// The issuer's signing keys as `(kid, key)` pairs.
type Keys = Vec<(Option<String>, DecodingKey)>;

/// Verified claims, handed from the auth layer to the MCP handler.
#[derive(Clone)]
struct Claims(Map<String, Value>);

/// Checks bearer tokens against the issuer's published keys.
#[derive(Clone)]
struct Verifier {
    issuer: String,
    audience: Option<String>,
    jwks_uri: String,
    http: reqwest::Client,
    /// Cached keys, refetched when a token names a kid that is not among them.
    keys: Arc<RwLock<Keys>>,
}

impl Verifier {
    async fn discover(issuer: String, audience: Option<String>) -> Result<Self, String> {
        let http = reqwest::Client::new();
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Value = get_json(&http, &url).await?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or("no jwks_uri in discovery")?;
        let keys = Arc::new(RwLock::new(fetch_keys(&http, jwks_uri).await?));
        let jwks_uri = jwks_uri.to_owned();
        Ok(Self {
            issuer,
            audience,
            jwks_uri,
            http,
            keys,
        })
    }

    async fn verify(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err("symmetric signatures are not accepted".to_owned());
        }
        let kid = header.kid.as_deref();
        let mut key = find_key(&self.keys.read().await, kid);
        if key.is_none() {
            let fresh = fetch_keys(&self.http, &self.jwks_uri).await?;
            key = find_key(&fresh, kid);
            *self.keys.write().await = fresh;
        }
        let key = key.ok_or_else(|| format!("no signing key matches kid {kid:?}"))?;

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map(|data| Claims(data.claims))
            .map_err(|e| format!("token rejected: {e}"))
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let fetch = async { http.get(url).send().await?.error_for_status()?.json().await };
    fetch
        .await
        .map_err(|e: reqwest::Error| format!("GET {url}: {e}"))
}

async fn fetch_keys(http: &reqwest::Client, jwks_uri: &str) -> Result<Keys, String> {
    let jwks = get_json(http, jwks_uri).await?;
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    // Keys that jsonwebtoken cannot use are skipped rather than fatal.
    Ok(keys
        .into_iter()
        .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
        .filter_map(|jwk| Some((jwk.common.key_id.clone(), DecodingKey::from_jwk(&jwk).ok()?)))
        .collect())
}

fn find_key(keys: &[(Option<String>, DecodingKey)], kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|(id, _)| id.as_deref() == Some(kid))
            .map(|(_, key)| key.clone()),
        None if keys.len() == 1 => Some(keys[0].1.clone()),
        None => None,
    }
}

/// Rejects requests without a valid bearer token; passes the claims on otherwise.
async fn require_token(
    State(verifier): State<Verifier>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok()?.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let verdict = match token {
        Some(token) => verifier.verify(token).await,
        None => Err("missing bearer token".to_owned()),
    };
    match verdict {
        Ok(claims) => {
            let subject = claims.0.get("sub").and_then(Value::as_str).unwrap_or("?");
            tracing::debug!(subject, method = %request.method(), "token accepted");
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        Err(reason) => {
            tracing::info!(%reason, "rejecting request");
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                reason.replace(['"', '\\'], "'")
            );
            let body = Json(json!({"error": "invalid_token", "error_description": reason}));
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                body,
            )
                .into_response()
        }
    }
}

/// The MCP side: a single `whoami` tool.
#[derive(Clone)]
struct Whoami;

impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "token-validating-backend",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Call whoami to see the claims of the token you presented.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let schema = object(json!({"type": "object", "properties": {}}));
        let whoami = Tool::new(
            "whoami",
            "Returns the claims of the caller's access token",
            schema,
        );
        Ok(ListToolsResult::with_all_items(vec![whoami]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != "whoami" {
            return Err(McpError::invalid_params(
                format!("unknown tool {}", request.name),
                None,
            ));
        }
        // rmcp hands the HTTP request parts to handlers; the auth layer left the claims there.
        let claims = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Claims>())
            .ok_or_else(|| McpError::internal_error("no verified claims on this request", None))?;
        Ok(CallToolResult::structured(Value::Object(claims.0.clone())).into())
    }
}

async fn run() -> Result<(), String> {
    let issuer = std::env::var("OIDC_ISSUER_URL")
        .map_err(|_| "OIDC_ISSUER_URL must name the issuer whose tokens to accept")?;
    let audience = std::env::var("OIDC_AUDIENCE")
        .ok()
        .filter(|a| !a.is_empty());
    let host = std::env::var("MCP_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("MCP_PORT").unwrap_or_else(|_| "8000".to_owned());
    let port: u16 = port
        .parse()
        .map_err(|_| format!("MCP_PORT is not a port: {port:?}"))?;

    let verifier = Verifier::discover(issuer.clone(), audience.clone())
        .await
        .map_err(|e| format!("OIDC discovery for {issuer} failed: {e}"))?;
    tracing::info!(%issuer, jwks_uri = %verifier.jwks_uri, ?audience, "loaded the issuer's keys");

    let mut config = StreamableHttpServerConfig::default();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        config = config.disable_allowed_hosts(); // the default allow-list is loopback only
    }
    let sessions = Arc::new(LocalSessionManager::default());
    let app = Router::new()
        .route_service(
            "/mcp",
            StreamableHttpService::new(|| Ok(Whoami), sessions, config),
        )
        .layer(middleware::from_fn_with_state(verifier, require_token));

    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
    tracing::info!("serving MCP at http://{host}:{port}/mcp");
    let shutdown = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rmcp=warn".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
    if let Err(message) = run().await {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
