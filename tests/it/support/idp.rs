//! In-process fake OpenID Connect provider for integration tests.
//!
//! [`FakeIdp::start`] binds an axum server on `127.0.0.1:0` that implements
//! discovery, JWKS, the authorization endpoint (authorization code + PKCE S256)
//! and the token endpoint (authorization code and rotating refresh tokens, with
//! reuse detection). Tests steer it through the methods on [`FakeIdp`] and
//! inspect what happened through [`FakeIdp::stats`].
//!
//! Beyond the login every proxy needs, it speaks the OAuth extensions a client may use, each
//! switched on through [`IdpConfig`] and advertised in the metadata only when on:
//!
//! - Metadata at both addresses a client may look (OpenID Connect discovery and RFC 8414
//!   `/.well-known/oauth-authorization-server`, path-inserted when the issuer has a path, see
//!   [`IdpConfig::issuer_path`]), or at only one of them ([`MetadataDocs`]).
//! - The device authorization grant (RFC 8628, [`IdpConfig::device_flow`]): `/device/auth`
//!   hands out codes; a person approves at `{issuer}/device?user_code=...` (what the test
//!   browser does when it follows `verification_uri_complete`) or a test calls
//!   [`FakeIdp::approve_device`]; polls are answered `authorization_pending`, `slow_down`,
//!   `access_denied` or `expired_token` as the RFC says, and each one is recorded
//!   ([`IdpStats::device_polls`]) so that a test can check the client's pace.
//! - The client credentials grant ([`IdpConfig::client_credentials`]) and client
//!   authentication with a signed JWT (RFC 7523 `private_key_jwt`, [`IdpConfig::client_key`];
//!   the client's key pair is [`CLIENT_RSA_PEM`] / [`CLIENT_RSA_PUBLIC_PEM`]), replays refused.
//! - Token revocation (RFC 7009, `/revoke`, [`IdpConfig::revocation`]).
//! - Resource indicators (RFC 8707): the resources asked for at authorization (or device
//!   authorization) time bound the grant; a token request may name one or more of them, and
//!   the access token's `aud` is then exactly what it named (`invalid_target` otherwise).
//!
//! Every request to the OAuth endpoints is logged ([`IdpStats::requests`]) with the client
//! authentication it used, its `scope` and its `resource`s, so that a test can assert which
//! resource a client sent where.
//!
//! This module is self-contained: it does not depend on the crate under test.

// The whole surface of the fake is API for the tests: a knob that no test turns yet is not dead.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
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

/// PEM (PKCS#8) of the private key a confidential client signs its `private_key_jwt`
/// assertions with (RFC 7523): what a test hands the proxy as the client's key. A test-only
/// key, generated for these tests and published here; it protects nothing.
pub const CLIENT_RSA_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCxFV++TYMDXzBk
YOmflzsM4iYVg4+d++pIbV5g9MI2zEVi6JZO+HwHjitVhVMI4wxTWYBfYDNLuqVO
bp9Eil+4tOJfdJVp4fxiFEWp9CP0G2BqfsRmWZ+pSKEyKTZA6fK6uBLLsQc4Plpn
RCrxKBOX8xjooSKAVt5TuGa/Eo08j97z/Q1zYYan1hgbI8PjCgPrrsynqjg17rh4
utKVXKNHJCNShb3pKhn8cFMsQeg0Mr9rRXFra1bdfCKC65ctZofF3vCUuAoquxF7
7vcnPtT8G1UBp5VgaovkwkX6Z7Ett7auDSvNzD5W1erZN0qZsSxny4YDJJLE824F
mW9EyyCtAgMBAAECggEABvxyYgYZ0JS9SoB+RwMG29vCJ+AgVtm85O2XpxiQ3uuR
IzVM1MG91uh3cjDH1VZrwpAJ3flkHK04307C7sfMvfM46Q4m5N37AH2PQAS3NGau
F5V3txf7Egkg/uMcVlREdLRVXX7W65OeKmvIi+oKV9jJ10egHlMPA1uHhis7sjNj
8U0dkYrj0NATwlA9HrBoT5pEGIWsDvkgLCj5ns0NjJEFZiN1RPTwtZbthtv0bGXU
dlomI3o2zB7+8bk2W7i7eWl+1pba/zUzLI0tNTuqsmQ/3TIRQQOwC0kosZ00uWl0
XpWeQO2IAPmmuF4rCO6E7xGOAA8c/usnFapjRM7fMQKBgQDtC01fgZjkAOJYLHDn
8iOg65rN0mkVlgKNg2LKmbfD7YZMkU1bo1TXyxeaJ8hDJ2pi/reUwtKv48C+DvxI
CPRJaGQFtK5CapZKKJFqQP/tS7GTgEOr51ETPpetuJ1NKahWbYgFOeiRgDK5LDHZ
mnt4whhofQCp6spqmtoOeP+hhQKBgQC/PpMtKVWlG4B9mqLgAfoj1Bu/lY/kh1lQ
5t+Nn8qpOiw5W0y9hbnEC9s2F8jgkmBpFGvArLhPN1bJuOHiezkLNdQBSxo1QOQ7
vavk4c1xNqGsXxa8XTugDyZ82kgayJWpBfRonYPWLQ+k7Qtw/K33nIrCqumic0Uu
tDfvDzWXCQKBgF4VilRKAAEfSLdujDHDrdiFKyBeT08+By1b5K49bO7bK97gHTAu
F9K+zVNmTto4nsVEDGGDIlSltS66i++bfjpUsL6DBFdgLt6oU2809V+eF5FP64wj
d86HnXRaPjUOP75uIvrQDTsTAw70N6UC59b6Uu3GD6lhg43kgIAWDoBxAoGBAKng
BY+qFb9xbHMltuPQHcdRk8xcJ9LRP08TpSQB+lzTpZDVPpdif55bAb9M5UxF+Ymd
cBFX2ufSui65ITyyQ/tnNwhnE8KV/6XpVxUaVgjohDe+x01Oa7ZDfuaMZlwULIxV
E8MRl5fZsvnG7dDRQh6eWMuOUbXROnS/9KdPFUUxAoGAURkkevUiv/p8G8HwTCLq
OV29wVF5wFjjpzoBG+mwjhrERC+nslRS03+nBOZLTFVuCReVD39t7kpJxp6LMIJm
y8A4WaoN+2s9FRrAo19cIcGMfLsR7+ZvzwLmg6MAdxIhWk3tMjFS2RWLVkNvvrdY
5jAk0shovJ9LEVpqa4GPqcA=
-----END PRIVATE KEY-----
";
/// PEM (SubjectPublicKeyInfo) of the public half of [`CLIENT_RSA_PEM`]: what the provider
/// verifies assertions with when [`IdpConfig::client_key`] is [`ClientKey::test`].
pub const CLIENT_RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsRVfvk2DA18wZGDpn5c7
DOImFYOPnfvqSG1eYPTCNsxFYuiWTvh8B44rVYVTCOMMU1mAX2AzS7qlTm6fRIpf
uLTiX3SVaeH8YhRFqfQj9Btgan7EZlmfqUihMik2QOnyurgSy7EHOD5aZ0Qq8SgT
l/MY6KEigFbeU7hmvxKNPI/e8/0Nc2GGp9YYGyPD4woD667Mp6o4Ne64eLrSlVyj
RyQjUoW96SoZ/HBTLEHoNDK/a0Vxa2tW3XwiguuXLWaHxd7wlLgKKrsRe+73Jz7U
/BtVAaeVYGqL5MJF+mexLbe2rg0rzcw+VtXq2TdKmbEsZ8uGAySSxPNuBZlvRMsg
rQIDAQAB
-----END PUBLIC KEY-----
";
/// `kid` of [`CLIENT_RSA_JWK_JSON`].
pub const CLIENT_KID: &str = "client-key-1";
/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of the device authorization grant (RFC 8628 section 3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long before the required interval a device poll may come without being too early:
/// a client that times its next poll from when it sent the last one (not from when the answer
/// came) is still polite, and the network's jitter must not make it look rude.
pub const DEVICE_POLL_GRACE: Duration = Duration::from_millis(250);

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
    /// `None`: public client (PKCE only, token endpoint auth `none`) unless
    /// [`IdpConfig::client_key`] is set.
    /// `Some`: confidential client that must authenticate with this secret (or, if
    /// [`IdpConfig::client_key`] is set too, with either).
    pub client_secret: Option<String>,
    /// Lifetime of issued access tokens (`exp` and `expires_in`). Default 3600 s.
    pub access_token_ttl: Duration,
    /// `aud` claim of access tokens whose request named no `resource` (RFC 8707). Default
    /// `"mcp-backend"`.
    pub audience: String,
    /// Advertised `token_endpoint_auth_methods_supported`; the token endpoint also
    /// rejects (401 `invalid_client`) a method that is not listed here.
    /// Default `["client_secret_basic", "client_secret_post", "none"]`.
    /// `private_key_jwt` is added when [`IdpConfig::client_key`] is set and it is missing.
    pub token_auth_methods: Vec<String>,
    /// Whether token responses carry a refresh token (authorization code and device grants).
    /// Default `true`.
    pub refresh_tokens: bool,
    /// Path of the issuer below the origin, like `"/tenant-1"` (no trailing slash): the issuer
    /// is then `http://127.0.0.1:PORT/tenant-1`, every endpoint lives below it, and the metadata
    /// is where RFC 8414 and OpenID Connect put it for such an issuer (see [`MetadataDocs`]).
    /// Default `""`: the issuer is the origin.
    pub issuer_path: String,
    /// Which metadata documents are served. Default [`MetadataDocs::Both`].
    pub metadata: MetadataDocs,
    /// The device authorization grant (RFC 8628): `None` (default) leaves it out of the
    /// metadata, answers `/device/auth` with 404 and the grant with `unsupported_grant_type`.
    pub device_flow: Option<DeviceFlowConfig>,
    /// Accept (and advertise) the client credentials grant. Default `false`.
    pub client_credentials: bool,
    /// The client's registered public key: the client may then authenticate with a JWT it
    /// signed (RFC 7523 `private_key_jwt`), and, holding a credential, is confidential (no
    /// `none` authentication). Default `None`.
    pub client_key: Option<ClientKey>,
    /// Serve (and advertise) the revocation endpoint (RFC 7009) at `{issuer}/revoke`.
    /// Default `true`.
    pub revocation: bool,
    /// Scopes a login may ask for but never gets: a provider whose administrators did not
    /// allow them for this client. Default none.
    pub withheld_scopes: Vec<String>,
    /// Dynamic client registration (RFC 7591) at `{issuer}/register`, advertised as
    /// `registration_endpoint`: each registration gets a public client `registered-N` that the
    /// provider then accepts besides [`IdpConfig::client_id`]. Default `false`.
    pub registration: bool,
    /// Client ID metadata documents: advertises `client_id_metadata_document_supported` and
    /// accepts any `https://` URL as a public client's id. Default `false`.
    pub metadata_documents: bool,
    /// Cross-app access, the identity provider's side (SEP-990): the token exchange grant (RFC
    /// 8693) of an ID token this provider issued for an identity assertion grant (an ID-JAG,
    /// signed like its ID tokens) naming the `audience` and `resource` asked for. Default
    /// `false`.
    pub token_exchange: bool,
    /// Cross-app access, the authorization server's side: the JWT bearer grant (RFC 7523) of an
    /// ID-JAG issued by this issuer for this provider, for an access token bound to the
    /// ID-JAG's resource. Default `None`: unsupported.
    pub identity_assertions_from: Option<String>,
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
            issuer_path: String::new(),
            metadata: MetadataDocs::Both,
            device_flow: None,
            client_credentials: false,
            client_key: None,
            revocation: true,
            withheld_scopes: Vec::new(),
            registration: false,
            metadata_documents: false,
            token_exchange: false,
            identity_assertions_from: None,
        }
    }
}

