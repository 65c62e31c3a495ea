//! The configuration model and how its layers merge.
//!
//! Lowest first: built-in defaults < YAML file < the seed's env vars (`MCP_BACKEND_URL`,
//! `OIDC_*`) < `AUTHFUL_MCP_*` env vars (`__` nests) < command-line flags. The seed's env vars and
//! flags fill OIDC profile `default` and backend `default`, so the single-backend drop-in and the
//! multi-backend file share one model.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Serialized},
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

pub mod interpolate;
pub mod locate;
mod schema;
pub mod validate;

pub use schema::{json_schema, json_schema_text};

use crate::{
    glob::{Glob, ToolFilter},
    naming::{MAX_NAME_BUDGET, MIN_NAME_BUDGET},
    secret::Secret,
};

/// Scopes requested when none are configured (the seed's default).
pub const DEFAULT_SCOPES: &str = "openid profile email";
/// Where the browser is sent back to when no redirect URL is configured (the seed's default).
pub const DEFAULT_REDIRECT_URL: &str = "http://localhost:8080/auth/callback";
/// How long a browser login may take before the pending request fails.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 300;
/// The profile and backend that the seed's env vars and flags define.
pub const DEFAULT_NAME: &str = "default";
/// Prefix of the env vars that address any key of the model.
pub const ENV_PREFIX: &str = "AUTHFUL_MCP_";

