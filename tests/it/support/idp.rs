//! In-process fake OpenID Connect provider for integration tests.
//!
//! [`FakeIdp::start`] binds an axum server on `127.0.0.1:0` that implements
//! discovery, JWKS, the authorization endpoint (authorization code + PKCE S256)
//! and the token endpoint (authorization code and rotating refresh tokens, with
//! reuse detection). Tests steer it through the methods on [`FakeIdp`] and
//! inspect what happened through [`FakeIdp::stats`].
//!
//! This module is self-contained: it does not depend on the crate under test.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use url::Url;

/// `kid` of the signing key published in `/jwks` (and reused by forged ID tokens).
pub const KID: &str = "test-key-1";
/// Subject (`sub`) of the user that logs in through `/authorize` unless changed with [`FakeIdp::set_subject`].
pub const DEFAULT_SUBJECT: &str = "user-123";
/// `email` claim of the ID tokens.
pub const USER_EMAIL: &str = "user@example.com";
/// `name` claim of the ID tokens.
pub const USER_NAME: &str = "Test User";
/// Lifetime of ID tokens.
pub const ID_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// PEM of the private key whose public half is published in `/jwks`.
pub const TEST_RSA_PEM: &str = include_str!("keys/test_rsa.pem");
/// Public JWK (JSON) of [`TEST_RSA_PEM`].
pub const TEST_RSA_JWK_JSON: &str = include_str!("keys/test_rsa.jwk.json");
/// PEM of an unrelated private key, never published (used for forged tokens).
pub const OTHER_RSA_PEM: &str = include_str!("keys/other_rsa.pem");
/// PEM of the key the provider signs with after [`FakeIdp::rotate_signing_key`].
pub const ROTATED_RSA_PEM: &str = include_str!("keys/rotated_rsa.pem");
/// Public JWK (JSON) of [`ROTATED_RSA_PEM`], kid `test-key-2`.
pub const ROTATED_RSA_JWK_JSON: &str = include_str!("keys/rotated_rsa.jwk.json");
/// `kid` of the rotated key.
pub const ROTATED_KID: &str = "test-key-2";

struct Keys {
    signing: EncodingKey,
    foreign: EncodingKey,
    rotated: EncodingKey,
    jwk: Value,
    rotated_jwk: Value,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    signing: EncodingKey::from_rsa_pem(TEST_RSA_PEM.as_bytes()).expect("parse test_rsa.pem"),
    foreign: EncodingKey::from_rsa_pem(OTHER_RSA_PEM.as_bytes()).expect("parse other_rsa.pem"),
    rotated: EncodingKey::from_rsa_pem(ROTATED_RSA_PEM.as_bytes()).expect("parse rotated_rsa.pem"),
    jwk: serde_json::from_str(TEST_RSA_JWK_JSON).expect("parse test_rsa.jwk.json"),
    rotated_jwk: serde_json::from_str(ROTATED_RSA_JWK_JSON).expect("parse rotated_rsa.jwk.json"),
});

/// Configuration of a [`FakeIdp`].
#[derive(Clone, Debug)]
pub struct IdpConfig {
    /// The only client id the provider knows. Default `"test-client"`.
    pub client_id: String,
    /// `None`: public client (PKCE only, token endpoint auth `none`).
    /// `Some`: confidential client that must authenticate with this secret.
    pub client_secret: Option<String>,
    /// Lifetime of issued access tokens (`exp` and `expires_in`). Default 3600 s.
    pub access_token_ttl: Duration,
    /// `aud` claim of access tokens. Default `"mcp-backend"`.
    pub audience: String,
    /// Advertised `token_endpoint_auth_methods_supported`; the token endpoint also
    /// rejects (401 `invalid_client`) a method that is not listed here.
    /// Default `["client_secret_basic", "client_secret_post", "none"]`.
    pub token_auth_methods: Vec<String>,
    /// Whether token responses carry a refresh token. Default `true`.
    pub refresh_tokens: bool,
}

impl Default for IdpConfig {
    fn default() -> Self {
        Self {
            client_id: "test-client".to_owned(),
            client_secret: None,
            access_token_ttl: Duration::from_secs(3600),
            audience: "mcp-backend".to_owned(),
            token_auth_methods: vec![
                "client_secret_basic".to_owned(),
                "client_secret_post".to_owned(),
                "none".to_owned(),
            ],
            refresh_tokens: true,
        }
    }
}