/// Which authorization server metadata documents the provider serves. With an issuer path `P`
/// ([`IdpConfig::issuer_path`]) the OpenID Connect document is at both places clients look for
/// it (`P/.well-known/openid-configuration`, and path-inserted
/// `/.well-known/openid-configuration/P`), and the RFC 8414 one path-inserted only
/// (`/.well-known/oauth-authorization-server/P`), as that RFC requires. A document that is not
/// served answers 404.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataDocs {
    /// OpenID Connect discovery and RFC 8414 metadata (the same document).
    #[default]
    Both,
    /// Only `oauth-authorization-server`: a plain OAuth authorization server.
    Rfc8414Only,
}

/// How the device authorization grant (RFC 8628) behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFlowConfig {
    /// `interval` of the device authorization response, in whole seconds; `None` leaves it
    /// out, and the client must then wait the RFC's default of 5 s. Default 1 s.
    pub interval: Option<Duration>,
    /// `expires_in` of the device authorization response, in whole seconds: after it, polls
    /// get `expired_token` and the verification page refuses the code. Default 600 s.
    pub expires_in: Duration,
    /// Answer a poll that comes sooner than the required interval after the previous poll of
    /// the same device code (less [`DEVICE_POLL_GRACE`]; the first poll is not timed, as the
    /// RFC asks only for the interval between polls) with `slow_down`; the client is then to
    /// wait 5 s more (RFC 8628 section 3.5), the provider keeps its own minimum. `false`: early polls are recorded but
    /// answered as any other. Default `true`.
    pub slow_down: bool,
    /// The interval the provider enforces, when it is longer than the one it advertises (a
    /// provider that advertises too short an interval, so its clients meet `slow_down`).
    /// Default `None`: the advertised one.
    pub enforced_interval: Option<Duration>,
}

impl Default for DeviceFlowConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(1)),
            expires_in: Duration::from_secs(600),
            slow_down: true,
            enforced_interval: None,
        }
    }
}

/// The public key a client registered for `private_key_jwt` (RFC 7523): an RSA key in PEM
/// (`PUBLIC KEY` or `RSA PUBLIC KEY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey(pub String);

impl ClientKey {
    /// The public half of [`CLIENT_RSA_PEM`], the key the tests give the client.
    pub fn test() -> Self {
        Self(CLIENT_RSA_PUBLIC_PEM.to_owned())
    }

