//! The backend's side of OAuth: what it says when it refuses a token (its `WWW-Authenticate`
//! challenge, RFC 6750 §3), what it says about itself (protected resource metadata, RFC
//! 9728), and so which resource indicator (RFC 8707) its tokens are bound to.
//!
//! A backend that publishes metadata names the authorization servers it trusts and the
//! resource identifier its tokens must carry as audience. The proxy reads it:
//! - to find the issuer of a profile that names none;
//! - to bind the backend's tokens to its resource (`resource: true`, and by default for
//!   backends that publish metadata), so that no backend ever receives a token minted for
//!   another.
//!
//! Metadata is read from the URL a `401` names (`resource_metadata`, only on the backend's own
//! origin), else from the well-known locations: `/.well-known/oauth-protected-resource`
//! inserted before the backend's path, then at the root; else from where the backend's `401` to
//! a request without a token (a POST, as MCP's requests are; then a GET) names it. It must come over `https://` (or `http://` on a
//! loopback host), and the `resource` it names must be the backend's own — its URL or an
//! ancestor of it on a path-segment boundary, on the same origin — and not one another
//! configured backend owns: metadata of another server is never taken for this one's. A
//! backend is not an authority: what it names is a suggestion that
//! [`authority`](super::authority) weighs, never where a credential goes on its own say.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::provider_http::send;
use crate::{
    config::endpoint_problem,
    error_text::{bounded, untrusted},
};

/// How long a backend may take to answer for its metadata: a probe, not a request a person
/// waits on for long.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A `WWW-Authenticate: Bearer` challenge: why a backend refused a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `invalid_token`, `insufficient_scope`, `invalid_request`, ...
    pub error: Option<String>,
    /// The backend's explanation.
    pub error_description: Option<String>,
    /// The scopes the request needs (RFC 6750 §3; MCP's scope step-up).
    pub scope: Option<String>,
    /// Where the backend's protected resource metadata is (RFC 9728 §5.1).
    pub resource_metadata: Option<String>,
}

impl Challenge {
    /// The `Bearer` challenge of a `WWW-Authenticate` value, if it has one. Tolerant of what
    /// servers write: any case for the scheme and the names, quoted or bare values, several
    /// challenges in one header.
    pub fn parse(header: &str) -> Option<Self> {
        let mut challenge = None;
        let mut rest = header.trim();
        while !rest.is_empty() {
            let (token, after) = split_token(rest);
            let after = after.trim_start();
            if token.is_empty() {
                // A stray separator.
                rest = after.get(1..).unwrap_or("").trim_start();
                continue;
            }
            if let Some(value_text) = after.strip_prefix('=') {
                // A parameter of the current challenge.
                let (value, remaining) = split_value(value_text.trim_start());
                if let Some(challenge) = challenge.as_mut() {
                    set_param(challenge, token, value);
                }
                rest = remaining.trim_start().trim_start_matches(',').trim_start();
            } else {
                // A new scheme: only Bearer's parameters are kept.
                if challenge.is_some() && !token.eq_ignore_ascii_case("bearer") {
                    break;
                }
                if token.eq_ignore_ascii_case("bearer") {
                    challenge = Some(Self::default());
                }
                rest = after.trim_start_matches(',').trim_start();
            }
        }
        challenge
    }

    /// The scopes the challenge asks for, one by one.
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The challenge in a sentence for an error message: `invalid_token: audience does not
    /// include this server`.
    pub fn describe(&self) -> Option<String> {
        match (&self.error, &self.error_description) {
            (Some(error), Some(description)) => Some(format!("{error}: {description}")),
            (Some(error), None) => Some(error.clone()),
            (None, Some(description)) => Some(description.clone()),
            (None, None) => None,
        }
    }

    /// Which part of a freshly issued token the backend most likely objects to, from its own
    /// words: audience, scope or issuer.
    pub fn likely_culprit(&self) -> Option<&'static str> {
        let text = format!(
            "{} {}",
            self.error.as_deref().unwrap_or_default(),
            self.error_description.as_deref().unwrap_or_default()
        )
        .to_ascii_lowercase();
        if self.error.as_deref() == Some("insufficient_scope") || text.contains("scope") {
            Some("the scopes (OIDC_SCOPES / scopes)")
        } else if text.contains("aud") || text.contains("resource") {
            Some("the audience (the profile's `resource`, or an `audience` in authorize_params)")
        } else if text.contains("iss") {
            Some("the issuer (OIDC_ISSUER_URL / issuer_url)")
        } else {
            None
        }
    }
}

