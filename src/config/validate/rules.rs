//! What the schema cannot say: URLs, references between sections, prefixes, globs and
//! headers. These rules read the tree the structural walk produced; values of the wrong type
//! are skipped here (the walk reported them), and so are values still missing an unset
//! variable (the walk warned about them).

use std::collections::{BTreeMap, HashSet};

use serde_yaml::{Mapping, Value as Yaml};
use url::Url;

use super::{Anchor, Finding, suggest};
use crate::{
    config::{
        Config, DEFAULT_NAME, DEFAULT_REDIRECT_URL, Separator, is_loopback_host, locate::KeyPath,
        prefix_problem, redirect_problem,
    },
    glob::Glob,
};

/// Headers the proxy sets itself on every request: a configured value would fight them.
const PROXY_HEADERS: [&str; 5] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "accept",
    "content-type",
    "last-event-id",
];

/// Runs every rule over the checked tree.
pub(super) fn check(
    root: &Yaml,
    unresolved: &HashSet<KeyPath>,
    overlay: Option<&Config>,
) -> Vec<Finding> {
    let mut rules = Rules {
        unresolved,
        findings: Vec::new(),
    };
    if !root.is_mapping() {
        // The walk reported the document itself; nothing below it can be checked.
        return rules.findings;
    }
    let top = KeyPath::root();
    let profiles = mapping(root, "oidc_profiles");
    if let Some(profiles) = profiles {
        for (name, profile) in entries(profiles) {
            rules.profile(&top.key("oidc_profiles").key(name), profile);
        }
        rules.shared_redirects(profiles);
    }
    let mut known_profiles: Vec<&str> = profiles.map_or_else(Vec::new, |p| names(p).collect());
    if let Some(overlay) = overlay {
        known_profiles.extend(overlay.oidc_profiles.keys().map(String::as_str));
    }
    let backends = mapping(root, "backends");
    if let Some(backends) = backends {
        for (name, backend) in entries(backends) {
            rules.backend(&top.key("backends").key(name), backend, &known_profiles);
        }
        rules.prefixes(backends, separator(root));
    }
    let overlay_has_backends = overlay.is_some_and(|o| !o.backends.is_empty());
    if !overlay_has_backends {
        rules.something_to_serve(root);
    }
    rules.findings
}

struct Rules<'a> {
    unresolved: &'a HashSet<KeyPath>,
    findings: Vec<Finding>,
}