    fn decoding_key(&self) -> Result<DecodingKey, String> {
        DecodingKey::from_rsa_pem(self.0.as_bytes())
            .map_err(|e| format!("registered client key: {e}"))
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
    /// Client authentication method presented on the latest request to the token, device
    /// authorization or revocation endpoint that carried any: `"basic"`, `"post"`,
    /// `"private_key_jwt"` or `"none"` (recorded even if it failed).
    pub last_client_auth: Option<String>,
    /// `GET /jwks` requests.
    pub jwks_fetches: u32,
    /// Requests for the OpenID Connect discovery document, at any of its addresses (served or
    /// answered 404).
    pub discoveries: u32,
    /// Requests for the RFC 8414 metadata document (served or answered 404).
    pub rfc8414_discoveries: u32,
    /// Paths of every metadata request, in order: which addresses a client tried.
    pub metadata_requests: Vec<String>,
    /// `scope` of every authorization request (`""` when it had none), in order: what a
    /// login, or a step-up login, asked for.
    pub authorize_scopes: Vec<String>,
    /// Every query parameter of the latest authorization request, in order, repeated ones
    /// included: to check that extra parameters (`prompt`, `login_hint`, `audience`...)
    /// arrived.
    pub last_authorize_params: Vec<(String, String)>,
    /// Every request to the authorization, token, device authorization and revocation
    /// endpoints, in order (see [`IdpStats::of`]).
    pub requests: Vec<RequestRecord>,
    /// Successful device authorization requests (RFC 8628), in order.
    pub device_authorizations: Vec<DeviceAuthorization>,
    /// Every token request with the device code grant that got past injected faults and
    /// redirects, in order: when it came and what it got.
    pub device_polls: Vec<DevicePoll>,
    /// Successful device code grants (tokens issued).
    pub device_grants: u32,
    /// Successful `client_credentials` grants.
    pub client_credentials_grants: u32,
    /// Accepted revocation requests (RFC 7009), in order, known tokens or not.
    pub revocations: Vec<Revocation>,
    /// The body of every registration request (RFC 7591), in order.
    pub registrations: Vec<Value>,
    /// The claims of every identity assertion grant issued by the token exchange, in order.
    pub identity_assertions: Vec<Value>,
    /// The claims of every identity assertion grant taken by the JWT bearer grant, in order.
    pub jwt_bearer_grants: Vec<Value>,
}

impl IdpStats {
    /// The requests of one kind, in order.
    pub fn of(&self, kind: RequestKind) -> Vec<&RequestRecord> {
        self.requests.iter().filter(|r| r.kind == kind).collect()
    }

    /// The `resource` parameters of each request of one kind, in order.
    pub fn resources(&self, kind: RequestKind) -> Vec<Vec<String>> {
        self.of(kind).iter().map(|r| r.resources.clone()).collect()
    }

    /// The value of a parameter of the latest authorization request (the first if repeated).
    pub fn last_authorize_param(&self, name: &str) -> Option<&str> {
        self.last_authorize_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which endpoint, or which grant of the token endpoint, a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `GET /authorize`.
    Authorize,
    /// `POST /device/auth` (RFC 8628).
    DeviceAuthorization,
    /// Token endpoint, `authorization_code`.
    AuthorizationCode,
    /// Token endpoint, `refresh_token`.
    RefreshToken,
    /// Token endpoint, `client_credentials`.
    ClientCredentials,
    /// Token endpoint, `urn:ietf:params:oauth:grant-type:device_code`.
    DeviceCode,
    /// Token endpoint, `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    TokenExchange,
    /// Token endpoint, `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523).
    JwtBearer,
    /// Token endpoint, any other `grant_type` or none.
    OtherGrant,
    /// `POST /revoke` (RFC 7009).
    Revocation,
}

impl RequestKind {
    fn of_grant(grant_type: Option<&str>) -> Self {
        match grant_type {
            Some("authorization_code") => Self::AuthorizationCode,
            Some("refresh_token") => Self::RefreshToken,
            Some("client_credentials") => Self::ClientCredentials,
            Some(DEVICE_CODE_GRANT) => Self::DeviceCode,
            Some(TOKEN_EXCHANGE_GRANT) => Self::TokenExchange,
            Some(JWT_BEARER_GRANT) => Self::JwtBearer,
            _ => Self::OtherGrant,
        }
    }
}

/// One request to an OAuth endpoint of the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The endpoint, or the grant.
    pub kind: RequestKind,
    /// The client authentication it presented (`"basic"`, `"post"`, `"private_key_jwt"`,
    /// `"none"`); `None` for authorization requests and requests that presented none.
    pub client_auth: Option<String>,
    /// Its `resource` parameters (RFC 8707), in order.
    pub resources: Vec<String>,
    /// Its `scope` parameter.
    pub scope: Option<String>,
    /// The OAuth error it got (`"invalid_target"`...); `None` if it succeeded (for
    /// authorization requests: was approved, or left hanging).
    pub error: Option<String>,
}

/// A device authorization the provider handed out (RFC 8628 section 3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAuthorization {
    /// When it was answered.
    pub at: Instant,
    /// The code a person types (`"BCDF-GHJK"`); [`FakeIdp::approve_device`] takes it.
    pub user_code: String,
    /// The `scope` asked for (`""` if none).
    pub scope: String,
    /// The `resource`s asked for.
    pub resources: Vec<String>,
}

/// One poll of the token endpoint with a device code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePoll {
    /// When it arrived.
    pub at: Instant,
    /// User code of the device code it presented (`None`: unknown device code).
    pub user_code: Option<String>,
    /// What it got.
    pub outcome: DevicePollOutcome,
}

/// What a device code poll was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePollOutcome {
    /// `authorization_pending`: nobody has approved yet.
    Pending,
    /// `slow_down`: it came too early.
    SlowDown,
    /// `access_denied`: the person denied the request.
    Denied,
    /// `expired_token`: the device code's `expires_in` has passed.
    Expired,
    /// Tokens.
    Issued,
    /// Any other error: unknown or used device code, failed client authentication,
    /// `invalid_target`...
    Rejected,
}

/// A revocation request the provider accepted (RFC 7009).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The `token` parameter.
    pub token: String,
    /// The `token_type_hint` parameter.
    pub token_type_hint: Option<String>,
    /// What the token turned out to be.
    pub found: RevokedToken,
}

/// What a revoked token was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokedToken {
    /// A refresh token: it and every token of its rotation family are now `invalid_grant`.
    RefreshToken,
    /// An access token the provider issued (recorded only: backends validate access tokens
    /// on their own).
    AccessToken,
    /// Nothing the provider issued (RFC 7009 still answers 200).
    Unknown,
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    resources: Vec<String>,
    sub: String,
}

struct RefreshRecord {
    family: u64,
    used: bool,
    client_id: String,
    sub: String,
    scope: String,
    /// Resources of the grant (RFC 8707): what later token requests may name.
    resources: Vec<String>,
}

/// A device code's grant, from device authorization until tokens are issued.
struct DeviceGrant {
    client_id: String,
    user_code: String,
    scope: String,
    resources: Vec<String>,
    expires_at: Instant,
    /// The interval polls must keep.
    interval: Duration,
    last_poll: Option<Instant>,
    status: DeviceStatus,
}

#[derive(Clone, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    /// Approved by the user with this subject.
    Approved(String),
    Denied,
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
    /// Device grants by device code.
    devices: HashMap<String, DeviceGrant>,
    /// `jti`s of the client assertions accepted so far: a second use is a replay.
    assertion_jtis: HashSet<String>,
    /// Access tokens issued, to tell them apart on revocation.
    access_tokens: HashSet<String>,
    /// Client ids handed out by `/register`.
    registered: HashSet<String>,
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