/// What `GET /authorize` does with a valid request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorizeBehavior {
    /// The user approves: `302` to `redirect_uri?code=...&state=...`.
    #[default]
    Approve,
    /// The user denies: `302` to `redirect_uri?error=access_denied&error_description=...&state=...`.
    Deny,
    /// The user never finishes: `200 text/html` "Waiting" page, no redirect.
    Hang,
}

/// Counters of what the provider has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdpStats {
    /// Every `GET /authorize` request, valid or not.
    pub authorize_requests: u32,
    /// Successful `authorization_code` grants.
    pub code_exchanges: u32,
    /// Successful `refresh_token` grants.
    pub refreshes: u32,
    /// Failed `refresh_token` grants (any error, including client authentication).
    pub refresh_failures: u32,
    /// Client authentication method presented on the latest token request that
    /// carried any: `"basic"`, `"post"` or `"none"` (recorded even if it failed).
    pub last_client_auth: Option<String>,
    /// `GET /jwks` requests.
    pub jwks_fetches: u32,
    /// `GET /.well-known/openid-configuration` requests.
    pub discoveries: u32,
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    sub: String,
}

struct RefreshRecord {
    family: u64,
    used: bool,
    client_id: String,
    sub: String,
    scope: String,
}

struct State {
    issuer: String,
    config: IdpConfig,
    behavior: AuthorizeBehavior,
    subject: String,
    stats: IdpStats,
    codes: HashMap<String, PendingCode>,
    refresh_tokens: HashMap<String, RefreshRecord>,
    revoked_families: HashSet<u64>,
    next_family: u64,
    /// Seconds the provider's clock is ahead (negative: behind) of the machine's.
    clock_offset: i64,
    /// Faults the next token requests get, in order.
    token_faults: std::collections::VecDeque<TokenFault>,
    id_token_fault: Option<IdTokenFault>,
    /// `/jwks` answers 404.
    jwks_broken: bool,
    /// Signs with the rotated key and publishes only that one.
    rotated: bool,
    /// Members that replace those of the discovery document.
    discovery_overrides: serde_json::Map<String, Value>,
    /// The token endpoint answers `307` to this URL.
    token_redirect: Option<String>,
    /// `iss` added to authorization responses (RFC 9207).
    response_iss: Option<String>,
}

/// What a token request gets instead of being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// 503 with the OAuth error `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// 500 with an HTML page (a proxy in front of the provider, say).
    HtmlServerError,
    /// Accepted and never answered.
    Stall,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake OpenID Connect provider. Stops on [`FakeIdp::shutdown`] or drop.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Shared,
    shutdown_tx: Mutex<Option<oneshot::Sender<()>>>,
}

