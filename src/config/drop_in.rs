//! The drop-in's settings: the Python original's env vars and flags, each defined once.
//!
//! [`SETTINGS`] is the one table of them. It drives the env vars read ([`DropInSettings::from_env`]),
//! the command line's flags and their help (`cli` builds its arguments from it), the layer they
//! form in the model ([`DropInSettings::layer`]: OIDC profile `default` and backend `default`),
//! and what an error says to set ([`how_to_set`]). A setting added here is read, documented and
//! explained everywhere at once.

use std::{collections::BTreeMap, fmt};

use serde_json::{Map, Value as Json};

use super::{
    DEFAULT_LOGIN_TIMEOUT_SECS, DEFAULT_REDIRECT_URL, DEFAULT_REQUEST_TIMEOUT_SECS, DEFAULT_SCOPES,
    locate::KeyPath,
};
use crate::secret::Secret;

/// The name of the OIDC profile and the backend that the drop-in's settings define.
pub const DROP_IN_NAME: &str = "default";

/// What kind of value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (a URL, an id, scopes).
    Text,
    /// Text that must never be shown (a client secret).
    Secret,
    /// A whole number of seconds.
    Seconds,
}

/// A default as the help shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// A text default.
    Text(&'static str),
    /// A number of seconds.
    Seconds(u64),
}

impl fmt::Display for Default {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Default::Text(text) => f.write_str(text),
            Default::Seconds(seconds) => write!(f, "{seconds}"),
        }
    }
}

/// One drop-in setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The argument's id on the command line, and the key of its value.
    pub id: &'static str,
    /// Where its value lands in the configuration model.
    pub path: &'static str,
    /// The env var that sets it, if any.
    pub env: Option<&'static str>,
    /// The long flag that sets it, without dashes; `None` for the positional argument.
    pub flag: Option<&'static str>,
    /// The placeholder in the help.
    pub value_name: &'static str,
    /// What it is, in an error that says it is missing.
    pub what: &'static str,
    /// The first sentence of its help.
    pub help: &'static str,
    /// The value used when nothing sets it.
    pub default: Option<Default>,
    /// What it takes.
    pub kind: Kind,
}

/// Every drop-in setting, in the order `--help` shows them.
pub const SETTINGS: [Setting; 9] = [
    Setting {
        id: "backend_url",
        path: "backends.default.url",
        env: Some("MCP_BACKEND_URL"),
        flag: None,
        value_name: "MCP_BACKEND_URL",
        what: "MCP backend URL",
        help: "URL of the remote MCP server",
        default: None,
        kind: Kind::Text,
    },
    Setting {
        id: "oidc_issuer_url",
        path: "oidc_profiles.default.issuer_url",
        env: Some("OIDC_ISSUER_URL"),
        flag: Some("oidc-issuer-url"),
        value_name: "URL",
        what: "OIDC issuer URL",
        help: "OIDC issuer URL",
        default: None,
        kind: Kind::Text,
    },
    Setting {
        id: "oidc_client_id",
        path: "oidc_profiles.default.client_id",
        env: Some("OIDC_CLIENT_ID"),
        flag: Some("oidc-client-id"),
        value_name: "ID",
        what: "OIDC client id",
        help: "OAuth client id",
        default: None,
        kind: Kind::Text,
    },
    Setting {
        id: "oidc_client_secret",
        path: "oidc_profiles.default.client_secret",
        env: Some("OIDC_CLIENT_SECRET"),
        flag: Some("oidc-client-secret"),
        value_name: "SECRET",
        what: "OIDC client secret",
        help: "OAuth client secret, for confidential clients only",
        default: None,
        kind: Kind::Secret,
    },
    Setting {
        id: "oidc_scopes",
        path: "oidc_profiles.default.scopes",
        env: Some("OIDC_SCOPES"),
        flag: Some("oidc-scopes"),
        value_name: "SCOPES",
        what: "scopes",
        help: "Space-separated scopes; `openid` is always added",
        default: Some(Default::Text(DEFAULT_SCOPES)),
        kind: Kind::Text,
    },
    Setting {
        id: "oidc_redirect_url",
        path: "oidc_profiles.default.redirect_url",
        env: Some("OIDC_REDIRECT_URL"),
        flag: Some("oidc-redirect-url"),
        value_name: "URL",
        what: "redirect URL",
        help: "Loopback URL the browser returns to after login",
        default: Some(Default::Text(DEFAULT_REDIRECT_URL)),
        kind: Kind::Text,
    },
    Setting {
        id: "oidc_flow",
        path: "oidc_profiles.default.flow",
        env: Some("OIDC_FLOW"),
        flag: Some("oidc-flow"),
        value_name: "FLOW",
        what: "sign-in flow",
        help: "How to sign in: `browser`, `device` (a code to enter on another device, for \
               machines without a browser) or `client_credentials` (a service account)",
        default: Some(Default::Text("browser")),
        kind: Kind::Text,
    },
    Setting {
        id: "login_timeout",
        path: "oidc_profiles.default.login_timeout",
        env: None,
        flag: Some("login-timeout"),
        value_name: "SECONDS",
        what: "login timeout",
        help: "Seconds to wait for a browser login before failing the pending request",
        default: Some(Default::Seconds(DEFAULT_LOGIN_TIMEOUT_SECS)),
        kind: Kind::Seconds,
    },
    Setting {
        id: "request_timeout",
        path: "gateway.request_timeout",
        env: None,
        flag: Some("request-timeout"),
        value_name: "SECONDS",
        what: "request timeout",
        help: "Seconds a request may wait for the backend's answer; progress notifications \
               restart the wait, 0 waits forever",
        default: Some(Default::Seconds(DEFAULT_REQUEST_TIMEOUT_SECS)),
        kind: Kind::Seconds,
    },
];