impl State {
    /// A public client the provider knows besides the configured one: registered, or named
    /// by its metadata document's URL.
    fn knows_public_client(&self, id: &str) -> bool {
        self.registered.contains(id)
            || (self.config.metadata_documents && id.starts_with("https://"))
    }
}

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
    pub async fn start(mut config: IdpConfig) -> FakeIdp {
        LazyLock::force(&KEYS);
        let path = config.issuer_path.clone();
        assert!(
            path.is_empty() || (path.starts_with('/') && !path.ends_with('/')),
            "issuer_path must be empty or start, and not end, with '/': {path:?}"
        );
        if config.client_key.is_some() && !config.token_auth_methods.iter().any(|m| m == PKJ) {
            config.token_auth_methods.push(PKJ.to_owned());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake IdP");
        let addr = listener.local_addr().expect("fake IdP local addr");
        let state: Shared = Arc::new(Mutex::new(State {
            issuer: format!("http://{addr}{path}"),
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
            devices: HashMap::new(),
            assertion_jtis: HashSet::new(),
            access_tokens: HashSet::new(),
            registered: HashSet::new(),
        }));
        let oidc_appended = format!("{path}/.well-known/openid-configuration");
        let endpoints = Router::new()
            .route(
                "/.well-known/openid-configuration",
                metadata_route(Doc::Oidc, oidc_appended),
            )
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/device/auth", post(device_authorization))
            .route("/device", get(device_page))
            .route("/revoke", post(revoke))
            .route("/register", post(register));
        let mut app = if path.is_empty() {
            endpoints
        } else {
            let inserted = format!("/.well-known/openid-configuration{path}");
            Router::new()
                .nest(&path, endpoints)
                .route(&inserted, metadata_route(Doc::Oidc, inserted.clone()))
        };
        let rfc8414 = format!("/.well-known/oauth-authorization-server{path}");
        app = app.route(&rfc8414, metadata_route(Doc::Rfc8414, rfc8414.clone()));
        let app = app.with_state(state.clone());
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

    /// Issuer URL, `http://127.0.0.1:PORT` followed by [`IdpConfig::issuer_path`] (no trailing
    /// slash).
    pub fn issuer(&self) -> String {
        format!(
            "http://{}{}",
            self.addr,
            lock(&self.state).config.issuer_path
        )
    }

    /// JWKS URL (`{issuer}/jwks`).
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// Client id the provider accepts.
    pub fn client_id(&self) -> String {
        lock(&self.state).config.client_id.clone()
    }

    /// A fresh ID token of this provider for [`IdpConfig::client_id`] and `sub`: what a
    /// person's earlier sign-in left with an SSO agent.
    pub fn mint_id_token(&self, sub: &str) -> String {
        let st = lock(&self.state);
        id_token(&IdParams {
            issuer: &st.issuer,
            sub,
            client_id: &st.config.client_id,
            nonce: None,
            access_token: "",
            iat: now(),
            fault: None,
            rotated: false,
        })
    }

    /// Forgets every client registered so far (RFC 7591): they get `invalid_client` from now on,
    /// as from a provider that expired or deleted them.
    pub fn forget_registered_clients(&self) {
        lock(&self.state).registered.clear();
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

    /// Approves the device authorization with this user code as the current subject, as a
    /// person at the verification page would; whatever [`FakeIdp::set_authorize_behavior`]
    /// says. False if no pending, unexpired device authorization has this code.
    pub fn approve_device(&self, user_code: &str) -> bool {
        let mut st = lock(&self.state);
        let sub = st.subject.clone();
        decide_device(&mut st, user_code, DeviceStatus::Approved(sub))
    }

    /// Denies the device authorization with this user code (its polls get `access_denied`).
    /// False if no pending, unexpired device authorization has this code.
    pub fn deny_device(&self, user_code: &str) -> bool {
        decide_device(&mut lock(&self.state), user_code, DeviceStatus::Denied)
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
    /// A string, or an array when the request named several resources (RFC 8707).
    audience: Value,
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
    /// No ID token at all, as a plain OAuth server answers.
    Omitted,
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
    fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }
    fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant_type} is not supported"),
        )
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

/// The parameters of a request (query or form).
struct Params {
    /// Every parameter but `resource`, each at most once.
    one: HashMap<String, String>,
    /// `resource` parameters (RFC 8707), which may repeat, in order.
    resources: Vec<String>,
}

impl Params {
    fn get(&self, name: &str) -> Option<&String> {
        self.one.get(name)
    }
}

/// Parses `application/x-www-form-urlencoded` data; a repeated parameter other than
/// `resource` is an error.
fn parse_params(data: &[u8]) -> Result<Params, String> {
    let mut params = Params {
        one: HashMap::new(),
        resources: Vec::new(),
    };
    for (k, v) in url::form_urlencoded::parse(data) {
        if k == "resource" {
            params.resources.push(v.into_owned());
        } else if params.one.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter {k} repeated"));
        }
    }
    Ok(params)
}

/// RFC 8707 section 2: a resource is an absolute URI without a fragment.
fn check_resources(resources: &[String]) -> Result<(), OAuthError> {
    for resource in resources {
        match Url::parse(resource) {
            Ok(url) if url.fragment().is_none() => {}
            _ => {
                return Err(OAuthError::invalid_target(format!(
                    "resource {resource} is not an absolute URI without a fragment"
                )));
            }
        }
    }
    Ok(())
}

/// The `aud` of an access token: the resources the token request named, each of which must be
/// part of the grant (`invalid_target` otherwise), or, if it named none, the configured
/// audience.
fn audience_for(
    requested: &[String],
    granted: &[String],
    default: &str,
) -> Result<Value, OAuthError> {
    if let Some(outside) = requested.iter().find(|r| !granted.contains(r)) {
        return Err(OAuthError::invalid_target(format!(
            "resource {outside} was not requested in the authorization"
        )));
    }
    Ok(match requested {
        [] => Value::from(default),
        [one] => Value::from(one.as_str()),
        many => json!(many),
    })
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

/// Which metadata document a route serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doc {
    /// OpenID Connect discovery.
    Oidc,
    /// RFC 8414 authorization server metadata.
    Rfc8414,
}

/// `GET` of a metadata document at `path` (recorded as the address the client tried).
fn metadata_route(doc: Doc, path: String) -> axum::routing::MethodRouter<Shared> {
    get(move |state: AxumState<Shared>| metadata(state, doc, path.clone()))
}

async fn metadata(AxumState(state): AxumState<Shared>, doc: Doc, path: String) -> Response {
    let mut st = lock(&state);
    match doc {
        Doc::Oidc => st.stats.discoveries += 1,
        Doc::Rfc8414 => st.stats.rfc8414_discoveries += 1,
    }
    st.stats.metadata_requests.push(path);
    let served = matches!(
        (doc, st.config.metadata),
        (_, MetadataDocs::Both) | (Doc::Rfc8414, MetadataDocs::Rfc8414Only)
    );
    if !served {
        return (StatusCode::NOT_FOUND, "no such metadata document").into_response();
    }
    let iss = &st.issuer;
    let config = &st.config;
    let mut grant_types = vec!["authorization_code", "refresh_token"];
    if config.client_credentials {
        grant_types.push("client_credentials");
    }
    if config.device_flow.is_some() {
        grant_types.push(DEVICE_CODE_GRANT);
    }
    let mut document = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": config.token_auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": grant_types,
    });
    if config.token_auth_methods.iter().any(|m| m == PKJ) {
        // RFC 8414 section 2: required when private_key_jwt is listed.
        document["token_endpoint_auth_signing_alg_values_supported"] =
            json!(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]);
    }
    if config.device_flow.is_some() {
        document["device_authorization_endpoint"] = json!(format!("{iss}/device/auth"));
    }
    if config.registration {
        document["registration_endpoint"] = json!(format!("{iss}/register"));
    }
    if config.metadata_documents {
        document["client_id_metadata_document_supported"] = json!(true);
    }
    if config.revocation {
        document["revocation_endpoint"] = json!(format!("{iss}/revoke"));
        document["revocation_endpoint_auth_methods_supported"] = json!(config.token_auth_methods);
    }
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
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let scope = pairs
        .iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone());
    st.stats
        .authorize_scopes
        .push(scope.clone().unwrap_or_default());
    st.stats.last_authorize_params = pairs;
    let (response, error, resources) = match parse_params(query.as_bytes()) {
        Err(e) => (bad_page(&e), Some("invalid_request"), Vec::new()),
        Ok(q) => {
            let (response, error) = authorization(&mut st, &q);
            (response, error, q.resources)
        }
    };
    st.stats.requests.push(RequestRecord {
        kind: RequestKind::Authorize,
        client_auth: None,
        resources,
        scope,
        error: error.map(str::to_owned),
    });
    response
}

