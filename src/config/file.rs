//! The configuration file's model: what a user may write, before defaults and checks.
//!
//! These serde types are the one place that says which keys exist: the JSON Schema
//! ([`json_schema`](super::json_schema)) and so `validate`'s structural walk derive from them,
//! and every layer (file, env vars, flags) is merged into them. Everything is optional here,
//! even what a run needs, because any layer may supply it; [`resolve`](super::resolve) applies
//! the defaults and the rules.

use std::{collections::BTreeMap, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::Secret;

/// The configuration as written by the user, before defaults and checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "authful-mcp-proxy configuration")]
pub struct Config {
    /// Directory holding the token cache files (and the remembered lists); `~` is your home
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "~/.fastmcp/oauth-mcp-client-cache"))]
    pub cache_dir: Option<PathBuf>,
    /// Named OIDC client registrations; backends refer to them by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oidc_profiles: BTreeMap<String, OidcProfileConfig>,
    /// Named remote MCP servers: at least one (or the drop-in's `MCP_BACKEND_URL`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, BackendConfig>,
    /// How the aggregated server presents itself.
    #[serde(default, skip_serializing_if = "GatewayConfig::is_empty")]
    pub gateway: GatewayConfig,
}

/// Settings of the aggregating server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `serverInfo.name` when several backends are aggregated (default `authful-mcp-proxy`).
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    #[schemars(extend("default" = "authful-mcp-proxy"))]
    pub name: Option<String>,
    /// Between a backend's prefix and a tool or prompt name: `_` (default), `__` or `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "_"))]
    pub separator: Option<Separator>,
    /// Seconds `initialize` waits for backends before answering with those that are ready
    /// (default 5; in the drop-in too); the others join later and are announced with `list_changed`. Known clients
    /// get their own waits unless this or `first_list_timeout` is set (see the table in docs/desktop-clients.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = super::DEFAULT_STARTUP_TIMEOUT_SECS))]
    pub startup_timeout: Option<u64>,
    /// Seconds after the start until which the first answer to each kind of list waits for
    /// every backend to be ready or failed, logins included (default 20, within Claude Code's
    /// 30 s from spawn); `0` does not wait. Clients that list once see every backend whose
    /// login finished in time. Known clients get their own waits unless this or
    /// `startup_timeout` is set. In the drop-in: how long the first lists wait for a login in
    /// progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = super::DEFAULT_FIRST_LIST_TIMEOUT_SECS))]
    pub first_list_timeout: Option<u64>,
    /// The longest exposed tool or prompt name, in characters (default 64, 16 to 128); longer
    /// names are shortened, ending in `_` and 8 hex digits of a hash. Leave room for what the
    /// client adds: Claude Code exposes `mcp__<server>__<tool>` to a model that takes 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = crate::naming::MIN_NAME_BUDGET, max = crate::naming::MAX_NAME_BUDGET))]
    #[schemars(extend("default" = crate::naming::MAX_TOOL_NAME))]
    pub max_name_length: Option<u64>,
    /// When the gateway lists its own two tools, `gateway_list_tools` and `gateway_call_tool`,
    /// which reach backends that joined after the client's first tool list (default `auto`:
    /// when a backend was missing from that list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "auto"))]
    pub fallback_tools: Option<FallbackTools>,
    /// Keep each backend's lists and its `initialize` answer in the cache directory, and
    /// answer `initialize` and the first lists from them at the next start, while the backends
    /// connect and sign in (default `true`). Fresh lists that differ replace them, announced
    /// with `list_changed`. No token or secret is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub remember_lists: Option<bool>,
    /// Seconds a request may wait for a backend's answer (default 300), unless the backend sets
    /// its own; every progress notification starts the wait anew, and `0` waits forever. On
    /// expiry the request is cancelled at the backend and the client gets an error naming it.
    /// It also bounds the MCP handshake with a backend (not the browser login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = super::DEFAULT_REQUEST_TIMEOUT_SECS))]
    pub request_timeout: Option<u64>,
    /// The `https://` URL of the proxy's client ID metadata document, the client id of every
    /// backend with `auth: oauth` at servers that take such documents (others get a client the
    /// proxy registers). See docs/public-servers.md for what it must contain.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_metadata_url: Option<String>,
    /// Loopback URL the browser returns to after the sign-in of a backend with `auth: oauth`
    /// (default `http://localhost:8080/auth/callback`); the proxy registers it with the server.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    #[schemars(extend("default" = super::DEFAULT_REDIRECT_URL))]
    pub redirect_url: Option<String>,
}