impl FakeIdp {
    /// Binds `127.0.0.1:0` and serves the provider on the current tokio runtime.
    pub async fn start(config: IdpConfig) -> FakeIdp {
        LazyLock::force(&KEYS);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake IdP");
        let addr = listener.local_addr().expect("fake IdP local addr");
        let state: Shared = Arc::new(Mutex::new(State {
            issuer: format!("http://{addr}"),
            config,
            behavior: AuthorizeBehavior::Approve,
            subject: DEFAULT_SUBJECT.to_owned(),
            stats: IdpStats::default(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            revoked_families: HashSet::new(),
            next_family: 0,
            clock_offset: 0,
            token_faults: Default::default(),
            id_token_fault: None,
            jwks_broken: false,
            rotated: false,
            discovery_overrides: Default::default(),
            token_redirect: None,
            response_iss: None,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        FakeIdp {
            addr,
            state,
            shutdown_tx: Mutex::new(Some(tx)),
        }
    }

    /// Issuer URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// JWKS URL (`{issuer}/jwks`).
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// Client id the provider accepts.
    pub fn client_id(&self) -> String {
        lock(&self.state).config.client_id.clone()
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        lock(&self.state).config.access_token_ttl = ttl;
    }

    /// What `/authorize` does with valid requests from now on.
    pub fn set_authorize_behavior(&self, b: AuthorizeBehavior) {
        lock(&self.state).behavior = b;
    }

    /// Subject of the user who logs in through `/authorize` from now on.
    pub fn set_subject(&self, sub: &str) {
        lock(&self.state).subject = sub.to_owned();
    }

    /// Sets how far the provider's clock is ahead of the machine's (negative: behind).
    pub fn set_clock_offset(&self, seconds: i64) {
        lock(&self.state).clock_offset = seconds;
    }

    /// Makes `/jwks` answer 404 (or serve the keys again).
    pub fn set_jwks_broken(&self, broken: bool) {
        lock(&self.state).jwks_broken = broken;
    }

    /// Every ID token issued from now on has this defect.
    pub fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        lock(&self.state).id_token_fault = fault;
    }

    /// The next token requests get these faults, one each, before any is served.
    pub fn fail_token_requests(&self, faults: &[TokenFault]) {
        lock(&self.state)
            .token_faults
            .extend(faults.iter().copied());
    }

    /// Replaces (or, with `null`, removes) a member of the discovery document: a hostile or
    /// misconfigured provider.
    pub fn set_discovery(&self, key: &str, value: Value) {
        lock(&self.state)
            .discovery_overrides
            .insert(key.to_owned(), value);
    }

    /// From now on, the token endpoint answers `307 Temporary Redirect` to `to`.
    pub fn redirect_token_requests(&self, to: Option<String>) {
        lock(&self.state).token_redirect = to;
    }

    /// From now on, authorization responses carry `iss` (RFC 9207).
    pub fn set_response_iss(&self, iss: Option<String>) {
        lock(&self.state).response_iss = iss;
    }

    /// Rotates the signing key: tokens are signed with the rotated key (kid `test-key-2`) and
    /// `/jwks` publishes only that one.
    pub fn rotate_signing_key(&self) {
        lock(&self.state).rotated = true;
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> IdpStats {
        lock(&self.state).stats.clone()
    }

    /// Makes every refresh token issued so far invalid (`invalid_grant` on use).
    pub fn revoke_refresh_tokens(&self) {
        let mut st = lock(&self.state);
        let families: Vec<u64> = st.refresh_tokens.values().map(|r| r.family).collect();
        st.revoked_families.extend(families);
    }

    /// Signals the server to stop (graceful shutdown). Idempotent; also done on drop.
    pub fn shutdown(&self) {
        if let Some(tx) = self
            .shutdown_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Signs with the provider's current key: the original one, or the rotated one.
fn sign_current(rotated: bool, claims: &Value) -> String {
    if !rotated {
        return sign(&KEYS.signing, claims);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(ROTATED_KID.to_owned());
    jsonwebtoken::encode(&header, claims, &KEYS.rotated).expect("sign JWT")
}

fn sign(key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign JWT")
}

struct AccessParams {
    issuer: String,
    sub: String,
    audience: String,
    client_id: String,
    scope: String,
    iat: i64,
    exp: i64,
}

fn access_claims(p: &AccessParams) -> Value {
    json!({
        "iss": p.issuer,
        "sub": p.sub,
        "aud": p.audience,
        "client_id": p.client_id,
        "scope": p.scope,
        "iat": p.iat,
        "exp": p.exp,
        "jti": random_token(),
    })
}

struct IdParams<'a> {
    issuer: &'a str,
    sub: &'a str,
    client_id: &'a str,
    nonce: Option<&'a str>,
    access_token: &'a str,
    iat: i64,
    fault: Option<IdTokenFault>,
    /// Signed with the rotated key.
    rotated: bool,
}

/// A defect in the ID tokens the provider issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdTokenFault {
    /// Signed with a key the provider does not publish.
    ForeignSignature,
    /// A `nonce` other than the one in the authorization request.
    WrongNonce,
    /// An `aud` that is not the client.
    WrongAudience,
    /// Another issuer in `iss`.
    WrongIssuer,
}

fn id_token(p: &IdParams<'_>) -> String {
    let iat = p.iat;
    let half = &Sha256::digest(p.access_token.as_bytes())[..16];
    let mut claims = json!({
        "iss": if p.fault == Some(IdTokenFault::WrongIssuer) { "https://evil.example" } else { p.issuer },
        "sub": p.sub,
        "aud": if p.fault == Some(IdTokenFault::WrongAudience) { "another-client" } else { p.client_id },
        "iat": iat,
        "exp": iat + secs(ID_TOKEN_TTL),
        "at_hash": URL_SAFE_NO_PAD.encode(half),
        "email": USER_EMAIL,
        "name": USER_NAME,
    });
    if let Some(nonce) = p.nonce {
        let nonce = if p.fault == Some(IdTokenFault::WrongNonce) {
            "not-the-nonce"
        } else {
            nonce
        };
        claims["nonce"] = Value::String(nonce.to_owned());
    }
    match p.fault {
        Some(IdTokenFault::ForeignSignature) => sign(&KEYS.foreign, &claims),
        _ => sign_current(p.rotated, &claims),
    }
}

/// An RFC 6749 error response.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.error, "error_description": self.description}));
        let mut resp = (self.status, no_store(), body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fake-idp\""),
            );
        }
        resp
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// Parses `application/x-www-form-urlencoded` data; a repeated parameter is an error.
fn parse_params(data: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(data) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter {k} repeated"));
        }
    }
    Ok(out)
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749 2.3.1).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn bad_page(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("Bad authorization request: {msg}\n"),
    )
        .into_response()
}