/// Answers a parsed authorization request; with the OAuth error it amounts to, if any.
fn authorization(st: &mut State, q: &Params) -> (Response, Option<&'static str>) {
    let get = |k: &str| q.get(k).map(String::as_str);
    let bad = |msg: &str| (bad_page(msg), Some("invalid_request"));

    match get("client_id") {
        None => return bad("missing client_id"),
        Some(id) if id != st.config.client_id && !st.knows_public_client(id) => {
            return bad("unknown client_id");
        }
        Some(_) => {}
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return bad("missing redirect_uri");
    };
    let Ok(mut redirect) = Url::parse(redirect_uri) else {
        return bad("redirect_uri is not an absolute URL");
    };
    if redirect.fragment().is_some() {
        return bad("redirect_uri must not contain a fragment");
    }
    if get("response_type") != Some("code") {
        return bad("response_type must be code");
    }
    // Without `openid` this is a plain OAuth request: tokens, no ID token.
    let scope = get("scope").unwrap_or_default();
    let Some(code_challenge) = get("code_challenge").filter(|c| !c.is_empty()) else {
        return bad("missing code_challenge (PKCE is required)");
    };
    if get("code_challenge_method") != Some("S256") {
        return bad("code_challenge_method must be S256");
    }
    let state_param = get("state");
    if let Err(e) = check_resources(&q.resources) {
        {
            let mut pairs = redirect.query_pairs_mut();
            pairs.append_pair("error", e.error);
            pairs.append_pair("error_description", &e.description);
            if let Some(s) = state_param {
                pairs.append_pair("state", s);
            }
        }
        return (found(&redirect), Some(e.error));
    }

    match st.behavior {
        AuthorizeBehavior::Hang => (
            (
                StatusCode::OK,
                Html("<!doctype html><html><body><p>Waiting</p></body></html>"),
            )
                .into_response(),
            None,
        ),
        AuthorizeBehavior::Deny => {
            {
                let mut pairs = redirect.query_pairs_mut();
                pairs.append_pair("error", "access_denied");
                pairs.append_pair("error_description", "The user denied the request");
                if let Some(s) = state_param {
                    pairs.append_pair("state", s);
                }
            }
            (found(&redirect), Some("access_denied"))
        }
        AuthorizeBehavior::Approve => {
            let code = random_token();
            let pending = PendingCode {
                client_id: get("client_id").unwrap_or_default().to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.to_owned(),
                nonce: get("nonce").map(str::to_owned),
                scope: scope
                    .split(' ')
                    .filter(|s| !st.config.withheld_scopes.iter().any(|w| w == s))
                    .collect::<Vec<_>>()
                    .join(" "),
                resources: q.resources.clone(),
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
            (found(&redirect), None)
        }
    }
}

async fn token(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
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
    let kind = RequestKind::of_grant(grant_type.as_deref());
    // The device code's user code, looked up before a successful poll consumes it.
    let user_code = form
        .get("device_code")
        .and_then(|code| lock(&state).devices.get(code).map(|d| d.user_code.clone()));
    let (method, client) = authenticate_client(&state, &headers, &form, "/token");
    let result = client.and_then(|client_id| match kind {
        RequestKind::AuthorizationCode => code_grant(&state, &client_id, &form),
        RequestKind::RefreshToken => refresh_grant(&state, &client_id, &form),
        RequestKind::ClientCredentials => {
            client_credentials_grant(&state, &client_id, method, &form)
        }
        RequestKind::DeviceCode => device_grant(&state, &client_id, &form, arrived),
        RequestKind::TokenExchange => token_exchange_grant(&state, &client_id, &form),
        RequestKind::JwtBearer => jwt_bearer_grant(&state, &client_id, &form),
        _ => Err(match &grant_type {
            Some(other) => OAuthError::unsupported_grant_type(other),
            None => OAuthError::invalid_request("missing grant_type"),
        }),
    });

    let mut st = lock(&state);
    let error = result.as_ref().err().map(|e| e.error);
    st.stats.requests.push(RequestRecord {
        kind,
        client_auth: method.map(str::to_owned),
        resources: form.resources.clone(),
        scope: form.get("scope").cloned(),
        error: error.map(str::to_owned),
    });
    match kind {
        RequestKind::RefreshToken if error.is_some() => st.stats.refresh_failures += 1,
        RequestKind::DeviceCode => {
            let outcome = match error {
                None => DevicePollOutcome::Issued,
                Some("authorization_pending") => DevicePollOutcome::Pending,
                Some("slow_down") => DevicePollOutcome::SlowDown,
                Some("access_denied") => DevicePollOutcome::Denied,
                Some("expired_token") => DevicePollOutcome::Expired,
                Some(_) => DevicePollOutcome::Rejected,
            };
            st.stats.device_polls.push(DevicePoll {
                at: arrived,
                user_code,
                outcome,
            });
        }
        _ => {}
    }
    match result {
        Ok(body) => {
            if let Some(access_token) = body["access_token"].as_str() {
                st.access_tokens.insert(access_token.to_owned());
            }
            (StatusCode::OK, no_store(), Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn token_form(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
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

/// The `token_endpoint_auth_methods_supported` name of `private_key_jwt` (RFC 7523), which is
/// also what [`IdpStats::last_client_auth`] records for it.
const PKJ: &str = "private_key_jwt";

/// Authenticates the client of a request to `endpoint` (`"/token"`, `"/device/auth"`,
/// `"/revoke"`): the method it presented (`"basic"`, `"post"`, `"private_key_jwt"`, `"none"`),
/// if it presented one, and its client id.
fn authenticate_client(
    state: &Shared,
    headers: &HeaderMap,
    form: &Params,
    endpoint: &str,
) -> (Option<&'static str>, Result<String, OAuthError>) {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let Ok(value) = value.to_str() else {
                return (
                    None,
                    Err(OAuthError::invalid_client("malformed Authorization header")),
                );
            };
            match value.split_once(' ') {
                Some((scheme, creds)) if scheme.eq_ignore_ascii_case("basic") => {
                    match parse_basic(creds.trim()) {
                        Ok(pair) => Some(pair),
                        Err(e) => return (None, Err(e)),
                    }
                }
                _ => {
                    return (
                        None,
                        Err(OAuthError::invalid_client(
                            "unsupported Authorization scheme",
                        )),
                    );
                }
            }
        }
    };
    let form_id = form.get("client_id").cloned();
    let form_secret = form.get("client_secret").cloned();
    let assertion = form.get("client_assertion").cloned();

    let presented: Vec<&'static str> = [
        basic.is_some().then_some("basic"),
        form_secret.is_some().then_some("post"),
        assertion.is_some().then_some(PKJ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [first, _, ..] = presented[..] {
        lock(state).stats.last_client_auth = Some(first.to_owned());
        return (
            Some(first),
            Err(OAuthError::invalid_request(
                "more than one client authentication method used",
            )),
        );
    }
    if let Some(assertion) = assertion {
        lock(state).stats.last_client_auth = Some(PKJ.to_owned());
        let result = check_client_assertion(state, form, &assertion, endpoint);
        return (Some(PKJ), result);
    }

    let (method, client_id, secret) = match (basic, form_secret) {
        (Some(_), Some(_)) => unreachable!("refused above"),
        (Some((id, secret)), None) => {
            if form_id.as_ref().is_some_and(|f| *f != id) {
                return (
                    Some("basic"),
                    Err(OAuthError::invalid_client(
                        "client_id parameter differs from the Basic credentials",
                    )),
                );
            }
            ("basic", id, Some(secret))
        }
        (None, Some(secret)) => {
            let Some(id) = form_id else {
                return (
                    Some("post"),
                    Err(OAuthError::invalid_request(
                        "client_secret given without client_id",
                    )),
                );
            };
            ("post", id, Some(secret))
        }
        (None, None) => match form_id {
            Some(id) => ("none", id, None),
            None => {
                return (
                    None,
                    Err(OAuthError::invalid_client("client authentication required")),
                );
            }
        },
    };

    let mut st = lock(state);
    st.stats.last_client_auth = Some(method.to_owned());
    let advertised = match method {
        "basic" => "client_secret_basic",
        "post" => "client_secret_post",
        _ => "none",
    };
    let result = if !st.config.token_auth_methods.iter().any(|m| m == advertised) {
        Err(OAuthError::invalid_client(format!(
            "token endpoint auth method {advertised} is not allowed"
        )))
    } else if client_id != st.config.client_id {
        match (st.knows_public_client(&client_id), secret) {
            (true, None) => Ok(client_id),
            (true, Some(_)) => Err(OAuthError::invalid_client(
                "client has no secret to authenticate with",
            )),
            (false, _) => Err(OAuthError::invalid_client("unknown client")),
        }
    } else {
        match (&st.config.client_secret, secret) {
            (Some(expected), Some(given)) if *expected == given => Ok(client_id),
            (Some(_), Some(_)) => Err(OAuthError::invalid_client("wrong client secret")),
            (Some(_), None) => Err(OAuthError::invalid_client(
                "confidential client must authenticate",
            )),
            (None, Some(_)) => Err(OAuthError::invalid_client(
                "client has no secret to authenticate with",
            )),
            (None, None) if st.config.client_key.is_some() => Err(OAuthError::invalid_client(
                "confidential client must authenticate",
            )),
            (None, None) => Ok(client_id),
        }
    };
    (Some(method), result)
}

/// `POST /register` (RFC 7591): a public client for the metadata given, when registration is on.
async fn register(AxumState(state): AxumState<Shared>, body: Bytes) -> Response {
    let mut st = lock(&state);
    if !st.config.registration {
        return (StatusCode::NOT_FOUND, "no registration here").into_response();
    }
    let Ok(metadata) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client_metadata"})),
        )
            .into_response();
    };
    st.stats.registrations.push(metadata.clone());
    let id = format!("registered-{}", st.stats.registrations.len());
    st.registered.insert(id.clone());
    let mut answer = metadata;
    answer["client_id"] = json!(id);
    answer["client_id_issued_at"] = json!(0);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// RFC 7523 sections 2.2 and 3: a JWT the client signed with its registered key, issued by
/// and about itself, for this provider, unexpired, and never presented before.
fn check_client_assertion(
    state: &Shared,
    form: &Params,
    assertion: &str,
    endpoint: &str,
) -> Result<String, OAuthError> {
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER_ASSERTION) {
        return Err(OAuthError::invalid_client(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let mut st = lock(state);
    if !st.config.token_auth_methods.iter().any(|m| m == PKJ) {
        return Err(OAuthError::invalid_client(
            "token endpoint auth method private_key_jwt is not allowed",
        ));
    }
    let Some(key) = &st.config.client_key else {
        return Err(OAuthError::invalid_client(
            "the client has registered no key for private_key_jwt",
        ));
    };
    let key = key.decoding_key().map_err(OAuthError::invalid_client)?;
    let issuer = st.issuer.clone();
    let mut validation = Validation::new_for_family(AlgorithmFamily::Rsa);
    validation.leeway = 0;
    validation.set_audience(&[
        format!("{issuer}/token"),
        format!("{issuer}{endpoint}"),
        issuer,
    ]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|e| OAuthError::invalid_client(format!("client assertion rejected: {e}")))?
        .claims;
    let client_id = st.config.client_id.clone();
    if claims["iss"].as_str() != Some(&client_id) || claims["sub"].as_str() != Some(&client_id) {
        return Err(OAuthError::invalid_client(
            "client assertion: iss and sub must both be the client id",
        ));
    }
    if form.get("client_id").is_some_and(|id| *id != client_id) {
        return Err(OAuthError::invalid_client(
            "client_id parameter differs from the client assertion",
        ));
    }
    let Some(jti) = claims["jti"].as_str() else {
        return Err(OAuthError::invalid_client("client assertion has no jti"));
    };
    if !st.assertion_jtis.insert(jti.to_owned()) {
        return Err(OAuthError::invalid_client(
            "client assertion replayed (jti already used)",
        ));
    }
    Ok(client_id)
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
    ttl: Duration,
    clock_offset: i64,
    id_token_fault: Option<IdTokenFault>,
    rotated: bool,
    refresh_tokens: bool,
}

fn issue_context(st: &State) -> IssueContext {
    IssueContext {
        issuer: st.issuer.clone(),
        ttl: st.config.access_token_ttl,
        clock_offset: st.clock_offset,
        id_token_fault: st.id_token_fault,
        rotated: st.rotated,
        refresh_tokens: st.config.refresh_tokens,
    }
}

/// What a token response grants.
struct Issue<'a> {
    client_id: &'a str,
    sub: &'a str,
    scope: &'a str,
    audience: Value,
    /// `Some`: an ID token is issued too, with this nonce, if any.
    id_token_nonce: Option<Option<&'a str>>,
    /// Sent unless refresh tokens are off.
    refresh_token: Option<&'a str>,
}

fn token_response(ctx: &IssueContext, issue: &Issue<'_>) -> Value {
    let iat = now() + ctx.clock_offset;
    let access_token = sign_current(
        ctx.rotated,
        &access_claims(&AccessParams {
            issuer: ctx.issuer.clone(),
            sub: issue.sub.to_owned(),
            audience: issue.audience.clone(),
            client_id: issue.client_id.to_owned(),
            scope: issue.scope.to_owned(),
            iat,
            exp: iat + secs(ctx.ttl),
        }),
    );
    let mut response = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ctx.ttl.as_secs(),
        "scope": issue.scope,
    });
    if let Some(nonce) = issue.id_token_nonce
        && !matches!(ctx.id_token_fault, Some(IdTokenFault::Omitted))
    {
        response["id_token"] = json!(id_token(&IdParams {
            issuer: &ctx.issuer,
            sub: issue.sub,
            client_id: issue.client_id,
            nonce,
            access_token: &access_token,
            iat,
            fault: ctx.id_token_fault,
            rotated: ctx.rotated,
        }));
    }
    if let Some(refresh_token) = issue.refresh_token.filter(|_| ctx.refresh_tokens) {
        response["refresh_token"] = json!(refresh_token);
    }
    response
}

/// Starts a refresh token family for a new grant; returns its first token.
fn new_refresh_token(
    st: &mut State,
    client_id: &str,
    sub: &str,
    scope: &str,
    resources: &[String],
) -> String {
    let family = st.next_family;
    st.next_family += 1;
    let refresh_token = random_token();
    st.refresh_tokens.insert(
        refresh_token.clone(),
        RefreshRecord {
            family,
            used: false,
            client_id: client_id.to_owned(),
            sub: sub.to_owned(),
            scope: scope.to_owned(),
            resources: resources.to_vec(),
        },
    );
    refresh_token
}

fn code_grant(state: &Shared, client_id: &str, form: &Params) -> Result<Value, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("missing code"))?;
    let (pending, audience, refresh_token, ctx) = {
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
        let audience = audience_for(&form.resources, &pending.resources, &st.config.audience)?;
        let refresh_token = new_refresh_token(
            &mut st,
            client_id,
            &pending.sub,
            &pending.scope,
            &pending.resources,
        );
        st.stats.code_exchanges += 1;
        (pending, audience, refresh_token, issue_context(&st))
    };
    Ok(token_response(
        &ctx,
        &Issue {
            client_id,
            sub: &pending.sub,
            scope: &pending.scope,
            audience,
            id_token_nonce: pending
                .scope
                .split(' ')
                .any(|s| s == "openid")
                .then_some(pending.nonce.as_deref()),
            refresh_token: Some(&refresh_token),
        },
    ))
}

