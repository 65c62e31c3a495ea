//! The settings a run uses: the configuration with every default applied and every rule
//! passed. Only [`resolve`](super::resolve) makes them from a [`Config`](super::Config);
//! tests and embedders may build them directly.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use url::Url;

use super::{AssertionAlgorithm, FallbackTools, Flow, Protocol, Separator, Transport};
use crate::{glob::ToolFilter, secret::Secret};

/// Scopes requested when none are configured (the Python original's default).
pub const DEFAULT_SCOPES: &str = "openid profile email";
/// Where the browser is sent back to when no redirect URL is configured (the Python
/// original's default).
pub const DEFAULT_REDIRECT_URL: &str = "http://localhost:8080/auth/callback";
/// How long a browser login may take before the pending request fails, in seconds.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 300;

/// A usable OIDC profile: every default applied, every value checked.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name in the configuration.
    pub name: String,
    /// Issuer URL exactly as configured: discovery compares it with the provider's `issuer`
    /// verbatim, so it is not normalised. `None`: the profile's backends name it (RFC 9728).
    pub issuer_url: Option<String>,
    /// OAuth client id registered by an administrator; `None`: the proxy names itself by
    /// `client_metadata_url` where the server takes that, else registers itself (RFC 7591).
    pub client_id: Option<String>,
    /// The URL of the client's metadata document (CIMD), its client id where supported.
    pub client_metadata_url: Option<String>,
    /// Client secret of a confidential client.
    pub client_secret: Option<Secret>,
    /// The key that signs the client's assertions (RFC 7523), instead of a secret.
    pub client_assertion: Option<ClientAssertion>,
    /// Requested scopes: `openid` first, except for the client-credentials flow.
    pub scopes: Vec<String>,
    /// Loopback redirect URL the callback server listens on.
    pub redirect_url: Url,
    /// How long a login may take: the browser's, or the device code's wait.
    pub login_timeout: Duration,
    /// How tokens are obtained.
    pub flow: Flow,
    /// The browser flow opens the system browser (else it only prints the URL).
    pub open_browser: bool,
    /// Extra parameters of the authorization (and device, client-credentials) request.
    pub authorize_params: Vec<(String, String)>,
    /// The resource indicator of its backends that set none of their own.
    pub resource: Resource,
    /// Cross-app access (SEP-990): tokens from the person's identity at another provider.
    pub identity_assertion: Option<IdentityAssertion>,
    /// The server says the scopes, in MCP's order: those its challenge names, else those its
    /// metadata publishes, else none (`scopes` is empty, and `openid` is not added).
    pub server_scopes: bool,
    /// The profile of a backend with `auth: oauth`: a backend without metadata is its own
    /// authorization server (MCP 2025-03-26), at the default endpoints when it publishes none.
    pub own_oauth: bool,
}

impl Profile {
    /// A browser-flow profile with the defaults for everything not given.
    pub fn new(name: &str, issuer_url: Option<&str>, client_id: &str, redirect_url: Url) -> Self {
        Self {
            name: name.to_owned(),
            issuer_url: issuer_url.map(str::to_owned),
            client_id: Some(client_id.to_owned()),
            client_metadata_url: None,
            client_secret: None,
            client_assertion: None,
            scopes: DEFAULT_SCOPES.split(' ').map(str::to_owned).collect(),
            redirect_url,
            login_timeout: Duration::from_secs(DEFAULT_LOGIN_TIMEOUT_SECS),
            flow: Flow::Browser,
            open_browser: true,
            authorize_params: Vec::new(),
            resource: Resource::Auto,
            identity_assertion: None,
            server_scopes: false,
            own_oauth: false,
        }
    }

    /// What a backend of this profile may be waiting for while it connects, in words for an
    /// error message.
    pub fn waiting_for(&self) -> String {
        let issuer = self.issuer_label();
        match self.flow {
            Flow::Browser if self.open_browser => format!(
                "waiting for you to log in to {issuer} in the browser (the URL is printed on \
                 stderr)"
            ),
            Flow::Browser => format!(
                "waiting for you to open the login URL of {issuer} (printed on stderr and sent \
                 as a log message)"
            ),
            Flow::Device => format!(
                "waiting for you to enter the device code of {issuer} (printed on stderr and \
                 sent as a log message)"
            ),
            Flow::ClientCredentials => format!("getting a token from {issuer}"),
        }
    }

    /// The client as cache files and messages name it: its configured id, its metadata
    /// document's URL, or `registered` (a client the proxy registers at the server).
    pub fn client_label(&self) -> &str {
        self.client_id
            .as_deref()
            .or(self.client_metadata_url.as_deref())
            .unwrap_or("registered")
    }

    /// The issuer as configured, or a word for one the backends will name.
    pub fn issuer_label(&self) -> &str {
        self.issuer_url
            .as_deref()
            .unwrap_or("the issuer its backends name")
    }
}

/// Where a cross-app access profile gets the person's ID token, and where it is exchanged for
/// an identity assertion grant (SEP-990).
#[derive(Debug, Clone)]
pub struct IdentityAssertion {
    /// The company identity provider: its token endpoint takes the exchange, with its client;
    /// without `id_token_file`, its sign-in provides the ID token.
    pub idp: Arc<Profile>,
    /// A file holding the ID token, read at each exchange.
    pub id_token_file: Option<PathBuf>,
}

/// A private key that signs client assertions (RFC 7523 `private_key_jwt`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAssertion {
    /// The PEM file of the private key, read at each token request (keys get rotated).
    pub key_file: PathBuf,
    /// The signing algorithm.
    pub algorithm: AssertionAlgorithm,
    /// The key's `kid`.
    pub key_id: Option<String>,
    /// Whom the assertion is for.
    pub audience: AssertionAudience,
}