impl GatewayConfig {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// When the gateway offers its own tools for backends that joined late.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FallbackTools {
    /// from the first tool list on, when a backend is missing from it
    #[default]
    Auto,
    /// from the start
    Always,
    /// never (clients must list again on `list_changed` to reach late backends)
    Never,
}

/// How a backend is reached.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// HTTP+SSE if the URL's path has a segment `sse` (as fastmcp, so the Python original,
    /// decides); otherwise Streamable HTTP, and HTTP+SSE if the server refuses that with
    /// `400`, `404` or `405`
    #[default]
    Auto,
    /// Streamable HTTP (MCP 2025-03-26 and later) only
    StreamableHttp,
    /// HTTP+SSE (MCP 2024-11-05) only
    Sse,
}

/// Which revision of MCP the proxy speaks to a backend.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    /// the one the backend last spoke (remembered); else `initialize` (2025-11-25 and
    /// before), and 2026-07-28 (`server/discover`) when the backend refuses that for it
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// 2026-07-28 only: stateless, `server/discover`, no `initialize`
    #[serde(rename = "2026-07-28")]
    Modern,
    /// `initialize` only (2025-11-25, or the latest the backend has)
    #[serde(rename = "2025-11-25")]
    Initialize,
}

/// How a backend without an `oidc_profile` is signed in to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendAuth {
    /// its own OAuth, discovered from the server (RFC 9728, RFC 8414), with a client the proxy
    /// registers there
    Oauth,
    /// no sign-in
    None,
}

/// The separator between prefix and name.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub enum Separator {
    /// `tools_search`
    #[serde(rename = "_")]
    Underscore,
    /// `tools__search`
    #[serde(rename = "__")]
    DoubleUnderscore,
    /// `tools-search`
    #[serde(rename = "-")]
    Dash,
}

impl Separator {
    /// The separator as text.
    pub fn as_str(self) -> &'static str {
        match self {
            Separator::Underscore => "_",
            Separator::DoubleUnderscore => "__",
            Separator::Dash => "-",
        }
    }
}

/// Which of a backend's tools are exposed, by glob on the backend's own names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolFilterConfig {
    /// Only tools matching one of these globs (`*`, `?`, `[a-z]`); all tools when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Tools matching one of these globs are hidden, even when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// One OIDC client at one identity provider: registered there by an administrator
/// (`client_id`), named by a client ID metadata document (`client_metadata_url`), or
/// registered by the proxy itself at the first sign-in (neither given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcProfileConfig {
    /// Issuer URL; discovery reads `{issuer_url}/.well-known/openid-configuration` (or RFC
    /// 8414's `oauth-authorization-server`); `https://`, except on `localhost`, `127.0.0.1` or
    /// `[::1]`. Required with `client_secret` or
    /// `client_assertion`. Otherwise optional when every backend of the profile names the same
    /// authorization server (RFC 9728 protected resource metadata): the first sign-in there
    /// pins it. When both are there, metadata naming other servers is not used.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub issuer_url: Option<String>,
    /// OAuth client id registered at the identity provider. An `https://` URL is a client ID
    /// metadata document (as `client_metadata_url`). Without one (and without
    /// `client_metadata_url`), the proxy registers itself at the server's registration endpoint
    /// (RFC 7591) at the first sign-in and keeps that client in the cache directory.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_id: Option<String>,
    /// The `https://` URL of this client's metadata document (a client ID metadata document):
    /// the client id at servers that announce `client_id_metadata_document_supported`; at
    /// others the proxy registers itself (RFC 7591). Whoever hosts it must serve the JSON
    /// described in docs/public-servers.md, with this URL as its `client_id`.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_metadata_url: Option<String>,
    /// Client secret, for confidential clients only; write `${VAR}` rather than the secret
    /// itself.
    #[serde(
        default,
        deserialize_with = "secret_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<Secret>,
    /// Scopes: a space-separated string or a list (default `openid profile email`); `openid` is
    /// always added. A profile with no `issuer_url`, `client_id` or `scopes` asks for the
    /// scopes its server names instead (MCP's order: its `401`, else its metadata's
    /// `scopes_supported`, else none), without `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = super::DEFAULT_SCOPES))]
    pub scopes: Option<Scopes>,
    /// Loopback URL the browser returns to after login (default
    /// `http://localhost:8080/auth/callback`): `http://` on `localhost`, `127.0.0.1` or `[::1]`
    /// with an explicit port, registered at the provider.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    #[schemars(extend("default" = super::DEFAULT_REDIRECT_URL))]
    pub redirect_url: Option<String>,
    /// Seconds a browser login (or a device code) may take before the pending request fails
    /// (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = super::DEFAULT_LOGIN_TIMEOUT_SECS))]
    pub login_timeout: Option<u64>,
    /// How tokens are obtained: `browser` (default: a login in the system browser),
    /// `device` (RFC 8628: a code to enter on another device, for machines without a browser)
    /// or `client_credentials` (a service account: needs `client_secret` or
    /// `client_assertion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "browser"))]
    pub flow: Option<Flow>,
    /// `false` prints the login URL (on stderr, and as a log message to the client) without
    /// trying to open a browser (a remote shell); the `browser` flow only (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub open_browser: Option<bool>,
    /// Authenticate the client with a signed JWT (RFC 7523 `private_key_jwt`) instead of a
    /// client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion: Option<ClientAssertionConfig>,
    /// The resource indicator (RFC 8707) of this profile's backends, unless a backend sets its
    /// own: a URL, `true` (each backend's own, as its RFC 9728 metadata or its URL says) or
    /// `false` (never sent: for providers that refuse it, such as Entra ID's AADSTS9010010).
    /// Unset, it is sent for backends that announce their metadata, and never otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceConfig>,
    /// Cross-app access (SEP-990, enterprise-managed authorization): no sign-in at this
    /// profile's server; the person's ID token from the company identity provider is exchanged
    /// there for an identity assertion grant (RFC 8693), which this profile's server takes for
    /// its token (RFC 7523 JWT bearer grant). Needs `issuer_url` and `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_assertion: Option<IdentityAssertionConfig>,
    /// Extra parameters of the authorization request (and of the device authorization and
    /// client-credentials requests): `prompt`, `login_hint`, Auth0's `audience`, Google's
    /// `access_type`, ... The parameters the proxy sets itself are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
}