fn refresh_grant(state: &Shared, client_id: &str, form: &Params) -> Result<Value, OAuthError> {
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("missing refresh_token"))?;
    let (sub, scope, audience, refresh_token, ctx) = {
        let mut st = lock(state);
        let default_audience = st.config.audience.clone();
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
        let audience = audience_for(&form.resources, &record.resources, &default_audience)?;
        record.used = true;
        let family = record.family;
        let sub = record.sub.clone();
        let original_scope = record.scope.clone();
        let resources = record.resources.clone();
        let refresh_token = random_token();
        refresh_tokens.insert(
            refresh_token.clone(),
            RefreshRecord {
                family,
                used: false,
                client_id: client_id.to_owned(),
                sub: sub.clone(),
                scope: original_scope,
                resources,
            },
        );
        st.stats.refreshes += 1;
        (sub, scope, audience, refresh_token, issue_context(&st))
    };
    Ok(token_response(
        &ctx,
        &Issue {
            client_id,
            sub: &sub,
            scope: &scope,
            audience,
            id_token_nonce: Some(None),
            refresh_token: Some(&refresh_token),
        },
    ))
}

/// RFC 6749 section 4.4: a confidential client's own token, no user, no refresh token.
fn client_credentials_grant(
    state: &Shared,
    client_id: &str,
    method: Option<&str>,
    form: &Params,
) -> Result<Value, OAuthError> {
    let (audience, ctx) = {
        let mut st = lock(state);
        if !st.config.client_credentials {
            return Err(OAuthError::unsupported_grant_type("client_credentials"));
        }
        if method == Some("none") {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "client_credentials is for clients that authenticate",
            ));
        }
        check_resources(&form.resources)?;
        let audience = match &form.resources[..] {
            [] => Value::from(st.config.audience.as_str()),
            [one] => Value::from(one.as_str()),
            _ => {
                return Err(OAuthError::invalid_target(
                    "client_credentials takes at most one resource",
                ));
            }
        };
        st.stats.client_credentials_grants += 1;
        (audience, issue_context(&st))
    };
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    Ok(token_response(
        &ctx,
        &Issue {
            client_id,
            sub: client_id,
            scope,
            audience,
            id_token_nonce: None,
            refresh_token: None,
        },
    ))
}