fn found(url: &Url) -> Response {
    match HeaderValue::from_str(url.as_str()) {
        Ok(loc) => (StatusCode::FOUND, [(header::LOCATION, loc)]).into_response(),
        Err(_) => bad_page("redirect_uri cannot be used in a Location header"),
    }
}

// ---------------------------------------------------------------------------
// Handlers

async fn discovery(AxumState(state): AxumState<Shared>) -> Response {
    let mut st = lock(&state);
    st.stats.discoveries += 1;
    let iss = &st.issuer;
    let mut document = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": st.config.token_auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
    });
    for (key, value) in &st.discovery_overrides {
        match value {
            Value::Null => document.as_object_mut().map(|d| d.remove(key)),
            _ => document
                .as_object_mut()
                .map(|d| d.insert(key.clone(), value.clone())),
        };
    }
    Json(document).into_response()
}

async fn jwks(AxumState(state): AxumState<Shared>) -> Response {
    let mut st = lock(&state);
    st.stats.jwks_fetches += 1;
    if st.jwks_broken {
        return (StatusCode::NOT_FOUND, "no keys here").into_response();
    }
    let key = if st.rotated {
        KEYS.rotated_jwk.clone()
    } else {
        KEYS.jwk.clone()
    };
    Json(json!({ "keys": [key] })).into_response()
}

async fn authorize(AxumState(state): AxumState<Shared>, RawQuery(query): RawQuery) -> Response {
    let mut st = lock(&state);
    st.stats.authorize_requests += 1;
    let q = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(e) => return bad_page(&e),
    };
    let get = |k: &str| q.get(k).map(String::as_str);

    match get("client_id") {
        None => return bad_page("missing client_id"),
        Some(id) if id != st.config.client_id => return bad_page("unknown client_id"),
        Some(_) => {}
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return bad_page("missing redirect_uri");
    };
    let Ok(mut redirect) = Url::parse(redirect_uri) else {
        return bad_page("redirect_uri is not an absolute URL");
    };
    if redirect.fragment().is_some() {
        return bad_page("redirect_uri must not contain a fragment");
    }
    if get("response_type") != Some("code") {
        return bad_page("response_type must be code");
    }
    let scope = get("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return bad_page("scope must contain openid");
    }
    let Some(code_challenge) = get("code_challenge").filter(|c| !c.is_empty()) else {
        return bad_page("missing code_challenge (PKCE is required)");
    };
    if get("code_challenge_method") != Some("S256") {
        return bad_page("code_challenge_method must be S256");
    }
    let state_param = get("state");

    match st.behavior {
        AuthorizeBehavior::Hang => (
            StatusCode::OK,
            Html("<!doctype html><html><body><p>Waiting</p></body></html>"),
        )
            .into_response(),
        AuthorizeBehavior::Deny => {
            {
                let mut pairs = redirect.query_pairs_mut();
                pairs.append_pair("error", "access_denied");
                pairs.append_pair("error_description", "The user denied the request");
                if let Some(s) = state_param {
                    pairs.append_pair("state", s);
                }
            }
            found(&redirect)
        }
        AuthorizeBehavior::Approve => {
            let code = random_token();
            let pending = PendingCode {
                client_id: st.config.client_id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.to_owned(),
                nonce: get("nonce").map(str::to_owned),
                scope: scope.to_owned(),
                sub: st.subject.clone(),
            };
            st.codes.insert(code.clone(), pending);
            {
                let mut pairs = redirect.query_pairs_mut();
                pairs.append_pair("code", &code);
                if let Some(s) = state_param {
                    pairs.append_pair("state", s);
                }
                if let Some(iss) = &st.response_iss {
                    pairs.append_pair("iss", iss);
                }
            }
            found(&redirect)
        }
    }
}