/// How a profile obtains its tokens.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// a login in the system browser (authorization code with PKCE)
    #[default]
    Browser,
    /// a code entered on another device (RFC 8628 device authorization)
    Device,
    /// the client's own credentials, no person (service accounts, CI)
    ClientCredentials,
}

impl Flow {
    /// The name the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Browser => "browser",
            Flow::Device => "device",
            Flow::ClientCredentials => "client_credentials",
        }
    }
}

/// A private key that signs the client's assertions (RFC 7523).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["key_file"]))]
pub struct ClientAssertionConfig {
    /// PEM file of the private key (PKCS#8, or PKCS#1 for RSA); keep it readable by you only.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub key_file: Option<String>,
    /// Signing algorithm (default `RS256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "RS256"))]
    pub algorithm: Option<AssertionAlgorithm>,
    /// `kid` of the key, as registered with the identity provider.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub key_id: Option<String>,
    /// The assertion's `aud`: `token_endpoint` (default: the token endpoint's URL, as RFC 7523
    /// and OpenID Connect say; Keycloak, Okta, Entra ID), `issuer` (the issuer identifier, as RFC 7523bis says) or a URL.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    #[schemars(extend("default" = "token_endpoint"))]
    pub audience: Option<String>,
}

/// Where a cross-app access profile's ID token comes from, and where it is exchanged: the
/// sign-in of another profile (`profile`), or a file an SSO agent keeps (`id_token_file`, with
/// the identity provider's `issuer_url` and `client_id`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityAssertionConfig {
    /// The profile of the company identity provider: its sign-in's ID token is exchanged at
    /// its token endpoint, with its client.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub profile: Option<String>,
    /// A file holding the ID token (read at each exchange), instead of a profile's sign-in.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub id_token_file: Option<String>,
    /// With `id_token_file`: the identity provider's issuer URL.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub issuer_url: Option<String>,
    /// With `id_token_file`: the client id at the identity provider.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_id: Option<String>,
    /// With `id_token_file`: that client's secret, if it is confidential.
    #[serde(
        default,
        deserialize_with = "secret_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<Secret>,
}

/// The algorithms a client assertion may be signed with.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub enum AssertionAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256
    #[default]
    RS256,
    /// RSA PKCS#1 v1.5 with SHA-384
    RS384,
    /// RSA PKCS#1 v1.5 with SHA-512
    RS512,
    /// RSA-PSS with SHA-256
    PS256,
    /// RSA-PSS with SHA-384
    PS384,
    /// RSA-PSS with SHA-512
    PS512,
    /// ECDSA P-256 with SHA-256
    ES256,
    /// ECDSA P-384 with SHA-384
    ES384,
    /// Ed25519
    EdDSA,
}

/// A resource indicator setting: a URL, or `true`/`false`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum ResourceConfig {
    /// `true`: the backend's own (from its metadata, else its URL); `false`: never sent.
    Switch(bool),
    /// This resource indicator.
    Url(String),
}