/// The configuration as written by the user, before defaults and checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "authful-mcp-proxy configuration")]
pub struct Config {
    /// Directory holding the token cache files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Named OIDC client registrations; backends refer to them by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oidc_profiles: BTreeMap<String, OidcProfileConfig>,
    /// Named remote MCP servers.
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
    pub name: Option<String>,
    /// Between a backend's prefix and a tool or prompt name: `_` (default), `__` or `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<Separator>,
    /// Seconds `initialize` waits for backends before answering with those that are ready
    /// (default 5); the others join later and are announced with `list_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout: Option<u64>,
    /// Seconds the first answer to each kind of list waits until every backend is ready or has
    /// failed, logins included (default 45, below Claude Desktop's 60-s limit); `0` does not
    /// wait. Clients that list once see every backend whose login finished in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_list_timeout: Option<u64>,
    /// The longest exposed tool or prompt name, in characters (default 64, 16 to 128); longer
    /// names are shortened, ending in `_` and 8 hex digits of a hash. Leave room for what the
    /// client adds: Claude Code exposes `mcp__<server>__<tool>` to a model that takes 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 128))]
    pub max_name_length: Option<u64>,
    /// When the gateway lists its own two tools, `gateway_list_tools` and `gateway_call_tool`,
    /// which reach backends that joined after the client's first tool list (default `auto`:
    /// when a backend was missing from that list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_tools: Option<FallbackTools>,
    /// Seconds a request may wait for a backend's answer (default 300), unless the backend sets
    /// its own; every progress notification starts the wait anew, and `0` waits forever. On
    /// expiry the request is cancelled at the backend and the client gets an error naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
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

/// One OIDC client registration at one identity provider.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
// Optional in Rust because the seed's env vars and flags may fill them; required in a file.
#[schemars(extend("required" = ["issuer_url", "client_id"]))]
pub struct OidcProfileConfig {
    /// Issuer URL; discovery reads `{issuer_url}/.well-known/openid-configuration`.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub issuer_url: Option<String>,
    /// OAuth client id registered at the identity provider.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_id: Option<String>,
    /// Client secret, for confidential clients only.
    #[serde(
        default,
        deserialize_with = "secret_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<Secret>,
    /// Scopes: a space-separated string or a list. `openid` is always added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Scopes>,
    /// Loopback URL the browser returns to after login.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub redirect_url: Option<String>,
    /// Seconds a browser login may take (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_timeout: Option<u64>,
}

/// One remote MCP server reached over Streamable HTTP.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
// Optional in Rust because `MCP_BACKEND_URL` or a flag may fill it; required in a file.
#[schemars(extend("required" = ["url"]))]
pub struct BackendConfig {
    /// Streamable HTTP endpoint of the MCP server.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub url: Option<String>,
    /// Name of the OIDC profile whose tokens this backend accepts; none means no login.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub oidc_profile: Option<String>,
    /// Name prefix for this backend's tools, prompts and resources: defaults to the backend's
    /// name; `""` serves it unprefixed.
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub prefix: Option<String>,
    /// Extra HTTP headers on every request (API keys, say); combined with the bearer token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<String, Secret>,
    /// Tool filter on the backend's own tool names.
    #[serde(default, skip_serializing_if = "ToolFilterConfig::is_empty")]
    pub tools: ToolFilterConfig,
    /// `false` keeps the backend in the file but out of the gateway (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Seconds a request may wait for this backend's answer (default: `gateway.request_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
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
        let words: Vec<&str> = match self {
            Scopes::Text(text) => text.split_whitespace().collect(),
            Scopes::List(list) => list.iter().flat_map(|s| s.split_whitespace()).collect(),
        };
        let mut scopes = vec!["openid".to_owned()];
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

/// The seed's single-backend settings, as they come from its env vars or from flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeedSettings {
    /// `MCP_BACKEND_URL` / positional argument.
    pub backend_url: Option<String>,
    /// `OIDC_ISSUER_URL` / `--oidc-issuer-url`.
    pub issuer_url: Option<String>,
    /// `OIDC_CLIENT_ID` / `--oidc-client-id`.
    pub client_id: Option<String>,
    /// `OIDC_CLIENT_SECRET` / `--oidc-client-secret`.
    pub client_secret: Option<Secret>,
    /// `OIDC_SCOPES` / `--oidc-scopes`.
    pub scopes: Option<String>,
    /// `OIDC_REDIRECT_URL` / `--oidc-redirect-url`.
    pub redirect_url: Option<String>,
    /// `--login-timeout` (no seed env var).
    pub login_timeout: Option<u64>,
    /// `--request-timeout` (no seed env var).
    pub request_timeout: Option<u64>,
    /// `--cache-dir` (no seed env var).
    pub cache_dir: Option<PathBuf>,
}

impl SeedSettings {
    /// Reads the seed's env vars through `lookup` (empty values count as unset).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            backend_url: get("MCP_BACKEND_URL"),
            issuer_url: get("OIDC_ISSUER_URL"),
            client_id: get("OIDC_CLIENT_ID"),
            client_secret: get("OIDC_CLIENT_SECRET").map(Secret::new),
            scopes: get("OIDC_SCOPES"),
            redirect_url: get("OIDC_REDIRECT_URL"),
            login_timeout: None,
            request_timeout: None,
            cache_dir: None,
        }
    }

    /// This layer as a partial [`Config`]: profile and backend `default`.
    fn as_config(&self) -> Config {
        let mut config = Config {
            cache_dir: self.cache_dir.clone(),
            ..Config::default()
        };
        let profile = OidcProfileConfig {
            issuer_url: self.issuer_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scopes: self.scopes.clone().map(Scopes::Text),
            redirect_url: self.redirect_url.clone(),
            login_timeout: self.login_timeout,
        };
        if profile != OidcProfileConfig::default() {
            config
                .oidc_profiles
                .insert(DEFAULT_NAME.to_owned(), profile);
        }
        if let Some(url) = &self.backend_url {
            config.backends.insert(
                DEFAULT_NAME.to_owned(),
                BackendConfig {
                    url: Some(url.clone()),
                    oidc_profile: Some(DEFAULT_NAME.to_owned()),
                    ..BackendConfig::default()
                },
            );
        }
        config.gateway.request_timeout = self.request_timeout;
        config
    }
}

/// Where configuration comes from, for one run.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// YAML file (`--config` / `AUTHFUL_MCP_CONFIG`).
    pub file: Option<PathBuf>,
    /// The seed's env vars.
    pub seed_env: SeedSettings,
    /// Flags given on the command line.
    pub flags: SeedSettings,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A layer has a syntax error, an unknown key or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A required setting is missing or a value is unusable.
    #[error("{0}")]
    Problem(String),
    /// The config file has problems, every one of them located.
    #[error("{0}")]
    Diagnostics(validate::Diagnostics),
}

