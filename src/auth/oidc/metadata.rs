//! The provider's discovery document: OpenID Connect discovery, else RFC 8414's OAuth
//! authorization server metadata (with the members OpenID Connect requires filled in), the
//! key set it names, and the checks on the endpoints it advertises.
//!
//! A provider is trusted with the user's login, so what it says is checked before it is used:
//! after discovery, every endpoint the proxy uses must be `https://` (or `http://` on a
//! loopback host), like every request to the provider, so a hostile or compromised discovery
//! document (a `file:` authorization endpoint, a plain-`http` token endpoint elsewhere) is
//! refused before any browser opens.
//!
//! The key set is read when an ID token is to be checked, not at discovery: a plain OAuth
//! server that issues no ID token may name a key set that does not answer, and a sign-in with
//! it still works. When the keys are needed and cannot be read, the error says so, apart from
//! a wrong issuer URL.

use openidconnect::{
    AdditionalProviderMetadata, IssuerUrl, JsonWebKeySet, ProviderMetadata,
    core::{
        CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
        CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
        CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
    },
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    auth::{AuthError, provider_http::send},
    config::endpoint_problem,
    error_text::chain,
};

/// Discovery fields beyond OpenID Connect Core that the proxy reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the provider puts `iss` into every authorization response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RFC 7009 token revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// RFC 8628 device authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// The server takes the URL of a client ID metadata document as a client id (CIMD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// A provider's discovery document.
pub(super) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Reads `issuer`'s discovery document — OpenID Connect's, else RFC 8414's OAuth metadata —
/// and checks the endpoints it advertises. The key set it names is read only when an ID token
/// is to be checked (see `id_token.rs`): a server that issues none need not publish keys that
/// work.
///
/// With `fallback`, a server that publishes neither document (both answer 404) gets MCP
/// 2025-03-26's endpoints at its origin ([`conventional`]); one whose document is wrong is
/// still refused.
pub(super) async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    fallback: bool,
) -> Result<Metadata, AuthError> {
    let failed = |reason: String| AuthError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| failed(e.to_string()))?;
    let metadata = match openid_metadata(http, &issuer_url).await {
        Ok(metadata) => metadata,
        Err(reason) => match oauth_metadata(http, &issuer_url).await {
            Ok(metadata) => metadata,
            Err(oauth) if fallback && reason.missing && oauth.missing => {
                tracing::info!(
                    "{issuer} publishes no authorization server metadata; using /authorize, \
                     /token and /register there (MCP 2025-03-26)"
                );
                return conventional(issuer);
            }
            Err(oauth) => return Err(failed(format!("{reason}; and {oauth}"))),
        },
    };
    check_endpoints(&metadata).map_err(|reason| AuthError::UnsafeProvider {
        issuer: issuer.to_owned(),
        reason,
    })?;
    Ok(metadata)
}

/// The endpoints MCP 2025-03-26 assumes for a server that is its own authorization server
/// and publishes no metadata: `/authorize`, `/token` and `/register` at its origin.
fn conventional(issuer: &str) -> Result<Metadata, AuthError> {
    let origin = issuer.trim_end_matches('/');
    let failed = |reason: String| AuthError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    let issuer_url = IssuerUrl::new(origin.to_owned()).map_err(|e| failed(e.to_string()))?;
    let document = serde_json::json!({
        "issuer": origin,
        "authorization_endpoint": format!("{origin}/authorize"),
        "token_endpoint": format!("{origin}/token"),
        "registration_endpoint": format!("{origin}/register"),
        "code_challenge_methods_supported": ["S256"],
    });
    let metadata: Metadata = serde_json::from_value(as_openid_metadata(document, &issuer_url))
        .map(keys_read_later)
        .map_err(|e| failed(e.to_string()))?;
    check_endpoints(&metadata).map_err(|reason| AuthError::UnsafeProvider {
        issuer: issuer.to_owned(),
        reason,
    })?;
    Ok(metadata)
}

/// Why a metadata document was not read.
#[derive(Debug)]
struct Unread {
    /// The server has none there (404), as opposed to one that is wrong or unreachable.
    missing: bool,
    reason: String,
}