/// `grant_type` of the token exchange (RFC 8693).
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `grant_type` of the JWT bearer grant (RFC 7523).
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The token type of an identity assertion grant (SEP-990).
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The `typ` of an identity assertion grant's header.
const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

/// The claims of `jwt` if this provider's key signed it and it has not expired.
fn verified_claims(jwt: &str, kind: &str) -> Result<Value, OAuthError> {
    let n = KEYS.jwk["n"].as_str().unwrap_or_default();
    let e = KEYS.jwk["e"].as_str().unwrap_or_default();
    let key = DecodingKey::from_rsa_components(n, e)
        .map_err(|e| OAuthError::invalid_grant(format!("test key: {e}")))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| OAuthError::invalid_grant(format!("{kind}: {e}")))
}

/// RFC 8693 with SEP-990's types: the client's ID token for an identity assertion grant.
fn token_exchange_grant(
    state: &Shared,
    client_id: &str,
    form: &Params,
) -> Result<Value, OAuthError> {
    let issuer = {
        let st = lock(state);
        if !st.config.token_exchange {
            return Err(OAuthError::unsupported_grant_type(TOKEN_EXCHANGE_GRANT));
        }
        st.issuer.clone()
    };
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("requested_token_type") != Some(ID_JAG)
        || get("subject_token_type") != Some("urn:ietf:params:oauth:token-type:id_token")
    {
        return Err(OAuthError::invalid_request("wrong token types"));
    }
    let audience = get("audience").ok_or_else(|| OAuthError::invalid_request("no audience"))?;
    let subject = get("subject_token").ok_or_else(|| OAuthError::invalid_request("no subject"))?;
    let id = verified_claims(subject, "subject_token")?;
    if id["iss"].as_str() != Some(issuer.as_str()) || id["aud"].as_str() != Some(client_id) {
        return Err(OAuthError::invalid_grant(
            "the subject token is not an ID token of mine for this client",
        ));
    }
    let iat = now();
    let claims = json!({
        "iss": issuer,
        "sub": id["sub"],
        "aud": audience,
        "resource": form.resources.first(),
        "client_id": client_id,
        "scope": get("scope"),
        "iat": iat,
        "exp": iat + 300,
        "jti": random_token(),
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.to_owned());
    header.typ = Some(ID_JAG_TYP.to_owned());
    let jag = jsonwebtoken::encode(&header, &claims, &KEYS.signing).expect("sign ID-JAG");
    lock(state).stats.identity_assertions.push(claims);
    Ok(json!({
        "access_token": jag,
        "issued_token_type": ID_JAG,
        "token_type": "N_A",
        "expires_in": 300,
    }))
}

/// RFC 7523 with SEP-990's assertion: an identity assertion grant of the trusted issuer, for
/// this provider, traded for an access token bound to its resource.
fn jwt_bearer_grant(state: &Shared, client_id: &str, form: &Params) -> Result<Value, OAuthError> {
    let (trusted, ctx) = {
        let st = lock(state);
        let Some(trusted) = st.config.identity_assertions_from.clone() else {
            return Err(OAuthError::unsupported_grant_type(JWT_BEARER_GRANT));
        };
        (trusted, issue_context(&st))
    };
    let assertion = form
        .get("assertion")
        .ok_or_else(|| OAuthError::invalid_request("no assertion"))?;
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| OAuthError::invalid_grant(format!("assertion: {e}")))?;
    if header.typ.as_deref() != Some(ID_JAG_TYP) {
        return Err(OAuthError::invalid_grant("not an identity assertion grant"));
    }
    let claims = verified_claims(assertion, "assertion")?;
    if claims["iss"].as_str() != Some(trusted.as_str())
        || claims["aud"].as_str() != Some(ctx.issuer.as_str())
    {
        return Err(OAuthError::invalid_grant(
            "the assertion is not from the trusted provider, or not for me",
        ));
    }
    let resource = claims["resource"].as_str().map(str::to_owned);
    if form.resources.first() != resource.as_ref() {
        return Err(OAuthError::invalid_target(
            "resource differs from the assertion's",
        ));
    }
    lock(state).stats.jwt_bearer_grants.push(claims.clone());
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    Ok(token_response(
        &ctx,
        &Issue {
            client_id,
            sub: claims["sub"].as_str().unwrap_or_default(),
            scope,
            audience: resource.map_or(Value::Null, Value::from),
            id_token_nonce: None,
            refresh_token: None,
        },
    ))
}

