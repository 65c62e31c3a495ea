//! The rules on backends: URL, profile, filters, headers, and prefixes across backends.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use super::{Rules, entry, metadata_document_url};
use crate::{
    config::{
        BackendAuth, BackendConfig, DEFAULT_REDIRECT_URL, DEFAULT_REQUEST_TIMEOUT_SECS,
        GatewayConfig, Separator,
        checks::{
            header_name_problem, header_value_problem, prefix_problem, redirect_problem_as, suggest,
        },
        drop_in::DROP_IN_NAME,
        finding::{Anchor, Finding},
        locate::KeyPath,
        settings::{Backend, Profile},
    },
    glob::{Glob, ToolFilter},
};

impl Rules {
    pub(super) fn backend(
        &mut self,
        name: &str,
        b: &BackendConfig,
        profiles: &BTreeMap<&str, Option<Arc<Profile>>>,
        only_one: bool,
        gateway: &GatewayConfig,
    ) -> Option<Backend> {
        let path = entry("backends", name);
        let before = self.errors();
        let url_path = path.key("url");
        let url = match &b.url {
            Some(text) => self.endpoint(&url_path, text),
            None => {
                self.missing(url_path);
                None
            }
        };
        let profile = match (b.auth, b.oidc_profile.as_deref()) {
            (Some(auth), Some(_)) => {
                let word = match auth {
                    BackendAuth::Oauth => "oauth",
                    BackendAuth::None => "none",
                };
                self.bad_value(
                    &path.key("auth"),
                    format!(
                        "auth: {word} and oidc_profile both say how to sign in; keep one \
                         (oidc_profile for a server that takes your identity provider's \
                         tokens, auth: oauth for one that runs OAuth itself)"
                    ),
                );
                None
            }
            (Some(BackendAuth::Oauth), None) => own_oauth(name, gateway).map(Arc::new),
            (Some(BackendAuth::None), None) => None,
            (None, Some(p)) => self.profile_of(&path.key("oidc_profile"), p, profiles),
            (None, None) => None,
        };
        let tools = ToolFilter {
            allow: self.globs(&path.key("tools").key("allow"), &b.tools.allow),
            deny: self.globs(&path.key("tools").key("deny"), &b.tools.deny),
        };
        self.headers(&path.key("headers"), b);
        let resource = self.resource(&path.key("resource"), b.resource.as_ref());
        if self.errors() > before {
            return None;
        }
        let resource = resource
            .or_else(|| profile.as_ref().map(|p| p.resource.clone()))
            .unwrap_or_default();
        Some(Backend {
            name: name.to_owned(),
            url: url?,
            transport: b.transport.unwrap_or_default(),
            protocol: b.protocol.unwrap_or_default(),
            profile,
            prefix: prefix(name, b, only_one).map(str::to_owned),
            headers: b
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tools,
            request_timeout: match b
                .request_timeout
                .or(gateway.request_timeout)
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS)
            {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            resource,
        })
    }

    /// The gateway's keys for backends with `auth: oauth`.
    pub(super) fn gateway_sign_in(&mut self, gateway: &GatewayConfig) {
        let path = KeyPath::root().key("gateway");
        if let Some(text) = &gateway.client_metadata_url {
            self.metadata_document(&path.key("client_metadata_url"), text);
        }
        if let Some(text) = &gateway.redirect_url {
            let redirect_path = path.key("redirect_url");
            if let Some(url) = self.url(&redirect_path, text)
                && let Some(problem) = redirect_problem_as(&url, text)
            {
                self.bad_value(&redirect_path, problem);
            }
        }
    }

    /// The profile a backend names (`oidc_profile`). One with errors of its own was reported already.
    fn profile_of(
        &mut self,
        path: &KeyPath,
        name: &str,
        profiles: &BTreeMap<&str, Option<Arc<Profile>>>,
    ) -> Option<Arc<Profile>> {
        if let Some(profile) = profiles.get(name) {
            return profile.clone();
        }
        let known: Vec<&str> = profiles.keys().copied().collect();
        let hint = match suggest(name, known.iter().copied()) {
            Some(close) => format!("; did you mean '{close}'?"),
            // The drop-in's profile comes from its env vars or flags.
            None if name == DROP_IN_NAME => "; set OIDC_ISSUER_URL and OIDC_CLIENT_ID (or pass \
                                             --oidc-issuer-url and --oidc-client-id)"
                .to_owned(),
            None if known.is_empty() => "; oidc_profiles defines none".to_owned(),
            None => format!("; defined: {}", known.join(", ")),
        };
        self.bad_value(path, format!("no OIDC profile named '{name}'{hint}"));
        None
    }

    fn globs(&mut self, path: &KeyPath, patterns: &[String]) -> Vec<Glob> {
        let mut globs = Vec::new();
        for (i, pattern) in patterns.iter().enumerate() {
            match Glob::new(pattern) {
                Ok(glob) => globs.push(glob),
                Err(e) => self.bad_value(&path.index(i), e.to_string()),
            }
        }
        globs
    }