async fn token(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(to) = lock(&state).token_redirect.clone() {
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    let fault = lock(&state).token_faults.pop_front();
    match fault {
        Some(TokenFault::TemporarilyUnavailable) => {
            let body =
                json!({"error": "temporarily_unavailable", "error_description": "try later"});
            return (StatusCode::SERVICE_UNAVAILABLE, no_store(), Json(body)).into_response();
        }
        Some(TokenFault::Stall) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some(TokenFault::HtmlServerError) => {
            let page = "<html><body><h1>500 Internal Server Error</h1></body></html>";
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                page,
            )
                .into_response();
        }
        None => {}
    }
    let form = match token_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let grant_type = form.get("grant_type").cloned();
    let result = match authenticate_client(&state, &headers, &form) {
        Err(e) => Err(e),
        Ok(client_id) => match grant_type.as_deref() {
            Some("authorization_code") => code_grant(&state, &client_id, &form),
            Some("refresh_token") => refresh_grant(&state, &client_id, &form),
            Some(other) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            )),
            None => Err(OAuthError::invalid_request("missing grant_type")),
        },
    };
    match result {
        Ok(body) => (StatusCode::OK, no_store(), Json(body)).into_response(),
        Err(e) => {
            if grant_type.as_deref() == Some("refresh_token") {
                lock(&state).stats.refresh_failures += 1;
            }
            e.into_response()
        }
    }
}

fn token_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    parse_params(body).map_err(OAuthError::invalid_request)
}

/// Authenticates the client; returns its client id.
fn authenticate_client(
    state: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
            match value.split_once(' ') {
                Some((scheme, creds)) if scheme.eq_ignore_ascii_case("basic") => {
                    Some(parse_basic(creds.trim())?)
                }
                _ => {
                    return Err(OAuthError::invalid_client(
                        "unsupported Authorization scheme",
                    ));
                }
            }
        }
    };
    let form_id = form.get("client_id").cloned();
    let form_secret = form.get("client_secret").cloned();

    let (method, client_id, secret) = match (basic, form_secret) {
        (Some(_), Some(_)) => {
            lock(state).stats.last_client_auth = Some("basic".to_owned());
            return Err(OAuthError::invalid_request(
                "more than one client authentication method used",
            ));
        }
        (Some((id, secret)), None) => {
            if form_id.as_ref().is_some_and(|f| *f != id) {
                return Err(OAuthError::invalid_client(
                    "client_id parameter differs from the Basic credentials",
                ));
            }
            ("basic", id, Some(secret))
        }
        (None, Some(secret)) => {
            let Some(id) = form_id else {
                return Err(OAuthError::invalid_request(
                    "client_secret given without client_id",
                ));
            };
            ("post", id, Some(secret))
        }
        (None, None) => match form_id {
            Some(id) => ("none", id, None),
            None => return Err(OAuthError::invalid_client("client authentication required")),
        },
    };

    let mut st = lock(state);
    st.stats.last_client_auth = Some(method.to_owned());
    let advertised = match method {
        "basic" => "client_secret_basic",
        "post" => "client_secret_post",
        _ => "none",
    };
    if !st.config.token_auth_methods.iter().any(|m| m == advertised) {
        return Err(OAuthError::invalid_client(format!(
            "token endpoint auth method {advertised} is not allowed"
        )));
    }
    if client_id != st.config.client_id {
        return Err(OAuthError::invalid_client("unknown client"));
    }
    match (&st.config.client_secret, secret) {
        (Some(expected), Some(given)) if *expected == given => Ok(client_id),
        (Some(_), Some(_)) => Err(OAuthError::invalid_client("wrong client secret")),
        (Some(_), None) => Err(OAuthError::invalid_client(
            "confidential client must authenticate",
        )),
        (None, Some(_)) => Err(OAuthError::invalid_client(
            "public client has no secret to authenticate with",
        )),
        (None, None) => Ok(client_id),
    }
}

fn parse_basic(creds: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let decoded = STANDARD.decode(creds).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    Ok((
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    ))
}

