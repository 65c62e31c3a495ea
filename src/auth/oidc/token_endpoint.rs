//! The token endpoint, for every grant the proxy uses — authorization code, refresh, client
//! credentials (and the device code, see `device`) — and revocation (RFC 7009). Token
//! requests are plain form POSTs, so that one function adds the client's credentials
//! ([`ClientAuth`](crate::auth::client_auth::ClientAuth)) and the resource indicator to each.
//!
//! What a provider answers is bounded before it is kept: an `expires_in` beyond a year is
//! taken as a year, and its OAuth errors reach the terminal and the logs without escapes and
//! never with the body of the response (it may echo secrets).

use serde::Deserialize;

use super::{LoginRequest, Provider};
use crate::{
    auth::{
        AuthError,
        cache::{AccessToken, unix_now},
        provider_http::send,
    },
    error_text::{chain, untrusted},
    secret::Secret,
};

/// The longest lifetime a token response may claim: a provider's `expires_in` beyond it is
/// taken as this (a number near `u64::MAX` would wrap the expiry into the past, and the token
/// would be renewed at every request).
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// RFC 8693's grant type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523's grant type.
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The token type of an ID token (RFC 8693 §3).
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The token type of an identity assertion authorization grant (SEP-990).
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// What a token endpoint granted.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The access token, its expiry and scopes.
    pub access: AccessToken,
    /// A new refresh token, if the provider issued (or rotated) one.
    pub refresh_token: Option<Secret>,
    /// The ID token that came with it, if any (checked when it came with a sign-in).
    pub id_token: Option<Secret>,
}

/// Why a request to the token endpoint did not produce tokens.
#[derive(Debug, Clone)]
pub enum TokenError {
    /// The provider answered with an OAuth error (RFC 6749 §5.2).
    OAuth {
        /// `invalid_grant`, `authorization_pending`, ...
        error: String,
        /// The provider's explanation.
        description: Option<String>,
    },
    /// No usable answer: the provider was unreachable, or answered something that is not an
    /// OAuth response (an HTML error page, say).
    Failed(String),
}

impl TokenError {
    /// The OAuth error code, if the provider gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::OAuth { error, .. } => Some(error),
            Self::Failed(_) => None,
        }
    }

    /// Whether the provider is down or overloaded for now, so that trying again soon may help.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::OAuth { error, .. } => {
                error == "server_error" || error == "temporarily_unavailable"
            }
            Self::Failed(_) => true,
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OAuth {
                error,
                description: Some(description),
            } => write!(f, "{error}: {description}"),
            Self::OAuth { error, .. } => f.write_str(error),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Why a refresh did not produce tokens.
pub enum RefreshError {
    /// The provider refused the refresh token (expired, revoked, reused) or the resource it
    /// was asked for: log in again.
    Rejected(String),
    /// The provider is down or overloaded for now (unreachable, HTTP 5xx, `server_error`,
    /// `temporarily_unavailable`): try again shortly, and keep the tokens.
    Unavailable(AuthError),
    /// The request could not even be made: logging in would not help.
    Failed(AuthError),
}

/// A token endpoint's successful answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// A token endpoint's error answer (RFC 6749 §5.2).
#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Why a response of the provider is not what was asked for: its status and, for a JSON
/// body, the OAuth error in it; never the body itself (it may echo secrets).
pub(super) fn oauth_error(response: &openidconnect::HttpResponse) -> TokenError {
    match serde_json::from_slice::<ErrorResponse>(response.body()) {
        // The provider's words reach a terminal and the logs: no escapes, bounded.
        Ok(e) => TokenError::OAuth {
            error: untrusted(&e.error),
            description: e.error_description.as_deref().map(untrusted),
        },
        Err(_) => TokenError::Failed(format!(
            "unreadable token response: HTTP {} without an OAuth error",
            response.status()
        )),
    }
}

impl Provider {
    /// Its revocation endpoint (RFC 7009), if it has one.
    pub fn revocation_endpoint(&self) -> Option<String> {
        let metadata = self.metadata.read().ok()?;
        metadata.additional_metadata().revocation_endpoint.clone()
    }

