//! The configuration: what the user writes, where it comes from, and what a run uses.
//!
//! A run's settings take three steps, each a module:
//!
//! 1. **Layers** ([`layers`]): the YAML file, the drop-in's env vars ([`drop_in`]), the
//!    `AUTHFUL_MCP_*` env vars and the command line's flags, merged by figment into one
//!    [`Config`] (the serde model every layer shares).
//! 2. **The file's own checks** ([`validate`]): YAML syntax, unknown keys, types and `${VAR}`
//!    references ([`interpolate`]), against the JSON Schema derived from the model ([`json_schema`]).
//! 3. **Resolving** ([`resolve`]): every default applied and every rule checked, giving
//!    [`Settings`] or every finding ([`finding`]) at its key path. The checks on
//!    single values live in [`checks`].
//!
//! [`report`] places the findings: a line and column in the file ([`locate`]), or the env var
//! or flag that gave the value. `authful-mcp-proxy validate` runs steps 2 and 3 on the file
//! alone; the proxy runs all three, so both say the same of the same file.

pub mod checks;
pub mod drop_in;
mod file;
pub mod finding;
pub mod interpolate;
pub mod layers;
pub mod locate;
mod reference;
pub mod report;
pub mod resolve;
mod schema;
mod settings;
pub mod validate;

pub use checks::{endpoint_problem, is_loopback_host, prefix_problem, redirect_problem};
pub use drop_in::{DROP_IN_NAME, DropInSettings};
pub use file::{
    AssertionAlgorithm, BackendAuth, BackendConfig, ClientAssertionConfig, Config, FallbackTools,
    Flow, GatewayConfig, IdentityAssertionConfig, OidcProfileConfig, Protocol, ResourceConfig,
    Scopes, Separator, ToolFilterConfig, Transport,
};
pub use layers::{ENV_PREFIX, Sources};
pub use reference::reference_markdown;
pub use report::{ConfigError, Diagnostics, Format};
pub use schema::{json_schema, json_schema_text};
pub use settings::{
    AssertionAudience, Backend, ClientAssertion, DEFAULT_FIRST_LIST_TIMEOUT_SECS,
    DEFAULT_LOGIN_TIMEOUT_SECS, DEFAULT_REDIRECT_URL, DEFAULT_REQUEST_TIMEOUT_SECS, DEFAULT_SCOPES,
    DEFAULT_STARTUP_TIMEOUT_SECS, Gateway, IdentityAssertion, Mode, Profile, Resource, Settings,
    default_cache_dir,
};

impl Config {
    /// Applies the defaults and checks every rule, as if this were the whole configuration
    /// of a run without a file; every finding is in the error.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let resolved = resolve::resolve(&self, false);
        match resolved.settings {
            Some(settings) => Ok(settings),
            None => Err(ConfigError::Diagnostics(Diagnostics::place(
                None,
                resolved
                    .findings
                    .into_iter()
                    .map(|f| (f, finding::Origin::File)),
            ))),
        }
    }
}