impl Setting {
    /// The help text: the sentence, then the env var and the default, as clap writes them.
    pub fn help_text(&self) -> String {
        let mut text = self.help.to_owned();
        if let Some(env) = self.env {
            text.push_str(&format!(" [env: {env}]"));
        }
        if let Some(default) = self.default {
            text.push_str(&format!(" [default: {default}]"));
        }
        text
    }

    /// How a user names the flag: `--oidc-issuer-url`, or the positional argument.
    pub fn flag_label(&self) -> String {
        match self.flag {
            Some(flag) => format!("--{flag}"),
            None => "the URL argument".to_owned(),
        }
    }
}

/// The setting whose value lands at `path`, if any. The backend's `oidc_profile` is the
/// backend URL's doing: the drop-in's backend always logs in with its profile.
pub fn setting_at(path: &KeyPath) -> Option<&'static Setting> {
    let path = path.to_string();
    if path == "backends.default.oidc_profile" {
        return SETTINGS.first();
    }
    SETTINGS.iter().find(|s| s.path == path)
}

/// What to do about a missing drop-in setting at `path`, if it is one:
/// `set OIDC_ISSUER_URL or pass --oidc-issuer-url`.
pub fn how_to_set(path: &KeyPath) -> Option<String> {
    let setting = setting_at(path)?;
    Some(match (setting.env, setting.flag) {
        (Some(env), Some(flag)) => format!("set {env} or pass --{flag}"),
        (Some(env), None) => format!("set {env} or pass the URL as the first argument"),
        (None, _) => format!("pass {}", setting.flag_label()),
    })
}

/// The drop-in's settings as one source gives them: its env vars, or the command line.
#[derive(Clone, Default, PartialEq)]
pub struct DropInSettings {
    /// By [`Setting::id`]; every value is kept as a secret so that no `Debug` shows one.
    values: BTreeMap<&'static str, Secret>,
}

