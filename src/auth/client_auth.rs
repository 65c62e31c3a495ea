//! How the client proves who it is to the identity provider, on every request to its token,
//! device-authorization and revocation endpoints.
//!
//! - A public client (a desktop app) sends only its `client_id`.
//! - A confidential client sends its secret: as HTTP Basic, RFC 6749's default, or in the
//!   form where the provider advertises only `client_secret_post`.
//! - A client with a key pair sends a JWT signed with its private key (RFC 7523,
//!   `private_key_jwt`): no shared secret to leak, the form service accounts in CI favour. The
//!   assertion is made fresh for every request — providers refuse a replayed `jti` — and the
//!   key file is read each time, so a rotated key is picked up without a restart.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openidconnect::{CsrfToken, core::CoreClientAuthMethod};
use serde::Serialize;

use super::{AuthError, cache::unix_now};
use crate::{
    config::{AssertionAlgorithm, AssertionAudience, ClientAssertion, Profile},
    secret::Secret,
};

/// `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one request, too short to be worth stealing.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// The client's credentials, and how they travel.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client: `client_id` in the form.
    Public,
    /// `Authorization: Basic` with the id and secret (`client_secret_basic`).
    Basic(Secret),
    /// The secret in the form (`client_secret_post`).
    Post(Secret),
    /// A signed JWT in the form (`private_key_jwt`).
    PrivateKeyJwt(ClientAssertion),
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl ClientAuth {
    /// The credentials of `profile`, sent the way the provider takes them (`supported`: its
    /// `token_endpoint_auth_methods_supported`, if it lists them).
    pub fn choose(profile: &Profile, supported: Option<&[CoreClientAuthMethod]>) -> Self {
        if let Some(assertion) = &profile.client_assertion {
            return Self::PrivateKeyJwt(assertion.clone());
        }
        let Some(secret) = profile.client_secret.clone() else {
            return Self::Public;
        };
        let supports = |m: &CoreClientAuthMethod| supported.is_none_or(|list| list.contains(m));
        // client_secret_basic is the spec's default; _post where only that exists.
        if supports(&CoreClientAuthMethod::ClientSecretBasic) {
            Self::Basic(secret)
        } else {
            Self::Post(secret)
        }
    }

    /// What the logs call it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Public => "none",
            Self::Basic(_) => "client_secret_basic",
            Self::Post(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }

    /// Adds the client's credentials to a form POSTed to `endpoint` of `issuer`; returns the
    /// `Authorization` header value to send, if the credentials travel in one.
    pub fn apply(
        &self,
        client_id: &str,
        issuer: &str,
        endpoint: &str,
        form: &mut Vec<(String, String)>,
    ) -> Result<Option<Secret>, AuthError> {
        match self {
            Self::Basic(secret) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before the Base64.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair = format!("{}:{}", encode(client_id), encode(secret.expose()));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                return Ok(Some(Secret::new(format!("Basic {basic}"))));
            }
            Self::Public => form.push(("client_id".into(), client_id.into())),
            Self::Post(secret) => {
                form.push(("client_id".into(), client_id.into()));
                form.push(("client_secret".into(), secret.expose().to_owned()));
            }
            Self::PrivateKeyJwt(key) => {
                form.push(("client_id".into(), client_id.into()));
                form.push(("client_assertion_type".into(), JWT_BEARER.into()));
                let audience = match &key.audience {
                    AssertionAudience::TokenEndpoint => endpoint,
                    AssertionAudience::Issuer => issuer,
                    AssertionAudience::Url(url) => url,
                };
                form.push((
                    "client_assertion".into(),
                    assertion(key, client_id, audience)?,
                ));
            }
        }
        Ok(None)
    }
}

/// A fresh assertion for one request, for `audience`.
fn assertion(key: &ClientAssertion, client_id: &str, audience: &str) -> Result<String, AuthError> {
    let unusable = |reason: String| {
        AuthError::ClientKey(format!(
            "cannot sign the client assertion with {}: {reason}",
            key.key_file.display()
        ))
    };
    let pem = std::fs::read(&key.key_file).map_err(|e| unusable(e.to_string()))?;
    let algorithm = algorithm(key.algorithm);
    let encoding = match key.algorithm {
        AssertionAlgorithm::ES256 | AssertionAlgorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        AssertionAlgorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| unusable(format!("not a {algorithm:?} private key in PEM ({e})")))?;
    let now = unix_now();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti: CsrfToken::new_random().secret().clone(),
        iat: now,
        exp: now + ASSERTION_LIFETIME_SECS,
    };
    let mut header = Header::new(algorithm);
    header.kid = key.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &encoding).map_err(|e| unusable(e.to_string()))
}

fn algorithm(algorithm: AssertionAlgorithm) -> Algorithm {
    match algorithm {
        AssertionAlgorithm::RS256 => Algorithm::RS256,
        AssertionAlgorithm::RS384 => Algorithm::RS384,
        AssertionAlgorithm::RS512 => Algorithm::RS512,
        AssertionAlgorithm::PS256 => Algorithm::PS256,
        AssertionAlgorithm::PS384 => Algorithm::PS384,
        AssertionAlgorithm::PS512 => Algorithm::PS512,
        AssertionAlgorithm::ES256 => Algorithm::ES256,
        AssertionAlgorithm::ES384 => Algorithm::ES384,
        AssertionAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_both_parts_first() {
        let auth = ClientAuth::Basic(Secret::new("s3:cr/t"));
        let mut form = Vec::new();
        let header = auth
            .apply("my client", "https://i", "https://i/token", &mut form)
            .unwrap()
            .unwrap();
        let encoded = header.expose().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+client:s3%3Acr%2Ft");
        assert!(form.is_empty());
    }

    #[test]
    fn a_missing_key_file_is_an_error_that_names_it() {
        let key = ClientAssertion {
            key_file: "/nonexistent/key.pem".into(),
            algorithm: AssertionAlgorithm::RS256,
            key_id: None,
            audience: AssertionAudience::TokenEndpoint,
        };
        let error = ClientAuth::PrivateKeyJwt(key)
            .apply("c", "https://i", "https://i/token", &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/key.pem"), "{error}");
    }
}
