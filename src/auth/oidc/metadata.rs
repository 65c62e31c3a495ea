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
//! When a discovery fails, the error tells a broken key set (the document is fine, its
//! `jwks_uri` is not) from a wrong issuer URL.

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
/// and the provider's JWKS, and checks the endpoints it advertises.
pub(super) async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, AuthError> {
    let failed = |reason: String| AuthError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| failed(e.to_string()))?;
    let client = http.clone();
    let metadata =
        match Metadata::discover_async(issuer_url.clone(), &|r| send(client.clone(), r)).await {
            Ok(metadata) => metadata,
            Err(e) => {
                let reason = chain(&e);
                match oauth_metadata(http, &issuer_url).await {
                    Ok(metadata) => metadata,
                    Err(oauth) => {
                        return Err(match keys_url(http, issuer).await {
                            // The discovery document is fine: it is the key set that fails.
                            Some(jwks_uri) => AuthError::Keys {
                                issuer: issuer.to_owned(),
                                jwks_uri,
                                reason,
                            },
                            None => failed(format!("{reason}; and {oauth}")),
                        });
                    }
                }
            }
        };
    check_endpoints(&metadata).map_err(|reason| AuthError::UnsafeProvider {
        issuer: issuer.to_owned(),
        reason,
    })?;
    Ok(metadata)
}

/// RFC 8414 metadata at `issuer`, with its keys, for a provider without OpenID Connect
/// discovery; `None` when there is none either.
/// A plain OAuth server may publish no key set (it issues no ID tokens): an empty one
/// stands in, and an ID token it did send would fail validation.
async fn oauth_metadata(http: &reqwest::Client, issuer: &IssuerUrl) -> Result<Metadata, String> {
    let url = authorization_server_metadata_url(issuer.url());
    let document = get_json(http, &url).await?;
    if document["issuer"].as_str() != Some(issuer.as_str()) {
        return Err(format!(
            "the OAuth metadata at {url} names issuer {}, not {}",
            document["issuer"],
            issuer.as_str()
        ));
    }
    let has_keys = document.get("jwks_uri").is_some_and(|u| u.is_string());
    let metadata: Metadata = serde_json::from_value(as_openid_metadata(document, issuer))
        .map_err(|e| format!("unusable OAuth metadata at {url}: {e}"))?;
    let keys = if has_keys {
        JsonWebKeySet::fetch_async(metadata.jwks_uri(), &|r| send(http.clone(), r))
            .await
            .map_err(|e| format!("cannot read the keys named at {url}: {}", chain(&e)))?
    } else {
        JsonWebKeySet::new(Vec::new())
    };
    tracing::debug!("Read the OAuth authorization server metadata at {url} (RFC 8414)");
    Ok(metadata.set_jwks(keys))
}

/// The `jwks_uri` of the issuer's discovery document, if that document can be read: after a
/// failed discovery, this tells a broken key set from a wrong issuer URL.
async fn keys_url(http: &reqwest::Client, issuer: &str) -> Option<String> {
    let document = get_json(http, &openid_configuration_url(issuer))
        .await
        .ok()?;
    document["jwks_uri"].as_str().map(str::to_owned)
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
async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let response = send(http.clone(), request).await.map_err(|e| chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered HTTP {}", response.status()));
    }
    serde_json::from_slice(response.body()).map_err(|e| format!("{url}: not JSON ({e})"))
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