impl DropInSettings {
    /// Reads the env vars of [`SETTINGS`] through `lookup`; empty values count as unset.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut settings = Self::default();
        for setting in &SETTINGS {
            if let Some(value) = setting.env.and_then(&lookup) {
                settings = settings.with(setting.id, value);
            }
        }
        settings
    }

    /// These settings with the one of id `id` set to `value`; an unknown id or an empty value
    /// changes nothing.
    pub fn with(mut self, id: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if let Some(setting) = SETTINGS.iter().find(|s| s.id == id)
            && !value.trim().is_empty()
        {
            self.values.insert(setting.id, Secret::new(value));
        }
        self
    }

    /// The value of the setting of id `id`.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.values.get(id).map(Secret::expose)
    }

    /// Whether this source sets a value at `path` of the model.
    pub fn sets(&self, path: &KeyPath) -> bool {
        setting_at(path).is_some_and(|s| self.values.contains_key(s.id))
    }

    /// This source as a layer of the model: profile and backend `default`.
    pub fn layer(&self) -> Json {
        let mut root = Map::new();
        for setting in &SETTINGS {
            let Some(value) = self.values.get(setting.id) else {
                continue;
            };
            let value = match setting.kind {
                Kind::Seconds => value
                    .expose()
                    .trim()
                    .parse::<u64>()
                    .map_or_else(|_| Json::String(value.expose().to_owned()), Json::from),
                Kind::Text | Kind::Secret => Json::String(value.expose().to_owned()),
            };
            insert(&mut root, setting.path, value);
        }
        if self.values.contains_key("backend_url") {
            insert(
                &mut root,
                "backends.default.oidc_profile",
                Json::String(DROP_IN_NAME.to_owned()),
            );
        }
        Json::Object(root)
    }
}

/// Sets `value` at the dotted `path`, creating the mappings on the way.
fn insert(root: &mut Map<String, Json>, path: &str, value: Json) {
    let mut node = root;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if keys.peek().is_none() {
            node.insert(key.to_owned(), value);
            return;
        }
        let next = node
            .entry(key.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !next.is_object() {
            *next = Json::Object(Map::new());
        }
        let Json::Object(map) = next else { return };
        node = map;
    }
}

/// Names and values, the client secret hidden.
impl fmt::Debug for DropInSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for setting in &SETTINGS {
            if let Some(value) = self.values.get(setting.id) {
                match setting.kind {
                    Kind::Secret => map.entry(&setting.id, value),
                    Kind::Text | Kind::Seconds => map.entry(&setting.id, &value.expose()),
                };
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path is a key of the file model (which rejects unknown keys), so a setting
    /// cannot be read and then lost on the way.
    #[test]
    fn every_setting_lands_in_the_file_model() {
        let all = SETTINGS
            .iter()
            .fold(DropInSettings::default(), |s, setting| match setting.id {
                // An enum: any text would not do.
                "oidc_flow" => s.with(setting.id, "device"),
                _ => s.with(setting.id, "7"),
            });
        let config: super::super::Config = serde_json::from_value(all.layer()).unwrap();
        let profile = &config.oidc_profiles[DROP_IN_NAME];
        assert_eq!(config.backends[DROP_IN_NAME].url.as_deref(), Some("7"));
        assert_eq!(profile.login_timeout, Some(7));
        assert_eq!(profile.flow, Some(super::super::Flow::Device));
        assert_eq!(config.gateway.request_timeout, Some(7));
        assert_eq!(
            profile.client_secret.as_ref().map(Secret::expose),
            Some("7")
        );
    }

    #[test]
    fn the_layer_is_profile_and_backend_default() {
        let settings = DropInSettings::default()
            .with("backend_url", "https://m/mcp")
            .with("oidc_client_id", "12345")
            .with("login_timeout", "60")
            .with("oidc_scopes", "   ");
        assert_eq!(
            settings.layer(),
            serde_json::json!({
                "backends": {"default": {"url": "https://m/mcp", "oidc_profile": "default"}},
                "oidc_profiles": {"default": {"client_id": "12345", "login_timeout": 60}},
            })
        );
        assert!(settings.sets(&KeyPath::root().key("backends").key("default").key("url")));
        assert!(!settings.sets(&KeyPath::root().key("gateway").key("request_timeout")));
    }
}