/// A token (RFC 9110 `token` characters) at the start of `text`, and what follows it.
fn split_token(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| c.is_whitespace() || matches!(c, '=' | ',' | '"'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A parameter value — a quoted string (with `\` escapes) or a token — and what follows it.
fn split_value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let (token, rest) = split_token(text);
        return (token.to_owned(), rest);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &quoted[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

fn set_param(challenge: &mut Challenge, name: &str, value: String) {
    // A backend's words reach messages, logs and terminals: no escapes, and bounded (long
    // enough for a metadata URL).
    let value = bounded(&value, 2000);
    let slot = match name.to_ascii_lowercase().as_str() {
        "error" => &mut challenge.error,
        "error_description" => &mut challenge.error_description,
        "scope" => &mut challenge.scope,
        "resource_metadata" => &mut challenge.resource_metadata,
        _ => return,
    };
    *slot = Some(value);
}

/// What a protected resource says of itself (RFC 9728 §2): the parts the proxy uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceMetadata {
    /// Its resource identifier: the audience its tokens must carry.
    pub resource: String,
    /// The issuers of the tokens it accepts.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// Why a backend's metadata is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// What the backend publishes cannot be used: it is about another server, claims the
    /// resource of another configured backend, or sits at an unsafe URL. As good as none, and
    /// the reason is said once.
    Unusable(String),
    /// It could not be read now (no answer, a server error): it is read again later, never
    /// remembered as "none".
    Unavailable(String),
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unusable(reason) | Self::Unavailable(reason) => f.write_str(reason),
        }
    }
}

/// The resources the other configured backends own (their URLs and configured `resource`
/// values): a backend whose metadata claims one of them would receive tokens meant for another
/// server, so that metadata is refused.
#[derive(Debug, Clone, Default)]
pub struct Owners(Vec<(String, String)>);

impl Owners {
    /// Owners from (backend name, resource) pairs.
    pub fn new(owned: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(owned.into_iter().collect())
    }

    /// The backend that owns `resource`, if another one does.
    fn owner_of(&self, resource: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, owned)| same_resource(owned, resource))
            .map(|(name, _)| name.as_str())
    }
}

/// Two resource identifiers for the same thing: equal once parsed, but for a trailing `/`.
fn same_resource(a: &str, b: &str) -> bool {
    let normal = |text: &str| match Url::parse(text.trim()) {
        Ok(url) => url.as_str().trim_end_matches('/').to_owned(),
        Err(_) => text.trim().trim_end_matches('/').to_owned(),
    };
    normal(a) == normal(b)
}

/// Where a backend's metadata may be: `hint` (from a `401`) first, then the well-known URL
/// with the backend's path, then the well-known URL at the root.
fn metadata_urls(backend: &Url, hint: Option<&str>) -> Vec<String> {
    let mut urls: Vec<String> = hint.map(str::to_owned).into_iter().collect();
    let origin = backend.origin().ascii_serialization();
    let path = backend.path().trim_end_matches('/');
    if !path.is_empty() {
        urls.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    urls.dedup();
    urls
}

/// Whether `resource` names the backend at `url`: the same origin, and a path that is the
/// backend's, or one of its ancestors on a `/` boundary (`/api` names `/api/mcp`; `/mcp`
/// does not name `/mcp2`).
fn names_backend(resource: &str, url: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else {
        return false;
    };
    let theirs = resource.path().trim_end_matches('/');
    let ours = url.path().trim_end_matches('/');
    resource.origin() == url.origin()
        && (ours == theirs
            || ours
                .strip_prefix(theirs)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// A `resource_metadata` URL the backend named, if it is on the backend's own origin: a
/// backend may say where its own metadata is, not make the proxy fetch another server's
/// (RFC 9728 §3.3's impersonation).
fn own_hint<'a>(hint: &'a str, backend: &Url) -> Option<&'a str> {
    let same = Url::parse(hint).is_ok_and(|url| url.origin() == backend.origin());
    if !same {
        tracing::warn!(
            "Backend {backend} names its protected resource metadata at {}, on another origin; \
             not read",
            untrusted(hint)
        );
    }
    same.then_some(hint)
}

/// Reads the backend's metadata: `Ok(None)` when it publishes none, an error when what it
/// publishes cannot be used or cannot be read now. Where `hint` says (if on the backend's
/// origin), else at the well-known URLs, else where the backend's challenge to a request
/// without a token names it (RFC 9728 §5). `owners` are the resources of the other configured
/// backends, which this one may not claim.
pub async fn discover(
    http: &reqwest::Client,
    backend: &Url,
    hint: Option<&str>,
    owners: &Owners,
) -> Result<Option<ResourceMetadata>, MetadataError> {
    let hint = hint.and_then(|h| own_hint(h, backend));
    let urls = metadata_urls(backend, hint);
    if let Some(metadata) = first_metadata(http, backend, urls, owners).await? {
        return Ok(Some(metadata));
    }
    let named = match hint {
        Some(_) => None,
        None => challenge_hint(http, backend).await,
    };
    match named.as_deref().and_then(|n| own_hint(n, backend)) {
        Some(named) => first_metadata(http, backend, vec![named.to_owned()], owners).await,
        None => Ok(None),
    }
}

/// The scopes the backend's `401` to a request without a token names (MCP's scope selection
/// starts there); empty when it names none or answers otherwise.
pub async fn challenge_scopes(http: &reqwest::Client, backend: &Url) -> Vec<String> {
    let Some([post, _]) = probes(backend) else {
        return Vec::new();
    };
    match challenge_to(http, post).await {
        Some(challenge) => challenge.scopes(),
        None => Vec::new(),
    }
}

/// Where the backend's `401` to a request without a token says its metadata is.
async fn challenge_hint(http: &reqwest::Client, backend: &Url) -> Option<String> {
    for request in probes(backend)? {
        let method = request.method().clone();
        let named = challenge_to(http, request)
            .await
            .and_then(|c| c.resource_metadata);
        if let Some(named) = named {
            tracing::debug!(
                "Backend {backend} names its protected resource metadata in its challenge to a \
                 {method}: {}",
                untrusted(&named)
            );
            return Some(named);
        }
    }
    None
}

/// Requests without a token that a protected backend answers with its challenge: a POST, as
/// an MCP client's requests are (a server may challenge only those) — a `ping`, which changes
/// nothing on a server that takes it — then a GET, as the standing stream of older servers is
/// opened.
fn probes(backend: &Url) -> Option<[http::Request<Vec<u8>>; 2]> {
    let ping = br#"{"jsonrpc":"2.0","id":"authful-mcp-proxy-probe","method":"ping"}"#;
    let accept = "application/json, text/event-stream";
    let post = http::Request::post(backend.as_str())
        .header(http::header::ACCEPT, accept)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(ping.to_vec())
        .ok()?;
    let get = http::Request::get(backend.as_str())
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())
        .ok()?;
    Some([post, get])
}

/// The challenge of the backend's answer to `request`, if it carries one.
async fn challenge_to(
    http: &reqwest::Client,
    request: http::Request<Vec<u8>>,
) -> Option<Challenge> {
    let response = tokio::time::timeout(METADATA_TIMEOUT, send(http.clone(), request))
        .await
        .ok()?
        .ok()?;
    response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .and_then(Challenge::parse)
}

/// The first usable metadata at `urls`; an error when one is unusable, or when none was found
/// and some could not be read (so that "none" is never concluded from a failure).
async fn first_metadata(
    http: &reqwest::Client,
    backend: &Url,
    urls: Vec<String>,
    owners: &Owners,
) -> Result<Option<ResourceMetadata>, MetadataError> {
    let mut unavailable = None;
    for url in urls {
        let parsed = Url::parse(&url).map_err(|e| {
            MetadataError::Unusable(format!("'{}' is not a URL ({e})", untrusted(&url)))
        })?;
        if let Some(problem) = endpoint_problem(&parsed) {
            return Err(MetadataError::Unusable(format!(
                "its protected resource metadata {} {}; not read",
                parsed,
                untrusted(&problem)
            )));
        }
        let Ok(request) = http::Request::get(parsed.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
        else {
            continue;
        };
        let response =
            match tokio::time::timeout(METADATA_TIMEOUT, send(http.clone(), request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    tracing::debug!("No protected resource metadata at {parsed}: {e}");
                    unavailable.get_or_insert_with(|| format!("{parsed}: {e}"));
                    continue;
                }
                Err(_) => {
                    tracing::debug!("No answer for protected resource metadata at {parsed}");
                    unavailable.get_or_insert_with(|| {
                        format!(
                            "{parsed}: no answer within {} s",
                            METADATA_TIMEOUT.as_secs()
                        )
                    });
                    continue;
                }
            };
        let status = response.status();
        if !status.is_success() {
            tracing::debug!("No protected resource metadata at {parsed} (HTTP {status})");
            // A server that is down says nothing about what it would publish.
            if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
                unavailable.get_or_insert_with(|| format!("{parsed}: HTTP {status}"));
            }
            continue;
        }
        let metadata: ResourceMetadata = match serde_json::from_slice(response.body()) {
            Ok(metadata) => metadata,
            Err(e) => {
                tracing::debug!("Unusable protected resource metadata at {parsed}: {e}");
                continue;
            }
        };
        if !names_backend(&metadata.resource, backend) {
            return Err(MetadataError::Unusable(format!(
                "its protected resource metadata at {parsed} is about {}, not about {backend}; \
                 not used",
                untrusted(&metadata.resource)
            )));
        }
        if let Some(owner) = owners.owner_of(&metadata.resource) {
            return Err(MetadataError::Unusable(format!(
                "its protected resource metadata at {parsed} claims the resource {} of backend \
                 '{owner}'; not used (its tokens would be valid at '{owner}')",
                untrusted(&metadata.resource)
            )));
        }
        tracing::debug!(
            "Backend {backend} publishes protected resource metadata at {parsed}: resource {}, \
             authorization servers {:?}",
            untrusted(&metadata.resource),
            metadata
                .authorization_servers
                .iter()
                .map(|s| untrusted(s))
                .collect::<Vec<_>>()
        );
        return Ok(Some(metadata));
    }
    match unavailable {
        Some(reason) => Err(MetadataError::Unavailable(format!(
            "its protected resource metadata could not be read ({reason}); it is read again \
             later"
        ))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_is_read_whatever_its_spelling() {
        let c = Challenge::parse(
            r#"Bearer realm="mcp", error="insufficient_scope", error_description="needs \"admin\"", scope="mcp:tools mcp:admin", resource_metadata="https://m.example/.well-known/oauth-protected-resource/mcp""#,
        )
        .unwrap();
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.error_description.as_deref(), Some("needs \"admin\""));
        assert_eq!(c.scopes(), ["mcp:tools", "mcp:admin"]);
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://m.example/.well-known/oauth-protected-resource/mcp")
        );
        let c = Challenge::parse("bearer ERROR=invalid_token,Scope=\"a\"").unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(c.scope.as_deref(), Some("a"));
        assert_eq!(Challenge::parse("Bearer"), Some(Challenge::default()));
        let c = Challenge::parse(r#"Basic realm="x", Bearer error="invalid_token""#).unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        let c = Challenge::parse(r#"Bearer error="invalid_token", DPoP error="x""#).unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(Challenge::parse(r#"Basic realm="x""#), None);
    }

    #[test]
    fn the_culprit_is_named_from_the_backends_words() {
        let with = |error: &str, description: &str| Challenge {
            error: Some(error.into()),
            error_description: Some(description.into()),
            ..Challenge::default()
        };
        let culprit = |c: Challenge| c.likely_culprit().unwrap_or("none");
        assert!(
            culprit(with(
                "invalid_token",
                "audience does not include this server"
            ))
            .contains("audience")
        );
        assert!(culprit(with("insufficient_scope", "")).contains("scopes"));
        assert!(culprit(with("invalid_token", "unexpected issuer")).contains("issuer"));
        assert_eq!(culprit(with("invalid_token", "token has expired")), "none");
    }

    #[test]
    fn metadata_is_looked_for_at_the_hint_then_the_well_known_urls() {
        let url = Url::parse("https://m.example/api/mcp").unwrap();
        assert_eq!(
            metadata_urls(&url, Some("https://m.example/prm")),
            [
                "https://m.example/prm",
                "https://m.example/.well-known/oauth-protected-resource/api/mcp",
                "https://m.example/.well-known/oauth-protected-resource",
            ]
        );
        let root = Url::parse("https://m.example/").unwrap();
        assert_eq!(
            metadata_urls(&root, None),
            ["https://m.example/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn only_metadata_about_this_backend_is_taken() {
        let url = Url::parse("https://m.example/api/mcp").unwrap();
        assert!(names_backend("https://m.example/api/mcp", &url));
        assert!(names_backend("https://m.example/api/mcp/", &url));
        assert!(names_backend("https://m.example/", &url));
        assert!(names_backend("https://m.example", &url));
        assert!(!names_backend("https://m.example/other", &url));
        assert!(!names_backend("https://evil.example/api/mcp", &url));
        assert!(!names_backend("http://m.example/api/mcp", &url));
        assert!(!names_backend("not a url", &url));
        // Path segments, not string prefixes: `/api/mc` is not an ancestor of `/api/mcp`.
        assert!(!names_backend("https://m.example/api/mc", &url));
        let mcp2 = Url::parse("https://m.example/mcp2").unwrap();
        assert!(!names_backend("https://m.example/mcp", &mcp2));
        assert!(names_backend("https://m.example/mcp2", &mcp2));
    }

    #[test]
    fn a_resource_of_another_backend_has_an_owner() {
        let owners = Owners::new([("b".to_owned(), "https://m.example/b/".to_owned())]);
        assert_eq!(owners.owner_of("https://m.example/b"), Some("b"));
        assert_eq!(owners.owner_of("https://M.example/b/"), Some("b"));
        assert_eq!(owners.owner_of("https://m.example/b/c"), None);
        assert_eq!(owners.owner_of("https://m.example/"), None);
    }

    #[test]
    fn a_metadata_hint_must_be_on_the_backends_origin() {
        let url = Url::parse("https://m.example/mcp").unwrap();
        assert!(own_hint("https://m.example/prm", &url).is_some());
        assert!(own_hint("https://evil.example/prm", &url).is_none());
        assert!(own_hint("http://m.example/prm", &url).is_none());
        assert!(own_hint("https://m.example:8443/prm", &url).is_none());
        assert!(own_hint("not a url", &url).is_none());
    }
}
