//! From the merged configuration to [`Settings`]: every default, and every rule that a value
//! must pass, in one place.
//!
//! The proxy resolves the merge of all its layers when it starts; `validate` resolves the file
//! on its own. Both get every finding at once (not the first), each at its key path, so that a
//! rule says the same words whether the value came from the file, an env var or a flag. What a
//! schema already says (keys, types, enums) is checked on the file before this, by
//! [`validate`](super::validate); values of the wrong type never reach here.

mod backends;
mod identity_assertion;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use url::Url;

use super::{
    Config, DEFAULT_LOGIN_TIMEOUT_SECS, DEFAULT_REDIRECT_URL, DEFAULT_SCOPES, Flow, GatewayConfig,
    OidcProfileConfig, ResourceConfig, Scopes, Separator,
    checks::{endpoint_problem_as, redirect_problem_as},
    drop_in::{self, DROP_IN_NAME},
    finding::{Anchor, Finding},
    locate::KeyPath,
    settings::{
        AssertionAudience, ClientAssertion, Gateway, Mode, Profile, Resource, Settings,
        default_cache_dir, expand_home,
    },
};

/// Authorization parameters the proxy sets itself (`code_challenge*` too): a profile's
/// `authorize_params` cannot override them.
pub const RESERVED_AUTHORIZE_PARAMS: [&str; 9] = [
    "state",
    "nonce",
    "redirect_uri",
    "client_id",
    "response_type",
    "scope",
    "resource",
    "response_mode",
    "code_challenge",
];
use crate::naming::{MAX_NAME_BUDGET, MIN_NAME_BUDGET};

/// What resolving found.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The settings, when no finding is an error.
    pub settings: Option<Settings>,
    /// Every error and warning, in the order the rules ran.
    pub findings: Vec<Finding>,
}

/// Applies the defaults to `config` and checks every rule. `with_file` tells whether a
/// configuration file takes part, which decides how to say that no backend is configured.
pub fn resolve(config: &Config, with_file: bool) -> Resolved {
    let mut rules = Rules::default();
    let mut pending = Vec::new();
    let mut profiles: BTreeMap<&str, Option<Arc<Profile>>> = BTreeMap::new();
    for (name, p) in &config.oidc_profiles {
        let profile = rules.profile(name, p).map(|mut profile| {
            match rules.identity_assertion(name, p) {
                Some(identity_assertion::Source::Ready(ready)) => {
                    profile.identity_assertion = Some(ready);
                }
                Some(identity_assertion::Source::Profile {
                    name: idp,
                    id_token_file,
                }) => pending.push((name.clone(), idp, id_token_file)),
                None => {}
            }
            Arc::new(profile)
        });
        profiles.insert(name.as_str(), profile);
    }
    rules.link_identity_assertions(&mut profiles, pending);
    rules.shared_redirects(&config.oidc_profiles);
    let separator = config.gateway.separator.unwrap_or(Separator::Underscore);
    let only_one = config.backends.len() == 1;
    let mut backends = Vec::new();
    for (name, b) in &config.backends {
        let backend = rules.backend(name, b, &profiles, only_one, &config.gateway);
        if b.enabled != Some(false) {
            backends.extend(backend);
        }
    }
    rules.prefixes(&config.backends, separator, only_one);
    rules.gateway_sign_in(&config.gateway);
    rules.something_to_serve(config, with_file);
    let gateway = rules.gateway(&config.gateway, separator);
    let has_errors = rules.findings.iter().any(Finding::is_error);
    let settings = match gateway {
        Some(gateway) if !has_errors => Some(Settings {
            mode: Mode::of(&backends),
            cache_dir: config
                .cache_dir
                .as_deref()
                .map(expand_home)
                .unwrap_or_else(default_cache_dir),
            backends,
            gateway,
        }),
        _ => None,
    };
    Resolved {
        settings,
        findings: rules.findings,
    }
}

/// `text` as a client ID metadata document's URL, if it is one: `https://` with a path.
fn metadata_document_url(text: &str) -> Option<String> {
    let url = Url::parse(text.trim()).ok()?;
    (url.scheme() == "https" && !url.path().trim_matches('/').is_empty())
        .then(|| text.trim().to_owned())
}

/// The key path of a profile or backend.
fn entry(section: &str, name: &str) -> KeyPath {
    KeyPath::root().key(section).key(name)
}

#[derive(Default)]
struct Rules {
    findings: Vec<Finding>,
}