/// The `aud` of a client assertion: providers differ in what they accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The URL of the endpoint the request goes to (RFC 7523, OpenID Connect Core §9).
    #[default]
    TokenEndpoint,
    /// The issuer identifier (RFC 7523bis).
    Issuer,
    /// This value.
    Url(String),
}

/// Which resource indicator (RFC 8707) a backend's tokens are bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Resource {
    /// The resource its RFC 9728 metadata names, if it has any; otherwise none.
    #[default]
    Auto,
    /// Never a resource indicator.
    Off,
    /// Its own: what its metadata names, else its URL.
    Own,
    /// This one.
    Url(String),
}

/// A usable backend.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The backend's name in the configuration.
    pub name: String,
    /// Its MCP endpoint.
    pub url: Url,
    /// How it is reached there.
    pub transport: Transport,
    /// Which revision of MCP it is spoken.
    pub protocol: Protocol,
    /// Profile whose tokens the backend accepts.
    pub profile: Option<Arc<Profile>>,
    /// Name prefix; `None` when served unprefixed.
    pub prefix: Option<String>,
    /// Static headers sent with every request; their values are secrets (API keys).
    pub headers: Vec<(String, Secret)>,
    /// Which of the backend's tools are exposed.
    pub tools: ToolFilter,
    /// How long a request may wait for an answer without progress; `None` waits forever.
    pub request_timeout: Option<Duration>,
    /// The resource indicator its tokens are bound to.
    pub resource: Resource,
}

/// Default `gateway.request_timeout`, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 300;

impl Backend {
    /// A backend with no headers and no filter (the drop-in case).
    pub fn new(name: &str, url: Url, profile: Option<Arc<Profile>>, prefix: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            url,
            transport: Transport::Auto,
            protocol: Protocol::Auto,
            profile,
            prefix: prefix.map(str::to_owned),
            headers: Vec::new(),
            tools: ToolFilter::default(),
            request_timeout: Some(Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS)),
            resource: Resource::Auto,
        }
    }
}

/// How the aggregated server presents itself.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// `serverInfo.name`.
    pub name: String,
    /// Between prefix and tool or prompt name.
    pub separator: Separator,
    /// How long `initialize` waits for backends (for clients not in the table of known ones,
    /// or for all with `waits_by_client` off).
    pub startup_timeout: Duration,
    /// How long after the start the first answer to each kind of list may wait for backends;
    /// zero does not wait (as `startup_timeout`, for which clients).
    pub first_list_timeout: Duration,
    /// Known clients get their own waits (see `server::client_waits`); off when the
    /// configuration sets either timeout.
    pub waits_by_client: bool,
    /// The longest exposed tool or prompt name, in characters.
    pub max_name_length: usize,
    /// When the gateway offers its own tools for backends that joined late.
    pub fallback_tools: FallbackTools,
    /// Keep each backend's lists and introduction in the cache directory, and answer from them
    /// while it connects (see [`remembered`](crate::remembered)).
    pub remember_lists: bool,
}

/// Default `gateway.startup_timeout`.
pub const DEFAULT_STARTUP_TIMEOUT_SECS: u64 = 5;

/// Default `gateway.first_list_timeout`, for clients not in the table of known ones: within
/// Claude Code's 30 s from spawn, the shortest window of a client that lists once (Claude
/// Desktop's 60 s, and the TypeScript SDK's 60-s request timeout, are longer).
pub const DEFAULT_FIRST_LIST_TIMEOUT_SECS: u64 = 20;

impl Default for Gateway {
    fn default() -> Self {
        Self {
            name: "authful-mcp-proxy".into(),
            separator: Separator::Underscore,
            startup_timeout: Duration::from_secs(DEFAULT_STARTUP_TIMEOUT_SECS),
            first_list_timeout: Duration::from_secs(DEFAULT_FIRST_LIST_TIMEOUT_SECS),
            waits_by_client: true,
            max_name_length: crate::naming::MAX_TOOL_NAME,
            fallback_tools: FallbackTools::Auto,
            remember_lists: true,
        }
    }
}

/// How the proxy serves its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The drop-in: one backend, unprefixed, served as it is — its identity, capabilities,
    /// instructions, names and lists — as the Python original serves it.
    DropIn,
    /// The gateway: backends behind their prefixes, their lists merged and kept in memory.
    Gateway,
}

impl Mode {
    /// The rule: one backend without a prefix is the drop-in (the drop-in's settings make
    /// one, named `default`; a file may too, with `prefix: ""`); anything else, the gateway.
    pub fn of(backends: &[Backend]) -> Self {
        match backends {
            [only] if only.prefix.is_none() => Mode::DropIn,
            _ => Mode::Gateway,
        }
    }
}

/// The configuration, resolved and checked, ready to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory of the token cache.
    pub cache_dir: PathBuf,
    /// Enabled backends in name order.
    pub backends: Vec<Backend>,
    /// How they are served ([`Mode::of`] them).
    pub mode: Mode,
    /// Aggregation settings.
    pub gateway: Gateway,
}

/// The Python original's token cache location, `~/.fastmcp/oauth-mcp-client-cache`.
pub fn default_cache_dir() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".fastmcp")
        .join("oauth-mcp-client-cache")
}

pub(super) fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir().map_or_else(|| path.to_path_buf(), |h| h.join(rest)),
        Err(_) => path.to_path_buf(),
    }
}