impl Sources {
    /// The merged layers, not yet extracted; `file` is the file's checked and expanded tree.
    fn figment(&self, file: Option<serde_yaml::Value>) -> Figment {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Serialized::defaults(file));
        }
        figment
            .merge(Serialized::defaults(self.seed_env.as_config()))
            .merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__"))
            .merge(Serialized::defaults(self.flags.as_config()))
    }

    /// Reads and merges every layer.
    pub fn load(&self) -> Result<Config, ConfigError> {
        self.load_with_warnings().map(|(config, _)| config)
    }

    /// Reads and merges every layer, and returns the file's diagnostics too: warnings only
    /// (unset `${VAR}`s), since a file with errors is a [`ConfigError::Diagnostics`].
    pub fn load_with_warnings(
        &self,
    ) -> Result<(Config, Option<validate::Diagnostics>), ConfigError> {
        let (file, diagnostics) = match &self.file {
            Some(path) => {
                let checked = self.check_file(path)?;
                match checked.value {
                    Some(value) => (Some(value), Some(checked.diagnostics)),
                    None => return Err(ConfigError::Diagnostics(checked.diagnostics)),
                }
            }
            None => (None, None),
        };
        let config = self
            .figment(file)
            .extract::<Config>()
            .map_err(|e| ConfigError::Invalid(figment_message(e)))?;
        Ok((config, diagnostics))
    }

    /// Checks the file the way `validate` does, except that what env vars and flags set
    /// counts as present (`MCP_BACKEND_URL` may supply the only backend, say).
    fn check_file(&self, path: &Path) -> Result<validate::Checked, ConfigError> {
        let above = self.figment(None).extract::<Config>().ok();
        let env = |name: &str| std::env::var(name).ok();
        let options = validate::Options {
            strict: false,
            env: &env,
            overlay: above.as_ref(),
        };
        validate::check_file(path, &options)
    }
}

fn figment_message(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A usable OIDC profile: every default applied, every value checked.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name in the configuration.
    pub name: String,
    /// Issuer URL exactly as configured: discovery compares it with the provider's `issuer`
    /// verbatim, so it is not normalised.
    pub issuer_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// Client secret of a confidential client.
    pub client_secret: Option<Secret>,
    /// Requested scopes, `openid` first.
    pub scopes: Vec<String>,
    /// Loopback redirect URL the callback server listens on.
    pub redirect_url: Url,
    /// How long a browser login may take.
    pub login_timeout: Duration,
}

/// A usable backend.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The backend's name in the configuration.
    pub name: String,
    /// Streamable HTTP endpoint.
    pub url: Url,
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
}

/// Default `gateway.request_timeout`, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 300;

impl Backend {
    /// A backend with no headers and no filter (the drop-in case).
    pub fn new(name: &str, url: Url, profile: Option<Arc<Profile>>, prefix: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            url,
            profile,
            prefix: prefix.map(str::to_owned),
            headers: Vec::new(),
            tools: ToolFilter::default(),
            request_timeout: Some(Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS)),
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
    /// How long `initialize` waits for backends.
    pub startup_timeout: Duration,
    /// How long the first answer to each kind of list waits for backends; zero does not wait.
    pub first_list_timeout: Duration,
    /// The longest exposed tool or prompt name, in characters.
    pub max_name_length: usize,
    /// When the gateway offers its own tools for backends that joined late.
    pub fallback_tools: FallbackTools,
}

/// Default `gateway.startup_timeout`.
pub const DEFAULT_STARTUP_TIMEOUT_SECS: u64 = 5;

/// Default `gateway.first_list_timeout`: below Claude Desktop's 60 s and the 60-s request
/// timeout of the TypeScript SDK that most clients use.
pub const DEFAULT_FIRST_LIST_TIMEOUT_SECS: u64 = 45;