    fn headers(&mut self, path: &KeyPath, b: &BackendConfig) {
        // A profile given through a variable that is unset still means a bearer token.
        let has_profile = b.oidc_profile.is_some() || b.auth == Some(BackendAuth::Oauth);
        for (name, value) in &b.headers {
            let header = path.key(name);
            if let Some(message) = header_name_problem(name, has_profile) {
                let anchor = Anchor::Key(header.clone());
                self.findings
                    .push(Finding::error(header.clone(), anchor, message));
            }
            if let Some(message) = header_value_problem(value.expose()) {
                self.bad_value(&header, message);
            }
        }
    }

    /// Prefixes of enabled backends must be well formed and distinct, whether written or
    /// defaulted from the backend's name; `""` (unprefixed) is exempt. Names claim their
    /// prefixes first, so a prefix written out is the one told that it is taken.
    pub(super) fn prefixes(
        &mut self,
        backends: &BTreeMap<String, BackendConfig>,
        separator: Separator,
        only_one: bool,
    ) {
        let enabled = || backends.iter().filter(|(_, b)| b.enabled != Some(false));
        let defaulted = enabled().filter(|(_, b)| b.prefix.is_none());
        let written = enabled().filter(|(_, b)| b.prefix.is_some());
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, b) in defaulted.chain(written) {
            let Some(prefix) = prefix(name, b, only_one) else {
                continue;
            };
            let path = entry("backends", name);
            let (at, anchor) = match b.prefix {
                None => (path.clone(), Anchor::Key(path)),
                Some(_) => (path.key("prefix"), Anchor::Value(path.key("prefix"))),
            };
            if let Some(problem) = prefix_problem(prefix, separator) {
                let message = match b.prefix {
                    None => format!(
                        "{problem}; the prefix defaults to the backend's name: set `prefix` or \
                         rename the backend"
                    ),
                    Some(_) => problem,
                };
                self.findings
                    .push(Finding::error(at.clone(), anchor.clone(), message));
            }
            match seen.get(prefix) {
                Some(other) => {
                    let how = if b.prefix.is_none() {
                        " (from its name)"
                    } else {
                        ""
                    };
                    let message =
                        format!("prefix '{prefix}'{how} is already used by backend '{other}'");
                    self.findings.push(Finding::error(at, anchor, message));
                }
                None => {
                    seen.insert(prefix, name);
                }
            }
        }
        // Plain resource URIs go to the first unprefixed backend in name order (as the gateway
        // routes them): the others' resources cannot be reached, and the gateway leaves them out.
        let mut unprefixed = enabled().filter(|(_, b)| b.prefix.as_deref() == Some(""));
        if let Some((first, _)) = unprefixed.next() {
            for (name, _) in unprefixed {
                let path = entry("backends", name).key("prefix");
                let message = format!(
                    "backend '{first}' is unprefixed too, and a plain resource URI leads to it \
                     (the first in name order): this backend's resources and resource templates \
                     are left out; give one of them a prefix"
                );
                self.findings
                    .push(Finding::warning(path.clone(), Anchor::Value(path), message));
            }
        }
    }
}

/// A backend's prefix: its own, `None` when unprefixed (`""`, or the drop-in's one backend),
/// else its name.
fn prefix<'a>(name: &'a str, b: &'a BackendConfig, only_one: bool) -> Option<&'a str> {
    match b.prefix.as_deref() {
        Some("") => None,
        Some(p) => Some(p),
        None if only_one && name == DROP_IN_NAME => None,
        None => Some(name),
    }
}

/// The profile of a backend with `auth: oauth`: a public client of whatever authorization
/// server the backend names, registered by the proxy (or named by the gateway's client ID
/// metadata document), asking for the scopes the server says; one of its own, so its
/// tokens and its client serve that backend alone.
///
/// The gateway's keys it uses are checked once, in `Rules::gateway_sign_in`; here a
/// wrong one only leaves the profile out.
fn own_oauth(backend: &str, gateway: &GatewayConfig) -> Option<Profile> {
    let document = match gateway.client_metadata_url.as_deref() {
        Some(text) => Some(metadata_document_url(text)?),
        None => None,
    };
    let redirect = gateway
        .redirect_url
        .as_deref()
        .unwrap_or(DEFAULT_REDIRECT_URL);
    let redirect_url = url::Url::parse(redirect.trim()).ok()?;
    if redirect_problem_as(&redirect_url, redirect).is_some() {
        return None;
    }
    let mut profile = Profile::new(&format!("oauth:{backend}"), None, "", redirect_url);
    profile.client_id = None;
    profile.client_metadata_url = document;
    profile.scopes = Vec::new();
    profile.server_scopes = true;
    profile.own_oauth = true;
    Some(profile)
}