/// Snapshot of the config values needed to sign a token response.
struct IssueContext {
    issuer: String,
    audience: String,
    ttl: Duration,
    clock_offset: i64,
    id_token_fault: Option<IdTokenFault>,
    rotated: bool,
    refresh_tokens: bool,
}

fn issue_context(st: &State) -> IssueContext {
    IssueContext {
        issuer: st.issuer.clone(),
        audience: st.config.audience.clone(),
        ttl: st.config.access_token_ttl,
        clock_offset: st.clock_offset,
        id_token_fault: st.id_token_fault,
        rotated: st.rotated,
        refresh_tokens: st.config.refresh_tokens,
    }
}

fn token_response(
    ctx: &IssueContext,
    client_id: &str,
    sub: &str,
    scope: &str,
    nonce: Option<&str>,
    refresh_token: &str,
) -> Value {
    let iat = now() + ctx.clock_offset;
    let access_token = sign_current(
        ctx.rotated,
        &access_claims(&AccessParams {
            issuer: ctx.issuer.clone(),
            sub: sub.to_owned(),
            audience: ctx.audience.clone(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            iat,
            exp: iat + secs(ctx.ttl),
        }),
    );
    let id_token = id_token(&IdParams {
        issuer: &ctx.issuer,
        sub,
        client_id,
        nonce,
        access_token: &access_token,
        iat,
        fault: ctx.id_token_fault,
        rotated: ctx.rotated,
    });
    let mut response = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ctx.ttl.as_secs(),
        "refresh_token": refresh_token,
        "id_token": id_token,
        "scope": scope,
    });
    if !ctx.refresh_tokens {
        response.as_object_mut().map(|r| r.remove("refresh_token"));
    }
    response
}

fn code_grant(
    state: &Shared,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("missing code"))?;
    let (pending, refresh_token, ctx) = {
        let mut st = lock(state);
        // Removing first makes the code single-use even if the exchange fails.
        let pending = st
            .codes
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown, expired or already used code"))?;
        if pending.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client",
            ));
        }
        if form.get("redirect_uri") != Some(&pending.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("missing code_verifier"))?;
        if s256(verifier) != pending.code_challenge {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        let family = st.next_family;
        st.next_family += 1;
        let refresh_token = random_token();
        st.refresh_tokens.insert(
            refresh_token.clone(),
            RefreshRecord {
                family,
                used: false,
                client_id: client_id.to_owned(),
                sub: pending.sub.clone(),
                scope: pending.scope.clone(),
            },
        );
        st.stats.code_exchanges += 1;
        (pending, refresh_token, issue_context(&st))
    };
    Ok(token_response(
        &ctx,
        client_id,
        &pending.sub,
        &pending.scope,
        pending.nonce.as_deref(),
        &refresh_token,
    ))
}

fn refresh_grant(
    state: &Shared,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("missing refresh_token"))?;
    let (sub, scope, refresh_token, ctx) = {
        let mut st = lock(state);
        let State {
            refresh_tokens,
            revoked_families,
            ..
        } = &mut *st;
        let record = refresh_tokens
            .get_mut(presented)
            .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
        if record.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "refresh token was issued to another client",
            ));
        }
        if revoked_families.contains(&record.family) {
            return Err(OAuthError::invalid_grant("refresh token has been revoked"));
        }
        if record.used {
            revoked_families.insert(record.family);
            return Err(OAuthError::invalid_grant(
                "refresh token reuse detected; token family revoked",
            ));
        }
        let scope = match form.get("scope") {
            None => record.scope.clone(),
            Some(requested) => {
                let granted: HashSet<&str> = record.scope.split(' ').collect();
                if !requested.split(' ').all(|s| granted.contains(s)) {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "requested scope exceeds the original grant",
                    ));
                }
                requested.clone()
            }
        };
        record.used = true;
        let family = record.family;
        let sub = record.sub.clone();
        let original_scope = record.scope.clone();
        let refresh_token = random_token();
        refresh_tokens.insert(
            refresh_token.clone(),
            RefreshRecord {
                family,
                used: false,
                client_id: client_id.to_owned(),
                sub: sub.clone(),
                scope: original_scope,
            },
        );
        st.stats.refreshes += 1;
        (sub, scope, refresh_token, issue_context(&st))
    };
    Ok(token_response(
        &ctx,
        client_id,
        &sub,
        &scope,
        None,
        &refresh_token,
    ))
}