impl Default for Gateway {
    fn default() -> Self {
        Self {
            name: "authful-mcp-proxy".into(),
            separator: Separator::Underscore,
            startup_timeout: Duration::from_secs(DEFAULT_STARTUP_TIMEOUT_SECS),
            first_list_timeout: Duration::from_secs(DEFAULT_FIRST_LIST_TIMEOUT_SECS),
            max_name_length: crate::naming::MAX_TOOL_NAME,
            fallback_tools: FallbackTools::Auto,
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
    /// Aggregation settings.
    pub gateway: Gateway,
}

impl Settings {
    /// Whether the single-backend transparent relay serves this configuration: one backend,
    /// unprefixed.
    pub fn is_transparent(&self) -> bool {
        matches!(self.backends.as_slice(), [b] if b.prefix.is_none())
    }
}

/// What is wrong with a prefix, if anything: it must match `^[a-z][a-z0-9-]*$` and must not
/// contain the separator (or names could be split two ways).
pub fn prefix_problem(prefix: &str, separator: Separator) -> Option<String> {
    let mut chars = prefix.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Some(format!(
            "prefix '{prefix}' must start with a lowercase letter and contain only lowercase \
             letters, digits and '-' (^[a-z][a-z0-9-]*$)"
        ));
    }
    if prefix.contains(separator.as_str()) {
        return Some(format!(
            "prefix '{prefix}' contains the separator '{}'",
            separator.as_str()
        ));
    }
    None
}

/// The seed's documented token cache location, `~/.fastmcp/oauth-mcp-client-cache`.
pub fn default_cache_dir() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".fastmcp")
        .join("oauth-mcp-client-cache")
}

fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir().map_or_else(|| path.to_path_buf(), |h| h.join(rest)),
        Err(_) => path.to_path_buf(),
    }
}

/// How a missing setting of the drop-in (`default`) profile or backend is supplied.
fn how_to_set(key: &str) -> &'static str {
    match key {
        "url" => "set MCP_BACKEND_URL or pass the URL as the first argument",
        "issuer_url" => "set OIDC_ISSUER_URL or pass --oidc-issuer-url",
        "client_id" => "set OIDC_CLIENT_ID or pass --oidc-client-id",
        _ => "set it in the config file",
    }
}

fn missing(kind: &str, name: &str, key: &str, what: &str) -> ConfigError {
    if name == DEFAULT_NAME {
        ConfigError::Problem(format!("Missing {what}: {}", how_to_set(key)))
    } else {
        ConfigError::Problem(format!(
            "Missing {what}: {kind}.{name}.{key} is required in the config file"
        ))
    }
}

fn parse_url(kind: &str, name: &str, key: &str, value: &str) -> Result<Url, ConfigError> {
    Url::parse(value.trim()).map_err(|e| {
        ConfigError::Problem(format!(
            "{kind}.{name}.{key}: '{value}' is not a valid URL ({e})"
        ))
    })
}