    fn token_endpoint(&self) -> Result<String, AuthError> {
        self.metadata
            .read()
            .ok()
            .and_then(|m| m.token_endpoint().map(|u| u.url().to_string()))
            .ok_or_else(|| {
                AuthError::TokenEndpoint(format!(
                    "{} publishes no token endpoint in its discovery document",
                    self.issuer
                ))
            })
    }

    /// POSTs `form` to `endpoint` with the client's credentials.
    pub(super) async fn post(
        &self,
        endpoint: &str,
        mut form: Vec<(String, String)>,
    ) -> Result<openidconnect::HttpResponse, TokenError> {
        let client = self
            .current_client()
            .map_err(|e| TokenError::Failed(e.to_string()))?;
        let authorization = client
            .auth
            .apply(&client.id, &self.issuer, endpoint, &mut form)
            .map_err(|e| TokenError::Failed(e.to_string()))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let mut request = http::Request::post(endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.expose());
        }
        let request = request
            .body(body.into_bytes())
            .map_err(|e| TokenError::Failed(e.to_string()))?;
        send(self.http.clone(), request)
            .await
            .map_err(|e| TokenError::Failed(format!("request failed: {}", chain(&e))))
    }

    /// One request to the token endpoint: `grant` and its parameters, the resource indicator
    /// when there is one, and the client's credentials.
    pub(super) async fn token_request(
        &self,
        grant: &str,
        mut form: Vec<(String, String)>,
        resource: Option<&str>,
    ) -> Result<(Granted, Option<String>), TokenError> {
        let endpoint = self
            .token_endpoint()
            .map_err(|e| TokenError::Failed(e.to_string()))?;
        form.insert(0, ("grant_type".into(), grant.into()));
        if let Some(resource) = resource {
            form.push(("resource".into(), resource.into()));
        }
        let response = self.post(&endpoint, form).await?;
        if !response.status().is_success() {
            let error = oauth_error(&response);
            if error.code() == Some("invalid_client")
                && let Some(client) = self.known_client()
            {
                self.client_refused(&client);
            }
            return Err(error);
        }
        let token: TokenResponse = serde_json::from_slice(response.body())
            .map_err(|e| TokenError::Failed(format!("unreadable token response: {e}")))?;
        let granted = Granted {
            access: AccessToken {
                token: token.access_token,
                expires_at: token
                    .expires_in
                    .map(|secs| unix_now().saturating_add(secs.min(MAX_TOKEN_LIFETIME_SECS))),
                scope: token.scope,
            },
            refresh_token: token.refresh_token,
            id_token: token.id_token.clone().map(Secret::new),
        };
        Ok((granted, token.id_token))
    }

    /// Trades the authorization code for tokens (bound to `resource`, if any) and validates
    /// the ID token, if any.
    pub async fn exchange(
        &self,
        code: Secret,
        login: LoginRequest,
        resource: Option<&str>,
    ) -> Result<Granted, AuthError> {
        let form = vec![
            ("code".into(), code.expose().to_owned()),
            ("redirect_uri".into(), self.profile.redirect_url.to_string()),
            ("code_verifier".into(), login.verifier.secret().clone()),
        ];
        let (granted, id_token) = self
            .token_request("authorization_code", form, resource)
            .await
            .map_err(|e| AuthError::TokenEndpoint(e.to_string()))?;
        // A plain OAuth login asked for no ID token; one that comes anyway is not used.
        if let (Some(id_token), Some(nonce)) = (id_token, &login.nonce) {
            self.validate(&id_token, Some(nonce)).await?;
        }
        Ok(granted)
    }

    /// Uses a refresh token, for an access token bound to `resource` if given, with `scope`
    /// if given (narrower than the grant's, RFC 6749 §6); the provider may rotate the refresh
    /// token (the new one is in the result).
    pub async fn refresh(
        &self,
        refresh_token: &Secret,
        resource: Option<&str>,
        scope: Option<&[String]>,
    ) -> Result<Granted, RefreshError> {
        let mut form = vec![("refresh_token".into(), refresh_token.expose().to_owned())];
        if let Some(scope) = scope {
            form.push(("scope".into(), scope.join(" ")));
        }
        match self.token_request("refresh_token", form, resource).await {
            Ok((granted, _)) => Ok(granted),
            Err(e) if e.is_temporary() => Err(RefreshError::Unavailable(AuthError::TokenEndpoint(
                e.to_string(),
            ))),
            Err(e) => Err(RefreshError::Rejected(e.to_string())),
        }
    }

    /// The client-credentials grant (RFC 6749 §4.4): a token for the client itself, with
    /// `scopes`, bound to `resource` if given.
    pub async fn client_credentials(
        &self,
        scopes: &[String],
        resource: Option<&str>,
    ) -> Result<Granted, AuthError> {
        let mut form = Vec::new();
        if !scopes.is_empty() {
            form.push(("scope".into(), scopes.join(" ")));
        }
        form.extend(self.profile.authorize_params.iter().cloned());
        self.token_request("client_credentials", form, resource)
            .await
            .map(|(granted, _)| granted)
            .map_err(|e| AuthError::TokenEndpoint(e.to_string()))
    }

    /// Cross-app access, at the company identity provider (SEP-990, RFC 8693): the person's
    /// `id_token` (which this provider issued) exchanged for an identity assertion grant (an
    /// ID-JAG) for the authorization server `audience` and its `resource`.
    pub async fn identity_assertion(
        &self,
        id_token: &Secret,
        audience: &str,
        resource: Option<&str>,
        scopes: &[String],
    ) -> Result<Secret, AuthError> {
        let mut form = vec![
            ("requested_token_type".into(), ID_JAG.into()),
            ("subject_token".into(), id_token.expose().to_owned()),
            ("subject_token_type".into(), ID_TOKEN_TYPE.into()),
            ("audience".into(), audience.to_owned()),
        ];
        if !scopes.is_empty() {
            form.push(("scope".into(), scopes.join(" ")));
        }
        self.token_request(TOKEN_EXCHANGE, form, resource)
            .await
            .map(|(granted, _)| granted.access.token)
            .map_err(|e| AuthError::IdentityAssertion {
                issuer: self.issuer.clone(),
                reason: e.to_string(),
            })
    }

    /// Cross-app access, at this profile's server (SEP-990, RFC 7523): the identity assertion
    /// grant traded for an access token, with `scopes` if any, bound to `resource` if given.
    pub async fn jwt_bearer(
        &self,
        assertion: &Secret,
        scopes: &[String],
        resource: Option<&str>,
    ) -> Result<Granted, AuthError> {
        let mut form = vec![("assertion".into(), assertion.expose().to_owned())];
        if !scopes.is_empty() {
            form.push(("scope".into(), scopes.join(" ")));
        }
        self.token_request(JWT_BEARER_GRANT, form, resource)
            .await
            .map(|(granted, _)| granted)
            .map_err(|e| AuthError::TokenEndpoint(e.to_string()))
    }

    /// Revokes a refresh token (RFC 7009), which ends the whole grant at most providers;
    /// `Ok(false)` when the provider has no revocation endpoint.
    pub async fn revoke(&self, refresh_token: &Secret) -> Result<bool, AuthError> {
        let Some(endpoint) = self.revocation_endpoint() else {
            return Ok(false);
        };
        let form = vec![
            ("token".into(), refresh_token.expose().to_owned()),
            ("token_type_hint".into(), "refresh_token".into()),
        ];
        let response = self
            .post(&endpoint, form)
            .await
            .map_err(|e| AuthError::Revocation(e.to_string()))?;
        // RFC 7009 §2.2: 200 whether or not the token was valid; the body means nothing.
        if response.status().is_success() {
            Ok(true)
        } else {
            Err(AuthError::Revocation(oauth_error(&response).to_string()))
        }
    }
}