impl Rules<'_> {
    fn error(&mut self, path: KeyPath, anchor: Anchor, message: String) {
        self.findings.push(Finding::error(path, anchor, message));
    }

    fn warning(&mut self, path: KeyPath, anchor: Anchor, message: String) {
        self.findings.push(Finding::warning(path, anchor, message));
    }

    /// The text at `parent.key`, unless it is of another type or lacks a variable.
    fn text<'v>(&self, parent: &'v Mapping, path: &KeyPath) -> Option<&'v str> {
        let key = match path.segments().last() {
            Some(crate::config::locate::Segment::Key(key)) => key,
            _ => return None,
        };
        let text = parent.get(key.as_str())?.as_str()?;
        (!self.unresolved.contains(path)).then_some(text)
    }

    fn profile(&mut self, path: &KeyPath, profile: &Yaml) {
        let Some(profile) = profile.as_mapping() else {
            return;
        };
        let issuer = path.key("issuer_url");
        if let Some(url) = self.text(profile, &issuer) {
            self.endpoint(&issuer, url);
        }
        let client_id = path.key("client_id");
        if let Some(id) = self.text(profile, &client_id)
            && id.trim().is_empty()
        {
            let message = "must not be empty".to_owned();
            self.error(client_id.clone(), Anchor::Value(client_id), message);
        }
        let redirect = path.key("redirect_url");
        if let Some(url) = self.text(profile, &redirect) {
            self.redirect(&redirect, url);
        }
    }

    /// An issuer or backend URL: http(s), and https unless the host is loopback (tokens and
    /// secrets would otherwise cross the network in clear).
    fn endpoint(&mut self, path: &KeyPath, text: &str) {
        let url = match Url::parse(text.trim()) {
            Ok(url) => url,
            Err(e) => {
                let message = format!("'{text}' is not a valid URL ({e})");
                self.error(path.clone(), Anchor::Value(path.clone()), message);
                return;
            }
        };
        let message = match url.scheme() {
            "https" => return,
            "http" if is_loopback_host(&url) => return,
            "http" => format!(
                "'{text}' must use https:// (http:// is only allowed on localhost, 127.0.0.1 \
                 or [::1])"
            ),
            _ => format!("'{text}' must be an https:// URL"),
        };
        self.error(path.clone(), Anchor::Value(path.clone()), message);
    }

    /// The callback server binds the redirect URL's own host and port.
    fn redirect(&mut self, path: &KeyPath, text: &str) {
        let message = match Url::parse(text.trim()) {
            Err(e) => format!("'{text}' is not a valid URL ({e})"),
            Ok(url) => match redirect_problem(&url) {
                None => return,
                Some(problem) => problem,
            },
        };
        self.error(path.clone(), Anchor::Value(path.clone()), message);
    }

    /// Profiles of different issuers on one redirect URL: one login's callback could be
    /// taken for the other's (a mix-up the `state` check alone does not rule out when both
    /// logins run in different processes).
    fn shared_redirects(&mut self, profiles: &Mapping) {
        let mut seen: Vec<(String, &str, &str)> = Vec::new(); // redirect URL, issuer, profile
        for (name, profile) in entries(profiles) {
            let Some(profile) = profile.as_mapping() else {
                continue;
            };
            let path = KeyPath::root().key("oidc_profiles").key(name);
            let redirect_path = path.key("redirect_url");
            let Some(issuer) = self.text(profile, &path.key("issuer_url")) else {
                continue;
            };
            let (redirect, anchor) = match self.text(profile, &redirect_path) {
                Some(text) => (text, Anchor::Value(redirect_path.clone())),
                None if profile.contains_key("redirect_url") => continue,
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
                self.warning(redirect_path, anchor, message);
            }
            seen.push((url, issuer, name));
        }
    }

    fn backend(&mut self, path: &KeyPath, backend: &Yaml, profiles: &[&str]) {
        let Some(backend) = backend.as_mapping() else {
            return;
        };
        let url = path.key("url");
        if let Some(text) = self.text(backend, &url) {
            self.endpoint(&url, text);
        }
        let profile_path = path.key("oidc_profile");
        let profile = self.text(backend, &profile_path);
        if let Some(name) = profile
            && !profiles.contains(&name)
        {
            let hint = match suggest(name, profiles.iter().copied()) {
                Some(close) => format!("; did you mean '{close}'?"),
                None if profiles.is_empty() => "; oidc_profiles defines none".to_owned(),
                None => format!("; defined: {}", profiles.join(", ")),
            };
            let message = format!("no OIDC profile named '{name}'{hint}");
            self.error(profile_path.clone(), Anchor::Value(profile_path), message);
        }
        // A profile given through a variable that is unset still means a bearer token.
        let has_profile = backend
            .get("oidc_profile")
            .is_some_and(|p| !p.is_null() && p.as_str() != Some(""));
        if let Some(tools) = backend.get("tools").and_then(Yaml::as_mapping) {
            self.globs(&path.key("tools"), tools);
        }
        if let Some(headers) = backend.get("headers").and_then(Yaml::as_mapping) {
            self.headers(&path.key("headers"), headers, has_profile);
        }
    }

    fn globs(&mut self, path: &KeyPath, tools: &Mapping) {
        for kind in ["allow", "deny"] {
            let Some(list) = tools.get(kind).and_then(Yaml::as_sequence) else {
                continue;
            };
            for (i, item) in list.iter().enumerate() {
                let item_path = path.key(kind).index(i);
                let Some(pattern) = item.as_str() else {
                    continue;
                };
                if self.unresolved.contains(&item_path) {
                    continue;
                }
                if let Err(e) = Glob::new(pattern) {
                    self.error(item_path.clone(), Anchor::Value(item_path), e.to_string());
                }
            }
        }
    }

    fn headers(&mut self, path: &KeyPath, headers: &Mapping, has_profile: bool) {
        for (name, value) in entries(headers) {
            let header = path.key(name);
            if let Some(message) = header_name_problem(name, has_profile) {
                self.error(header.clone(), Anchor::Key(header.clone()), message);
            }
            let Some(value) = value.as_str() else {
                continue;
            };
            if self.unresolved.contains(&header) {
                continue;
            }
            if http::HeaderValue::from_str(value).is_err() {
                let message = "not a valid HTTP header value (only visible ASCII characters, \
                               spaces and tabs, on one line)"
                    .to_owned();
                self.error(header.clone(), Anchor::Value(header), message);
            }
        }
    }

    /// Prefixes of enabled backends must be well formed and distinct, whether written or
    /// defaulted from the backend's name; `""` (unprefixed) is exempt.
    fn prefixes(&mut self, backends: &Mapping, separator: Separator) {
        let only_one = backends.len() == 1;
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        let mut unprefixed: Vec<(&str, KeyPath)> = Vec::new();
        for (name, backend) in entries(backends) {
            let Some(backend) = backend.as_mapping() else {
                continue;
            };
            if backend.get("enabled").and_then(Yaml::as_bool) == Some(false) {
                continue;
            }
            let path = KeyPath::root().key("backends").key(name);
            let explicit = path.key("prefix");
            let (prefix, anchor, defaulted) = match backend.get("prefix") {
                Some(Yaml::String(_)) if self.unresolved.contains(&explicit) => continue,
                Some(Yaml::String(p)) if p.is_empty() => {
                    unprefixed.push((name, explicit));
                    continue;
                }
                Some(Yaml::String(p)) => (p.as_str(), Anchor::Value(explicit.clone()), false),
                Some(Yaml::Null) | None => {
                    // The drop-in case stays unprefixed, as `Config::resolve` does.
                    if only_one && name == DEFAULT_NAME {
                        continue;
                    }
                    (name, Anchor::Key(path.clone()), true)
                }
                Some(_) => continue,
            };
            let at = if defaulted { path.clone() } else { explicit };
            if let Some(problem) = prefix_problem(prefix, separator) {
                let message = if defaulted {
                    format!(
                        "{problem}; the prefix defaults to the backend's name: set `prefix` or \
                         rename the backend"
                    )
                } else {
                    problem
                };
                self.error(at.clone(), anchor.clone(), message);
            }
            match seen.get(prefix) {
                Some(other) => {
                    let how = if defaulted { " (from its name)" } else { "" };
                    let message =
                        format!("prefix '{prefix}'{how} is already used by backend '{other}'");
                    self.error(at, anchor, message);
                }
                None => {
                    seen.insert(prefix.to_owned(), name);
                }
            }
        }
        // Plain resource URIs go to the first unprefixed backend in name order (as the gateway
        // routes them): the others' resources cannot be reached, and the gateway leaves them out.
        unprefixed.sort_by_key(|(name, _)| *name);
        if let Some(((first, _), rest)) = unprefixed.split_first() {
            for (_, path) in rest {
                let message = format!(
                    "backend '{first}' is unprefixed too, and a plain resource URI leads to it \
                     (the first in name order): this backend's resources and resource templates \
                     are left out; give one of them a prefix"
                );
                self.warning(path.clone(), Anchor::Value(path.clone()), message);
            }
        }
    }

    /// At least one backend, and not all of them disabled.
    fn something_to_serve(&mut self, root: &Yaml) {
        let path = KeyPath::root().key("backends");
        let message = match root.get("backends") {
            None | Some(Yaml::Null) => "no backends: define at least one under `backends`",
            Some(Yaml::Mapping(map)) if map.is_empty() => {
                "no backends: define at least one under `backends`"
            }
            Some(Yaml::Mapping(map))
                if map
                    .values()
                    .all(|b| b.get("enabled").and_then(Yaml::as_bool) == Some(false)) =>
            {
                "every backend is disabled (enabled: false): nothing to serve"
            }
            Some(_) => return,
        };
        let anchor = if root.get("backends").is_some() {
            Anchor::Key(path.clone())
        } else {
            Anchor::Nowhere
        };
        self.error(path, anchor, message.to_owned());
    }
}