/// One remote MCP server reached over Streamable HTTP.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
// Optional in Rust because `MCP_BACKEND_URL` or a flag may fill it; required in a file.
#[schemars(extend("required" = ["url"]))]
pub struct BackendConfig {
    /// MCP endpoint of the server (Streamable HTTP, or HTTP+SSE); `https://`, except on a
    /// loopback host.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub url: Option<String>,
    /// Name of the OIDC profile whose tokens this backend accepts; none means no login
    /// (unless `auth: oauth`).
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub oidc_profile: Option<String>,
    /// `oauth`: the server runs OAuth itself (MCP's authorization spec): a sign-in of its own,
    /// at the authorization server its metadata names, with a client registered there and the
    /// scopes it asks for; no `oidc_profile` to write. `none`: no sign-in (the default without
    /// `oidc_profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BackendAuth>,
    /// Name prefix for this backend's tools, prompts and resources: defaults to the backend's
    /// name; `""` serves it unprefixed. Must match `^[a-z][a-z0-9-]*$`, must not contain the
    /// separator, and must differ between enabled backends.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub prefix: Option<String>,
    /// Extra HTTP headers on every request (API keys, team ids); combined with the bearer
    /// token. Not allowed: `Authorization` when the backend signs in (`oidc_profile`, `auth:
    /// oauth`), and `Accept`, `Content-Type`, `Mcp-Session-Id`, `Mcp-Protocol-Version`,
    /// `Last-Event-ID`, which the proxy sets itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<String, Secret>,
    /// Tool filter on the backend's own tool names.
    #[serde(default, skip_serializing_if = "ToolFilterConfig::is_empty")]
    pub tools: ToolFilterConfig,
    /// `false` keeps the backend in the file but out of the gateway (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// Seconds a request may wait for this backend's answer (default: `gateway.request_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
    /// `auto` (default), `streamable-http` or `sse`: how the backend is reached. Over HTTP+SSE
    /// the token goes on the event stream and on every POST, and only to an endpoint on the
    /// server's own origin; the stream's end is the session's end, and the proxy connects
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "auto"))]
    pub transport: Option<Transport>,
    /// `auto` (default), `2026-07-28` or `2025-11-25`: which revision of MCP it is spoken. A
    /// 2026-07-28 server's requests for input (`input_required`) are put to the client as
    /// requests of its own revision, and the call is sent again with the answers (at most 10
    /// rounds). Every combination of client and backend revision: docs/protocol-eras.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "auto"))]
    pub protocol: Option<Protocol>,
    /// This backend's resource indicator (RFC 8707), over its profile's `resource`: a URL,
    /// `true` (its own, from its RFC 9728 metadata or its URL) or `false` (never sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceConfig>,
}

impl ToolFilterConfig {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Scopes as a space-separated string or a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum Scopes {
    /// `"openid profile email"`
    Text(String),
    /// `[openid, profile, email]`
    List(Vec<String>),
}

impl Scopes {
    /// The scopes in order, `openid` first and each one once.
    pub fn normalized(&self) -> Vec<String> {
        let mut scopes = vec!["openid".to_owned()];
        for word in self.words() {
            if !scopes.contains(&word) {
                scopes.push(word);
            }
        }
        scopes
    }

    /// The scopes as written, each one once.
    pub fn words(&self) -> Vec<String> {
        let words: Vec<&str> = match self {
            Scopes::Text(text) => text.split_whitespace().collect(),
            Scopes::List(list) => list.iter().flat_map(|s| s.split_whitespace()).collect(),
        };
        let mut scopes: Vec<String> = Vec::new();
        for word in words {
            if !scopes.iter().any(|s| s == word) {
                scopes.push(word.to_owned());
            }
        }
        scopes
    }
}

/// Env vars and YAML may carry `12345` where a string is meant (a numeric client id, say):
/// take any scalar as text instead of failing.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Uint(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(
        Option::<Scalar>::deserialize(deserializer)?.map(|v| match v {
            Scalar::Text(s) => s,
            Scalar::Int(n) => n.to_string(),
            Scalar::Uint(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }),
    )
}

/// [`text`], kept as a [`Secret`] so that no `Debug` of the configuration shows it.
fn secret_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    Ok(text(deserializer)?.map(Secret::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_always_start_with_openid_once() {
        assert_eq!(
            Scopes::Text("profile openid email".into()).normalized(),
            ["openid", "profile", "email"]
        );
        assert_eq!(
            Scopes::List(vec!["mcp:read".into()]).normalized(),
            ["openid", "mcp:read"]
        );
    }
}