impl Rules {
    fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.is_error()).count()
    }

    fn bad_value(&mut self, path: &KeyPath, message: String) {
        self.findings.push(Finding::bad_value(path, message));
    }

    /// A required key that no layer sets; the drop-in's own keys say which env var or flag
    /// sets them.
    fn missing(&mut self, path: KeyPath) {
        let key = path.last_key().unwrap_or_default();
        let message = match (drop_in::how_to_set(&path), drop_in::setting_at(&path)) {
            (Some(how), Some(setting)) => format!("missing {}: {how}", setting.what),
            _ => format!("missing required key '{key}'"),
        };
        self.findings
            .push(Finding::error(path.clone(), Anchor::Key(path), message));
    }

    /// A client secret or key with no issuer to send it to: a backend's metadata would choose
    /// where the secret (or an assertion valid at the real provider) goes.
    fn confidential_without_issuer(&mut self, path: KeyPath, secret: bool) {
        let credential = if secret {
            "client_secret"
        } else {
            "client_assertion"
        };
        let how = drop_in::how_to_set(&path)
            .map(|how| format!(" ({how})"))
            .unwrap_or_default();
        let message = format!(
            "missing issuer_url: a profile with {credential} must name its issuer{how}, so \
             that its credentials only ever go there; without one, a backend's metadata would \
             choose the server that receives them"
        );
        self.findings
            .push(Finding::error(path.clone(), Anchor::Key(path), message));
    }

    /// A URL, trimmed and parsed.
    fn url(&mut self, path: &KeyPath, text: &str) -> Option<Url> {
        match Url::parse(text.trim()) {
            Ok(url) => Some(url),
            Err(e) => {
                self.bad_value(path, format!("'{text}' is not a valid URL ({e})"));
                None
            }
        }
    }

    /// An issuer or backend URL: https, or http on loopback.
    fn endpoint(&mut self, path: &KeyPath, text: &str) -> Option<Url> {
        let url = self.url(path, text)?;
        match endpoint_problem_as(&url, text) {
            Some(problem) => {
                self.bad_value(path, problem);
                None
            }
            None => Some(url),
        }
    }

    fn profile(&mut self, name: &str, p: &OidcProfileConfig) -> Option<Profile> {
        let path = entry("oidc_profiles", name);
        let before = self.errors();
        let issuer_path = path.key("issuer_url");
        // Without one, the profile's backends name their authorization server (RFC 9728).
        let issuer = match &p.issuer_url {
            Some(text) => self
                .endpoint(&issuer_path, text)
                .map(|_| Some(text.trim().to_owned())),
            None => Some(None),
        };
        let (client_id, client_metadata_url) = self.client(&path, p);
        let redirect_path = path.key("redirect_url");
        let redirect = p.redirect_url.as_deref().unwrap_or(DEFAULT_REDIRECT_URL);
        let redirect_url = self.url(&redirect_path, redirect).filter(|url| {
            let problem = redirect_problem_as(url, redirect);
            if let Some(problem) = &problem {
                self.bad_value(&redirect_path, problem.clone());
            }
            problem.is_none()
        });
        let flow = p.flow.unwrap_or_default();
        let client_secret = p.client_secret.clone().filter(|s| !s.expose().is_empty());
        let client_assertion = self.client_assertion(&path, p, client_secret.is_some());
        if p.issuer_url.is_none() && (client_secret.is_some() || p.client_assertion.is_some()) {
            self.confidential_without_issuer(issuer_path, client_secret.is_some());
        }
        if flow == Flow::ClientCredentials
            && client_secret.is_none()
            && p.client_assertion.is_none()
        {
            self.bad_value(
                &path.key("flow"),
                "client_credentials needs the client's credentials: set client_secret, or \
                 client_assertion with a key_file"
                    .to_owned(),
            );
        }
        let authorize_params = self.authorize_params(&path.key("authorize_params"), p);
        let resource = self.resource(&path.key("resource"), p.resource.as_ref());
        if self.errors() > before {
            return None;
        }
        // A client the proxy becomes at a server it finds (no issuer, no client id, no
        // scopes) asks for what that server says, as MCP orders it.
        let server_scopes = p.issuer_url.is_none()
            && p.client_id.is_none()
            && p.scopes.is_none()
            && flow != Flow::ClientCredentials;
        let scopes = match (flow, &p.scopes) {
            _ if server_scopes => Vec::new(),
            // Cross-app access asks the server for what is configured, and no `openid`.
            _ if p.identity_assertion.is_some() => {
                p.scopes.as_ref().map(Scopes::words).unwrap_or_default()
            }
            // A service account asks for what it needs; `openid` means nothing without a user.
            (Flow::ClientCredentials, Some(scopes)) => scopes.words(),
            (Flow::ClientCredentials, None) => Vec::new(),
            (_, scopes) => scopes
                .clone()
                .unwrap_or_else(|| Scopes::Text(DEFAULT_SCOPES.to_owned()))
                .normalized(),
        };
        Some(Profile {
            name: name.to_owned(),
            issuer_url: issuer?,
            client_id,
            client_metadata_url,
            client_secret,
            client_assertion,
            scopes,
            redirect_url: redirect_url?,
            login_timeout: Duration::from_secs(
                p.login_timeout.unwrap_or(DEFAULT_LOGIN_TIMEOUT_SECS),
            ),
            flow,
            open_browser: p.open_browser.unwrap_or(true),
            authorize_params,
            resource: resource.unwrap_or_default(),
            identity_assertion: None,
            server_scopes,
            own_oauth: false,
        })
    }

    /// Who the client is: a registered client id, or the URL of its metadata document (a
    /// `client_id` that is an `https://` URL is one), or neither (the proxy registers itself).
    fn client(
        &mut self,
        path: &KeyPath,
        p: &OidcProfileConfig,
    ) -> (Option<String>, Option<String>) {
        let client_path = path.key("client_id");
        let mut client_id = match p.client_id.as_deref() {
            Some(id) if id.trim().is_empty() => {
                self.bad_value(&client_path, "must not be empty".to_owned());
                None
            }
            Some(id) => Some(id.to_owned()),
            None => None,
        };
        let metadata_path = path.key("client_metadata_url");
        let mut metadata_url = p
            .client_metadata_url
            .as_deref()
            .and_then(|text| self.metadata_document(&metadata_path, text));
        if metadata_url.is_none()
            && let Some(id) = client_id.as_deref()
            && id.trim().starts_with("https://")
        {
            metadata_url = self.metadata_document(&client_path, id);
            client_id = None;
        }
        let confidential = p.client_secret.is_some() || p.client_assertion.is_some();
        if client_id.is_none() && confidential {
            let how = drop_in::how_to_set(&client_path)
                .map(|how| format!(" ({how})"))
                .unwrap_or_default();
            let message = format!(
                "missing client_id: client_secret and client_assertion belong to a client an \
                 administrator registered; set its id{how}"
            );
            self.findings.push(Finding::error(
                client_path.clone(),
                Anchor::Key(client_path),
                message,
            ));
        }
        (client_id, metadata_url)
    }

    /// A client ID metadata document's URL: `https://` with a path (its id is its URL).
    fn metadata_document(&mut self, path: &KeyPath, text: &str) -> Option<String> {
        self.url(path, text)?;
        let url = metadata_document_url(text);
        if url.is_none() {
            self.bad_value(
                path,
                format!(
                    "'{text}' is not a client ID metadata document's URL: it must be https:// \
                     with a path"
                ),
            );
        }
        url
    }

    /// A resource indicator setting (RFC 8707): an absolute URL without a fragment, or a
    /// switch; `None` when unset or wrong.
    fn resource(&mut self, path: &KeyPath, config: Option<&ResourceConfig>) -> Option<Resource> {
        match config? {
            ResourceConfig::Switch(true) => Some(Resource::Own),
            ResourceConfig::Switch(false) => Some(Resource::Off),
            ResourceConfig::Url(text) => {
                let url = self.url(path, text)?;
                if url.fragment().is_some() {
                    self.bad_value(
                        path,
                        format!("'{text}' has a fragment (#...); a resource indicator has none"),
                    );
                    return None;
                }
                Some(Resource::Url(text.trim().to_owned()))
            }
        }
    }

    /// The client assertion key, if set: a file name, and no client secret besides.
    fn client_assertion(
        &mut self,
        path: &KeyPath,
        p: &OidcProfileConfig,
        has_secret: bool,
    ) -> Option<ClientAssertion> {
        let assertion = p.client_assertion.as_ref()?;
        let path = path.key("client_assertion");
        if has_secret {
            self.bad_value(
                &path,
                "set either client_secret or client_assertion, not both: the client \
                 authenticates one way"
                    .to_owned(),
            );
        }
        let key_file = match assertion.key_file.as_deref().map(str::trim) {
            Some("") => {
                self.bad_value(&path.key("key_file"), "must not be empty".to_owned());
                return None;
            }
            Some(file) => expand_home(std::path::Path::new(file)),
            None => {
                self.missing(path.key("key_file"));
                return None;
            }
        };
        let audience = match assertion.audience.as_deref().map(str::trim) {
            None | Some("token_endpoint") => AssertionAudience::TokenEndpoint,
            Some("issuer") => AssertionAudience::Issuer,
            Some(other) => match self.url(&path.key("audience"), other) {
                Some(_) => AssertionAudience::Url(other.to_owned()),
                None => return None,
            },
        };
        Some(ClientAssertion {
            key_file,
            algorithm: assertion.algorithm.unwrap_or_default(),
            key_id: assertion.key_id.clone().filter(|k| !k.trim().is_empty()),
            audience,
        })
    }

    /// Extra authorization parameters, none of those the proxy sets itself.
    fn authorize_params(&mut self, path: &KeyPath, p: &OidcProfileConfig) -> Vec<(String, String)> {
        let mut params = Vec::new();
        for (name, value) in &p.authorize_params {
            let owned = RESERVED_AUTHORIZE_PARAMS.contains(&name.as_str());
            if owned || name.starts_with("code_challenge") {
                let instead = match name.as_str() {
                    "scope" => " (set `scopes`)",
                    "redirect_uri" => " (set `redirect_url`)",
                    "client_id" => " (set `client_id`)",
                    "resource" => " (set `resource`)",
                    _ => "",
                };
                self.bad_value(
                    &path.key(name),
                    format!(
                        "'{name}' is set by the proxy itself and cannot be overridden{instead}"
                    ),
                );
                continue;
            }
            params.push((name.clone(), value.clone()));
        }
        params
    }

    /// Profiles of different issuers on one redirect URL: one login's callback could be
    /// taken for the other's (a mix-up the `state` check alone does not rule out when both
    /// logins run in different processes). Profiles that sign in without a browser (device
    /// code, client credentials, cross-app access) never use theirs.
    fn shared_redirects(&mut self, profiles: &BTreeMap<String, OidcProfileConfig>) {
        let mut seen: Vec<(String, &str, &str)> = Vec::new(); // redirect URL, issuer, profile
        for (name, profile) in profiles {
            if profile.flow.unwrap_or_default() != Flow::Browser
                || profile.identity_assertion.is_some()
            {
                continue;
            }
            let path = entry("oidc_profiles", name);
            let redirect_path = path.key("redirect_url");
            let Some(issuer) = profile.issuer_url.as_deref() else {
                continue;
            };
            let (redirect, anchor) = match profile.redirect_url.as_deref() {
                Some(text) => (text, Anchor::Value(redirect_path.clone())),
                None => (DEFAULT_REDIRECT_URL, Anchor::Key(path.clone())),
            };
            let Ok(url) = Url::parse(redirect.trim()) else {
                continue;
            };
            let url = url.to_string();
            if let Some((_, other_issuer, other)) = seen.iter().find(|(u, i, _)| {
                *u == url && i.trim_end_matches('/') != issuer.trim_end_matches('/')
            }) {
                let message = format!(
                    "profile '{other}' of issuer {other_issuer} uses the same redirect URL {url}; \
                     give each identity provider a redirect URL (port) of its own, so that a \
                     login response can only be taken for its own provider's"
                );
                self.findings
                    .push(Finding::warning(redirect_path, anchor, message));
            }
            seen.push((url, issuer, name));
        }
    }

    /// At least one backend, and not all of them disabled.
    fn something_to_serve(&mut self, config: &Config, with_file: bool) {
        let path = KeyPath::root().key("backends");
        if config.backends.is_empty() {
            if with_file {
                let message = "no backends: define at least one under `backends`".to_owned();
                self.findings
                    .push(Finding::error(path.clone(), Anchor::Key(path), message));
            } else {
                self.missing(path.key(DROP_IN_NAME).key("url"));
            }
        } else if config.backends.values().all(|b| b.enabled == Some(false)) {
            let message = "every backend is disabled (enabled: false): nothing to serve";
            self.findings.push(Finding::error(
                path.clone(),
                Anchor::Key(path),
                message.to_owned(),
            ));
        }
    }

    fn gateway(&mut self, g: &GatewayConfig, separator: Separator) -> Option<Gateway> {
        let defaults = Gateway::default();
        let budget_path = KeyPath::root().key("gateway").key("max_name_length");
        let max_name_length = match g.max_name_length {
            None => defaults.max_name_length,
            Some(n) if n < MIN_NAME_BUDGET as u64 => {
                self.bad_value(
                    &budget_path,
                    format!("{n} must be at least {MIN_NAME_BUDGET}"),
                );
                return None;
            }
            Some(n) if n > MAX_NAME_BUDGET as u64 => {
                self.bad_value(
                    &budget_path,
                    format!("{n} must be at most {MAX_NAME_BUDGET}"),
                );
                return None;
            }
            Some(n) => n as usize,
        };
        Some(Gateway {
            name: g.name.clone().unwrap_or(defaults.name),
            separator,
            startup_timeout: g
                .startup_timeout
                .map_or(defaults.startup_timeout, Duration::from_secs),
            first_list_timeout: g
                .first_list_timeout
                .map_or(defaults.first_list_timeout, Duration::from_secs),
            max_name_length,
            waits_by_client: g.startup_timeout.is_none() && g.first_list_timeout.is_none(),
            fallback_tools: g.fallback_tools.unwrap_or_default(),
            remember_lists: g.remember_lists.unwrap_or(defaults.remember_lists),
        })
    }
}