impl From<String> for Unread {
    fn from(reason: String) -> Self {
        Self {
            missing: false,
            reason,
        }
    }
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// OpenID Connect discovery at `issuer`.
async fn openid_metadata(http: &reqwest::Client, issuer: &IssuerUrl) -> Result<Metadata, Unread> {
    let url = openid_configuration_url(issuer.as_str());
    let document = issuers_document(http, &url, issuer, "discovery document").await?;
    // A provider that leaves out members OpenID Connect requires but the proxy does not use
    // (a token-exchange-only identity provider, say) is read as an OAuth server's would be.
    serde_json::from_value(as_openid_metadata(document, issuer))
        .map(keys_read_later)
        .map_err(|e| format!("unusable discovery document at {url}: {e}").into())
}

/// RFC 8414 metadata at `issuer`, for a provider without OpenID Connect discovery.
async fn oauth_metadata(http: &reqwest::Client, issuer: &IssuerUrl) -> Result<Metadata, Unread> {
    let url = authorization_server_metadata_url(issuer.url());
    let document = issuers_document(http, &url, issuer, "OAuth metadata").await?;
    let metadata = serde_json::from_value(as_openid_metadata(document, issuer))
        .map(keys_read_later)
        .map_err(|e| Unread::from(format!("unusable OAuth metadata at {url}: {e}")))?;
    tracing::debug!("Read the OAuth authorization server metadata at {url} (RFC 8414)");
    Ok(metadata)
}

/// The `what` at `url`, which must name `issuer` as its issuer.
async fn issuers_document(
    http: &reqwest::Client,
    url: &str,
    issuer: &IssuerUrl,
    what: &str,
) -> Result<serde_json::Value, Unread> {
    let document = get_json(http, url).await?;
    if document["issuer"].as_str() != Some(issuer.as_str()) {
        return Err(format!(
            "the {what} at {url} names issuer {}, not {}",
            document["issuer"],
            issuer.as_str()
        )
        .into());
    }
    Ok(document)
}

/// `metadata` with no keys yet: they are read at the first ID token (see `id_token.rs`).
fn keys_read_later(metadata: Metadata) -> Metadata {
    metadata.set_jwks(JsonWebKeySet::new(Vec::new()))
}

fn openid_configuration_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// RFC 8414 §3.1: the well-known part goes between the host and the issuer's path.
fn authorization_server_metadata_url(issuer: &Url) -> String {
    let path = issuer.path().trim_end_matches('/');
    format!(
        "{}/.well-known/oauth-authorization-server{path}",
        issuer.origin().ascii_serialization()
    )
}

/// GETs a JSON document from the provider.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, Unread> {
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let response = send(http.clone(), request).await.map_err(|e| chain(&e))?;
    if !response.status().is_success() {
        return Err(Unread {
            missing: response.status() == http::StatusCode::NOT_FOUND,
            reason: format!("{url} answered HTTP {}", response.status()),
        });
    }
    serde_json::from_slice(response.body()).map_err(|e| format!("{url}: not JSON ({e})").into())
}

/// An OAuth authorization server's metadata (RFC 8414) as an OpenID provider's: the members
/// OpenID Connect requires and plain OAuth servers may leave out get their common values (a
/// key set that is never read, for a server without one).
fn as_openid_metadata(mut document: serde_json::Value, issuer: &IssuerUrl) -> serde_json::Value {
    let no_keys = format!(
        "{}/.well-known/no-jwks",
        issuer.as_str().trim_end_matches('/')
    );
    let defaults = [
        ("response_types_supported", serde_json::json!(["code"])),
        ("subject_types_supported", serde_json::json!(["public"])),
        (
            "id_token_signing_alg_values_supported",
            serde_json::json!(["RS256"]),
        ),
        ("jwks_uri", serde_json::json!(no_keys)),
    ];
    if let Some(object) = document.as_object_mut() {
        for (key, value) in defaults {
            let slot = object.entry(key).or_insert(serde_json::Value::Null);
            if slot.is_null() {
                *slot = value;
            }
        }
    }
    document
}

/// Everything in the discovery document the proxy would send a person or a request to must be
/// `https://` (or `http://` on a loopback host).
fn check_endpoints(metadata: &Metadata) -> Result<(), String> {
    let extra = metadata.additional_metadata();
    let endpoints = [
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint().url().as_str()),
        ),
        (
            "token_endpoint",
            metadata.token_endpoint().map(|u| u.url().as_str()),
        ),
        ("jwks_uri", Some(metadata.jwks_uri().url().as_str())),
        (
            "userinfo_endpoint",
            metadata.userinfo_endpoint().map(|u| u.url().as_str()),
        ),
        ("revocation_endpoint", extra.revocation_endpoint.as_deref()),
        (
            "registration_endpoint",
            metadata.registration_endpoint().map(|u| u.url().as_str()),
        ),
        (
            "device_authorization_endpoint",
            extra.device_authorization_endpoint.as_deref(),
        ),
    ];
    for (name, url) in endpoints {
        let Some(url) = url else { continue };
        let problem = match Url::parse(url) {
            Ok(parsed) => endpoint_problem(&parsed),
            Err(e) => Some(format!("'{url}' is not a URL ({e})")),
        };
        if let Some(problem) = problem {
            return Err(format!(
                "its discovery document gives {name} {problem}; the login is refused"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain OAuth server's metadata (RFC 8414), as the MCP conformance suite's serves it:
    /// no key set, no OpenID Connect members. It reads as a provider's, with an empty key set
    /// that is never fetched.
    #[test]
    fn oauth_metadata_without_keys_reads_as_a_provider() {
        let issuer = IssuerUrl::new("https://as.example/tenant".into()).unwrap();
        let document = serde_json::json!({
            "issuer": "https://as.example/tenant",
            "authorization_endpoint": "https://as.example/tenant/authorize",
            "token_endpoint": "https://as.example/tenant/token",
            "jwks_uri": null,
            "code_challenge_methods_supported": ["S256"],
        });
        let metadata: Metadata = serde_json::from_value(as_openid_metadata(document, &issuer))
            .expect("usable as a provider's metadata");
        assert_eq!(
            metadata.token_endpoint().map(|u| u.url().as_str()),
            Some("https://as.example/tenant/token")
        );
        assert!(
            metadata
                .jwks_uri()
                .url()
                .as_str()
                .starts_with("https://as.example/tenant/")
        );
        assert_eq!(
            authorization_server_metadata_url(issuer.url()),
            "https://as.example/.well-known/oauth-authorization-server/tenant"
        );
    }
}