fn header_name_problem(name: &str, has_profile: bool) -> Option<String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(format!("'{name}' is not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if PROXY_HEADERS.contains(&lower.as_str()) {
        return Some(format!(
            "'{name}' is set by the proxy itself and cannot be configured"
        ));
    }
    if lower == "authorization" && has_profile {
        return Some(format!(
            "'{name}' would replace the bearer token of the backend's oidc_profile; remove \
             the header or the oidc_profile"
        ));
    }
    None
}

/// The mapping under a top-level key, if it is one.
fn mapping<'v>(root: &'v Yaml, key: &str) -> Option<&'v Mapping> {
    root.get(key)?.as_mapping()
}

/// Entries with text keys (the walk turned number keys into text and reported the rest).
fn entries(map: &Mapping) -> impl Iterator<Item = (&str, &Yaml)> {
    map.iter().filter_map(|(k, v)| Some((k.as_str()?, v)))
}

fn names(map: &Mapping) -> impl Iterator<Item = &str> {
    map.keys().filter_map(Yaml::as_str)
}

/// The configured separator, or the default when it is absent or invalid (reported already).
fn separator(root: &Yaml) -> Separator {
    root.get("gateway")
        .and_then(|g| g.get("separator"))
        .and_then(|s| serde_yaml::from_value(s.clone()).ok())
        .unwrap_or(Separator::Underscore)
}