impl Config {
    /// Applies defaults and checks what a run needs.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let mut profiles = BTreeMap::new();
        for (name, p) in &self.oidc_profiles {
            profiles.insert(name.clone(), Arc::new(resolve_profile(name, p)?));
        }
        if self.backends.is_empty() {
            return Err(missing("backends", DEFAULT_NAME, "url", "MCP backend URL"));
        }
        let separator = self.gateway.separator.unwrap_or(Separator::Underscore);
        let only_one = self.backends.len() == 1;
        let mut backends: Vec<Backend> = Vec::new();
        for (name, b) in self
            .backends
            .iter()
            .filter(|(_, b)| b.enabled != Some(false))
        {
            let url = b
                .url
                .as_deref()
                .ok_or_else(|| missing("backends", name, "url", "MCP backend URL"))?;
            let url = parse_url("backends", name, "url", url)?;
            if let Some(problem) = endpoint_problem(&url) {
                return Err(ConfigError::Problem(format!(
                    "backends.{name}.url: {problem}"
                )));
            }
            let profile = match &b.oidc_profile {
                None => None,
                Some(p) => Some(match profiles.get(p) {
                    Some(profile) => Arc::clone(profile),
                    None if p == DEFAULT_NAME => {
                        return Err(missing(
                            "oidc_profiles",
                            DEFAULT_NAME,
                            "issuer_url",
                            "OIDC issuer URL",
                        ));
                    }
                    None => {
                        return Err(ConfigError::Problem(format!(
                            "backends.{name}.oidc_profile: no OIDC profile named '{p}'"
                        )));
                    }
                }),
            };
            // The drop-in case stays a transparent relay: one backend from the seed's settings.
            let prefix = match &b.prefix {
                Some(p) if p.is_empty() => None,
                Some(p) => Some(p.clone()),
                None if only_one && name == DEFAULT_NAME => None,
                None => Some(name.clone()),
            };
            if let Some(p) = &prefix {
                if let Some(problem) = prefix_problem(p, separator) {
                    return Err(ConfigError::Problem(format!(
                        "backends.{name}.prefix: {problem}"
                    )));
                }
                if let Some(other) = backends.iter().find(|o| o.prefix.as_ref() == Some(p)) {
                    return Err(ConfigError::Problem(format!(
                        "backends.{name}.prefix: '{p}' is already used by backend '{}'",
                        other.name
                    )));
                }
            }
            let globs = |kind: &str, list: &[String]| {
                list.iter()
                    .map(|g| {
                        Glob::new(g).map_err(|e| {
                            ConfigError::Problem(format!("backends.{name}.tools.{kind}: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            backends.push(Backend {
                name: name.clone(),
                url,
                profile,
                prefix,
                headers: b
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                tools: ToolFilter {
                    allow: globs("allow", &b.tools.allow)?,
                    deny: globs("deny", &b.tools.deny)?,
                },
                request_timeout: match b
                    .request_timeout
                    .or(self.gateway.request_timeout)
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS)
                {
                    0 => None,
                    seconds => Some(Duration::from_secs(seconds)),
                },
            });
        }
        if backends.is_empty() {
            return Err(ConfigError::Problem(
                "every backend is disabled (enabled: false): nothing to serve".into(),
            ));
        }
        let defaults = Gateway::default();
        // The same words as `validate`, which reads the bounds from the schema.
        let max_name_length = match self.gateway.max_name_length {
            None => defaults.max_name_length,
            Some(n) if n < MIN_NAME_BUDGET as u64 => {
                return Err(ConfigError::Problem(format!(
                    "gateway.max_name_length: {n} must be at least {MIN_NAME_BUDGET}"
                )));
            }
            Some(n) if n > MAX_NAME_BUDGET as u64 => {
                return Err(ConfigError::Problem(format!(
                    "gateway.max_name_length: {n} must be at most {MAX_NAME_BUDGET}"
                )));
            }
            Some(n) => n as usize,
        };
        let gateway = Gateway {
            name: self.gateway.name.clone().unwrap_or(defaults.name),
            separator,
            startup_timeout: self
                .gateway
                .startup_timeout
                .map_or(defaults.startup_timeout, Duration::from_secs),
            first_list_timeout: self
                .gateway
                .first_list_timeout
                .map_or(defaults.first_list_timeout, Duration::from_secs),
            max_name_length,
            fallback_tools: self.gateway.fallback_tools.unwrap_or_default(),
        };
        let cache_dir = self
            .cache_dir
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(default_cache_dir);
        Ok(Settings {
            cache_dir,
            backends,
            gateway,
        })
    }
}

fn resolve_profile(name: &str, p: &OidcProfileConfig) -> Result<Profile, ConfigError> {
    let kind = "oidc_profiles";
    let issuer = p
        .issuer_url
        .as_deref()
        .ok_or_else(|| missing(kind, name, "issuer_url", "OIDC issuer URL"))?;
    let issuer_url = issuer.trim().to_owned();
    let parsed = parse_url(kind, name, "issuer_url", &issuer_url)?;
    if let Some(problem) = endpoint_problem(&parsed) {
        return Err(ConfigError::Problem(format!(
            "{kind}.{name}.issuer_url: {problem}"
        )));
    }
    let client_id = p
        .client_id
        .clone()
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| missing(kind, name, "client_id", "OIDC client id"))?;
    let redirect = p.redirect_url.as_deref().unwrap_or(DEFAULT_REDIRECT_URL);
    let redirect_url = parse_url(kind, name, "redirect_url", redirect)?;
    check_redirect(name, &redirect_url)?;
    let scopes = p
        .scopes
        .clone()
        .unwrap_or_else(|| Scopes::Text(DEFAULT_SCOPES.to_owned()))
        .normalized();
    Ok(Profile {
        name: name.to_owned(),
        issuer_url,
        client_id,
        client_secret: p.client_secret.clone().filter(|s| !s.expose().is_empty()),
        scopes,
        redirect_url,
        login_timeout: Duration::from_secs(p.login_timeout.unwrap_or(DEFAULT_LOGIN_TIMEOUT_SECS)),
    })
}

/// The callback server binds the redirect URL's own host and port, so that host must be
/// loopback and the port explicit.
fn check_redirect(name: &str, url: &Url) -> Result<(), ConfigError> {
    match redirect_problem(url) {
        Some(problem) => Err(ConfigError::Problem(format!(
            "oidc_profiles.{name}.redirect_url: {problem}"
        ))),
        None => Ok(()),
    }
}

/// What is wrong with a redirect URL, if anything: `http://` on a loopback host with a port
/// of its own (not 80, which URLs leave out and which needs root to listen on).
pub fn redirect_problem(url: &Url) -> Option<String> {
    if url.scheme() == "http" && is_loopback_host(url) && url.port().is_some() {
        return None;
    }
    if url.scheme() == "http" && is_loopback_host(url) {
        return Some(format!(
            "'{url}' needs an explicit port other than 80 (the http default, which URLs leave \
             out and which needs root to listen on), e.g. {DEFAULT_REDIRECT_URL}"
        ));
    }
    Some(format!(
        "'{url}' must be http:// on localhost, 127.0.0.1 or [::1] with an explicit port, e.g. \
         {DEFAULT_REDIRECT_URL}"
    ))
}

/// What is wrong with an issuer or backend URL, if anything: it must be `https://`, or
/// `http://` on a loopback host; elsewhere tokens and secrets would cross the network in clear.
pub fn endpoint_problem(url: &Url) -> Option<String> {
    match url.scheme() {
        "https" => None,
        "http" if is_loopback_host(url) => None,
        "http" => Some(format!(
            "'{url}' must use https:// (http:// is only allowed on localhost, 127.0.0.1 or [::1])"
        )),
        _ => Some(format!("'{url}' must be an https:// URL")),
    }
}

/// Whether a URL's host is `localhost` or a loopback address.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    fn seed(url: &str) -> SeedSettings {
        SeedSettings {
            backend_url: Some(url.into()),
            issuer_url: Some("https://auth.example.com".into()),
            client_id: Some("cid".into()),
            ..SeedSettings::default()
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        figment::Jail::expect_with(|_| {
            let resolve = |backend: &str, issuer: &str| {
                let sources = Sources {
                    seed_env: SeedSettings {
                        issuer_url: Some(issuer.into()),
                        ..seed(backend)
                    },
                    ..Sources::default()
                };
                sources.load().unwrap().resolve()
            };
            let refused = [
                (
                    "http://mcp.company.com/mcp",
                    "https://auth.example.com",
                    "backends.default.url",
                ),
                (
                    "https://mcp.company.com/mcp",
                    "http://auth.example.com",
                    "issuer_url",
                ),
            ];
            for (backend, issuer, key) in refused {
                let error = resolve(backend, issuer).unwrap_err().to_string();
                assert!(
                    error.contains(key) && error.contains("must use https://"),
                    "{error}"
                );
            }
            for (backend, issuer) in [
                (
                    "http://127.0.0.1:8000/mcp",
                    "http://localhost:8080/realms/x",
                ),
                ("http://[::1]:8000/mcp", "https://auth.example.com"),
            ] {
                assert!(resolve(backend, issuer).is_ok(), "{backend} {issuer}");
            }
            Ok(())
        });
    }

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

    #[test]
    fn seed_settings_make_one_unprefixed_backend_with_the_seed_defaults() {
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        figment::Jail::expect_with(|_| {
            let sources = Sources {
                seed_env: seed("https://mcp.example.com/mcp"),
                ..Sources::default()
            };
            let settings = sources.load().unwrap().resolve().unwrap();
            let [backend] = settings.backends.as_slice() else {
                panic!("one backend expected")
            };
            assert_eq!(backend.prefix, None);
            let profile = backend.profile.as_ref().unwrap();
            assert_eq!(profile.scopes, ["openid", "profile", "email"]);
            assert_eq!(profile.redirect_url.as_str(), DEFAULT_REDIRECT_URL);
            assert_eq!(profile.login_timeout, Duration::from_secs(300));
            assert!(
                settings
                    .cache_dir
                    .ends_with(".fastmcp/oauth-mcp-client-cache")
            );
            Ok(())
        });
    }

    #[test]
    fn missing_settings_name_the_env_var_and_the_flag() {
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        figment::Jail::expect_with(|_| {
            let cases = [
                (SeedSettings::default(), "MCP_BACKEND_URL"),
                (
                    SeedSettings {
                        issuer_url: None,
                        ..seed("https://m/mcp")
                    },
                    "--oidc-issuer-url",
                ),
                (
                    SeedSettings {
                        client_id: None,
                        ..seed("https://m/mcp")
                    },
                    "OIDC_CLIENT_ID",
                ),
            ];
            for (seed_env, expected) in cases {
                let sources = Sources {
                    seed_env,
                    ..Sources::default()
                };
                let err = sources.load().unwrap().resolve().unwrap_err().to_string();
                assert!(err.contains(expected), "{err}");
            }
            Ok(())
        });
    }

    #[test]
    fn redirect_url_must_be_loopback_http_with_a_port() {
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        figment::Jail::expect_with(|_| {
            for bad in [
                "https://localhost:8080/cb",
                "http://example.com:8080/cb",
                "http://localhost/cb",
            ] {
                let mut s = seed("https://m/mcp");
                s.redirect_url = Some(bad.into());
                let sources = Sources {
                    seed_env: s,
                    ..Sources::default()
                };
                let err = sources.load().unwrap().resolve().unwrap_err().to_string();
                assert!(err.contains("redirect_url"), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_documented_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "oidc_profiles:\n  default:\n    issuer_url: https://file.example.com\n    \
                 client_id: from-file\n    scopes: [a]\n    redirect_url: http://127.0.0.1:1/cb\n\
                 backends:\n  default:\n    url: https://file.example.com/mcp\n    \
                 oidc_profile: default\n",
            )?;
            jail.set_env("AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__CLIENT_ID", "12345");
            jail.set_env("AUTHFUL_MCP_CACHE_DIR", "/tmp/from-env");
            let sources = Sources {
                file: Some("c.yaml".into()),
                seed_env: SeedSettings {
                    issuer_url: Some("https://seed.example.com".into()),
                    client_id: Some("from-seed".into()),
                    scopes: Some("b".into()),
                    ..SeedSettings::default()
                },
                flags: SeedSettings {
                    scopes: Some("c".into()),
                    ..SeedSettings::default()
                },
            };
            let config = sources.load().unwrap();
            let p = &config.oidc_profiles["default"];
            assert_eq!(p.issuer_url.as_deref(), Some("https://seed.example.com"));
            assert_eq!(p.client_id.as_deref(), Some("12345"));
            assert_eq!(p.scopes, Some(Scopes::Text("c".into())));
            assert_eq!(p.redirect_url.as_deref(), Some("http://127.0.0.1:1/cb"));
            assert_eq!(config.cache_dir, Some(PathBuf::from("/tmp/from-env")));
            Ok(())
        });
    }

    /// No `Debug` of the configuration, as given or resolved, shows a client secret or a
    /// header value: a future log line cannot leak them.
    #[test]
    fn debug_output_never_shows_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "oidc_profiles:\n  corp:\n    issuer_url: https://auth.example.com\n    \
                 client_id: cid\n    client_secret: file-secret-123\nbackends:\n  api:\n    \
                 url: https://mcp.example.com/mcp\n    oidc_profile: corp\n    headers:\n      \
                 X-Api-Key: header-secret-456\n",
            )?;
            let sources = Sources {
                file: Some("c.yaml".into()),
                ..Sources::default()
            };
            let config = sources.load().unwrap();
            let settings = config.clone().resolve().unwrap();
            assert_eq!(
                settings.backends[0].headers[0].1.expose(),
                "header-secret-456"
            );
            let seed = SeedSettings::from_env(|name| {
                (name == "OIDC_CLIENT_SECRET").then(|| "seed-secret-789".to_owned())
            });
            let shown = format!("{seed:?} {config:?} {settings:?}");
            for secret in ["file-secret-123", "header-secret-456", "seed-secret-789"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "backends:\n  a:\n    ulr: https://x/mcp\n")?;
            let sources = Sources {
                file: Some("c.yaml".into()),
                ..Sources::default()
            };
            let err = sources.load().unwrap_err().to_string();
            assert!(err.contains("ulr"), "{err}");
            Ok(())
        });
    }
}