/// RFC 8628 section 3.4: a poll with a device code.
fn device_grant(
    state: &Shared,
    client_id: &str,
    form: &Params,
    arrived: Instant,
) -> Result<Value, OAuthError> {
    let error = |code: &'static str, description: &str| {
        OAuthError::new(StatusCode::BAD_REQUEST, code, description)
    };
    let (sub, grant, audience, refresh_token, ctx) = {
        let mut st = lock(state);
        let Some(config) = st.config.device_flow.clone() else {
            return Err(OAuthError::unsupported_grant_type(DEVICE_CODE_GRANT));
        };
        let device_code = form
            .get("device_code")
            .ok_or_else(|| OAuthError::invalid_request("missing device_code"))?;
        let default_audience = st.config.audience.clone();
        let grant = st
            .devices
            .get_mut(device_code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown or already used device code"))?;
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "device code was issued to another client",
            ));
        }
        if arrived >= grant.expires_at {
            return Err(error("expired_token", "the device code has expired"));
        }
        let too_early = grant
            .last_poll
            .is_some_and(|last| arrived.duration_since(last) + DEVICE_POLL_GRACE < grant.interval);
        grant.last_poll = Some(arrived);
        if too_early && config.slow_down {
            return Err(error(
                "slow_down",
                &format!("poll at most every {} s", grant.interval.as_secs()),
            ));
        }
        let sub = match &grant.status {
            DeviceStatus::Pending => {
                return Err(error(
                    "authorization_pending",
                    "the user has not approved yet",
                ));
            }
            DeviceStatus::Denied => {
                return Err(error("access_denied", "the user denied the request"));
            }
            DeviceStatus::Approved(sub) => sub.clone(),
        };
        let audience = audience_for(&form.resources, &grant.resources, &default_audience)?;
        let grant = st
            .devices
            .remove(device_code)
            .expect("the device grant looked up above");
        let refresh_token =
            new_refresh_token(&mut st, client_id, &sub, &grant.scope, &grant.resources);
        st.stats.device_grants += 1;
        (sub, grant, audience, refresh_token, issue_context(&st))
    };
    Ok(token_response(
        &ctx,
        &Issue {
            client_id,
            sub: &sub,
            scope: &grant.scope,
            audience,
            id_token_nonce: Some(None),
            refresh_token: Some(&refresh_token),
        },
    ))
}

/// RFC 8628 section 3.1: a device asks for a device code and a user code.
async fn device_authorization(
    AxumState(state): AxumState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if lock(&state).config.device_flow.is_none() {
        return (StatusCode::NOT_FOUND, "device authorization is off").into_response();
    }
    let form = match token_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let (method, client) = authenticate_client(&state, &headers, &form, "/device/auth");
    let result = client.and_then(|client_id| start_device(&state, &client_id, &form));
    lock(&state).stats.requests.push(RequestRecord {
        kind: RequestKind::DeviceAuthorization,
        client_auth: method.map(str::to_owned),
        resources: form.resources.clone(),
        scope: form.get("scope").cloned(),
        error: result.as_ref().err().map(|e| e.error.to_owned()),
    });
    match result {
        Ok(body) => (StatusCode::OK, no_store(), Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn start_device(state: &Shared, client_id: &str, form: &Params) -> Result<Value, OAuthError> {
    check_resources(&form.resources)?;
    let mut st = lock(state);
    let Some(config) = st.config.device_flow.clone() else {
        return Err(OAuthError::invalid_request("device authorization is off"));
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let device_code = random_token();
    let user_code = loop {
        let code = random_user_code();
        if !st.devices.values().any(|d| d.user_code == code) {
            break code;
        }
    };
    let at = Instant::now();
    // RFC 8628 section 3.5: without `interval` in the response, clients wait 5 s.
    let interval = config.enforced_interval.unwrap_or_else(|| {
        config
            .interval
            .map_or(Duration::from_secs(5), |i| Duration::from_secs(i.as_secs()))
    });
    st.devices.insert(
        device_code.clone(),
        DeviceGrant {
            client_id: client_id.to_owned(),
            user_code: user_code.clone(),
            scope: scope.clone(),
            resources: form.resources.clone(),
            expires_at: at + Duration::from_secs(config.expires_in.as_secs()),
            interval,
            last_poll: None,
            status: DeviceStatus::Pending,
        },
    );
    st.stats.device_authorizations.push(DeviceAuthorization {
        at,
        user_code: user_code.clone(),
        scope,
        resources: form.resources.clone(),
    });
    let verification_uri = format!("{}/device", st.issuer);
    let mut complete = Url::parse(&verification_uri).expect("the issuer is a URL");
    complete
        .query_pairs_mut()
        .append_pair("user_code", &user_code);
    let mut body = json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": complete.as_str(),
        "expires_in": config.expires_in.as_secs(),
    });
    if let Some(interval) = config.interval {
        body["interval"] = json!(interval.as_secs());
    }
    Ok(body)
}

/// A user code as RFC 8628 section 6.1 suggests: eight consonants (no vowels, so no words),
/// shown as `XXXX-XXXX`.
fn random_user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let letters: Vec<char> = rand::random::<[u8; 8]>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    let (first, second) = letters.split_at(4);
    format!(
        "{}-{}",
        first.iter().collect::<String>(),
        second.iter().collect::<String>()
    )
}

/// User codes compare as a person types them: case, dashes and spaces do not matter.
fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Settles a pending, unexpired device authorization; false if there is none with this code.
fn decide_device(st: &mut State, user_code: &str, decision: DeviceStatus) -> bool {
    let wanted = normalize_user_code(user_code);
    let now = Instant::now();
    match st.devices.values_mut().find(|d| {
        normalize_user_code(&d.user_code) == wanted
            && d.status == DeviceStatus::Pending
            && now < d.expires_at
    }) {
        Some(grant) => {
            grant.status = decision;
            true
        }
        None => false,
    }
}

/// The verification page (RFC 8628 section 3.3): visiting it with `user_code` is the person
/// approving (or, per [`FakeIdp::set_authorize_behavior`], denying, or never finishing).
async fn device_page(AxumState(state): AxumState<Shared>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let user_code = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| v.into_owned());
    let page = |status: StatusCode, text: &str| {
        let body = format!("<!doctype html><html><body><p>{text}</p></body></html>");
        (status, Html(body)).into_response()
    };
    let Some(user_code) = user_code else {
        return page(
            StatusCode::OK,
            "<form method=\"get\">Enter the code shown on your device: \
             <input name=\"user_code\"><button>Continue</button></form>",
        );
    };
    let mut st = lock(&state);
    let decision = match st.behavior {
        AuthorizeBehavior::Hang => return page(StatusCode::OK, "Waiting"),
        AuthorizeBehavior::Approve => DeviceStatus::Approved(st.subject.clone()),
        AuthorizeBehavior::Deny => DeviceStatus::Denied,
    };
    let approved = matches!(decision, DeviceStatus::Approved(_));
    match (decide_device(&mut st, &user_code, decision), approved) {
        (true, true) => page(
            StatusCode::OK,
            "Device approved. You may close this window.",
        ),
        (true, false) => page(StatusCode::OK, "Request denied."),
        (false, _) => page(StatusCode::NOT_FOUND, "Unknown, used or expired code."),
    }
}

/// RFC 7009: token revocation.
async fn revoke(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !lock(&state).config.revocation {
        return (StatusCode::NOT_FOUND, "revocation is off").into_response();
    }
    let form = match token_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let (method, client) = authenticate_client(&state, &headers, &form, "/revoke");
    let result = client.and_then(|client_id| revoke_token(&state, &client_id, &form));
    lock(&state).stats.requests.push(RequestRecord {
        kind: RequestKind::Revocation,
        client_auth: method.map(str::to_owned),
        resources: form.resources.clone(),
        scope: form.get("scope").cloned(),
        error: result.as_ref().err().map(|e| e.error.to_owned()),
    });
    match result {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

fn revoke_token(state: &Shared, client_id: &str, form: &Params) -> Result<(), OAuthError> {
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("missing token"))?;
    let mut st = lock(state);
    let found = if let Some(record) = st.refresh_tokens.get(token) {
        if record.client_id != client_id {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the token was issued to another client",
            ));
        }
        let family = record.family;
        st.revoked_families.insert(family);
        RevokedToken::RefreshToken
    } else if st.access_tokens.contains(token) {
        RevokedToken::AccessToken
    } else {
        RevokedToken::Unknown
    };
    st.stats.revocations.push(Revocation {
        token: token.clone(),
        token_type_hint: form.get("token_type_hint").cloned(),
        found,
    });
    Ok(())
}
