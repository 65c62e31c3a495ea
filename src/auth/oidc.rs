//! The OpenID Connect exchanges: discovery, the authorization URL, code and refresh grants,
//! ID-token validation. HTTP goes through our own reqwest client (one HTTP stack, see
//! [`crate::clients::identity_provider`]).
//!
//! A provider is trusted with the user's login, so what it says is checked before it is used:
//! - every request goes to `https://` (or `http://` on a loopback host), follows no redirect,
//!   and reads at most 1 MiB;
//! - after discovery, every endpoint the proxy uses must be such a URL too, so a hostile or
//!   compromised discovery document (a `file:` authorization endpoint, a plain-`http` token
//!   endpoint elsewhere) is refused before any browser opens;
//! - an ID token signed by a key the cached key set lacks makes the proxy read the keys once
//!   more (and discovery, if that does not help), so a provider that rotates its keys does not
//!   break every later login until a restart.

use std::sync::{Arc, RwLock};

use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthenticationFlow, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, JsonWebKeySet, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
    core::{
        CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
        CoreErrorResponseType, CoreGrantType, CoreIdToken, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
        CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
    },
};
use serde::{Deserialize, Serialize};
use url::Url;

pub use super::provider_http::ProviderRequestError;
use super::{
    AuthError,
    cache::{StoredTokens, unix_now},
    provider_http::send,
};
use crate::{
    config::{Profile, endpoint_problem},
    error_text::chain,
    secret::Secret,
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
type Metadata = ProviderMetadata<
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

/// A discovered provider for one profile.
pub struct Provider {
    /// Replaced when the provider's keys are read again.
    metadata: RwLock<Metadata>,
    profile: Arc<Profile>,
    http: reqwest::Client,
    auth_type: AuthType,
}

/// One login attempt's secrets, kept until the code comes back.
pub struct LoginRequest {
    /// Where to send the browser.
    pub url: Url,
    /// The `state` the callback must echo.
    pub state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

/// Why a refresh did not produce tokens.
pub enum RefreshError {
    /// The provider refused the refresh token (expired, revoked, reused): log in again.
    Rejected(String),
    /// The provider is down or overloaded for now (unreachable, HTTP 5xx, `server_error`,
    /// `temporarily_unavailable`): try again shortly, and keep the tokens.
    Unavailable(AuthError),
    /// The request could not even be made: logging in would not help.
    Failed(AuthError),
}

fn describe<RE: std::error::Error + 'static>(
    error: &RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match error {
        RequestTokenError::ServerResponse(r) => match r.error_description() {
            Some(d) => format!("{}: {d}", r.error()),
            None => r.error().to_string(),
        },
        RequestTokenError::Request(e) => format!("request failed: {}", chain(e)),
        RequestTokenError::Parse(e, _) => format!("unreadable token response: {e}"),
        RequestTokenError::Other(e) => e.clone(),
    }
}

/// The `jwks_uri` of the issuer's discovery document, if that document can be read: after a
/// failed discovery, this tells a broken key set from a wrong issuer URL.
async fn keys_url(http: &reqwest::Client, issuer: &str) -> Option<String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let request = http::Request::get(url).body(Vec::new()).ok()?;
    let response = send(http.clone(), request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let document: serde_json::Value = serde_json::from_slice(response.body()).ok()?;
    document["jwks_uri"].as_str().map(str::to_owned)
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

impl Provider {
    /// Reads `{issuer}/.well-known/openid-configuration` and the provider's JWKS.
    pub async fn discover(profile: Arc<Profile>, http: reqwest::Client) -> Result<Self, AuthError> {
        let failed = |reason: String| AuthError::Discovery {
            issuer: profile.issuer_url.clone(),
            reason,
        };
        let issuer =
            IssuerUrl::new(profile.issuer_url.clone()).map_err(|e| failed(e.to_string()))?;
        let client = http.clone();
        let metadata = match Metadata::discover_async(issuer, &|r| send(client.clone(), r)).await {
            Ok(metadata) => metadata,
            Err(e) => {
                let reason = chain(&e);
                return Err(match keys_url(&http, &profile.issuer_url).await {
                    // The discovery document is fine: it is the key set that fails.
                    Some(jwks_uri) => AuthError::Keys {
                        issuer: profile.issuer_url.clone(),
                        jwks_uri,
                        reason,
                    },
                    None => failed(reason),
                });
            }
        };
        check_endpoints(&metadata).map_err(|reason| AuthError::UnsafeProvider {
            issuer: profile.issuer_url.clone(),
            reason,
        })?;
        let methods = metadata.token_endpoint_auth_methods_supported();
        let supports = |m: &CoreClientAuthMethod| methods.is_none_or(|list| list.contains(m));
        // client_secret_basic is the spec's default; fall back to _post where only that exists.
        let auth_type = if supports(&CoreClientAuthMethod::ClientSecretBasic) {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        };
        tracing::debug!(
            "Discovered {} (token endpoint auth: {:?})",
            profile.issuer_url,
            auth_type
        );
        Ok(Self {
            metadata: RwLock::new(metadata),
            profile,
            http,
            auth_type,
        })
    }

    /// Whether the provider promises `iss` in every authorization response (RFC 9207).
    pub fn sends_iss(&self) -> bool {
        self.metadata.read().is_ok_and(|m| {
            m.additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true)
        })
    }

    /// Reads the provider's keys again: its key set, or, if that fails, its whole discovery
    /// document (which may name a new key set).
    async fn reload_keys(&self, rediscover: bool) -> Result<(), AuthError> {
        let http = self.http.clone();
        let jwks_uri = match self.metadata.read() {
            Ok(metadata) => metadata.jwks_uri().clone(),
            Err(_) => return Ok(()),
        };
        if !rediscover
            && let Ok(keys) =
                JsonWebKeySet::fetch_async(&jwks_uri, &|r| send(http.clone(), r)).await
        {
            if let Ok(mut metadata) = self.metadata.write() {
                *metadata = metadata.clone().set_jwks(keys);
            }
            return Ok(());
        }
        let fresh = Self::discover(Arc::clone(&self.profile), self.http.clone()).await?;
        if let (Ok(mut metadata), Ok(fresh)) = (self.metadata.write(), fresh.metadata.into_inner())
        {
            *metadata = fresh;
        }
        Ok(())
    }

    /// Validates an ID token (signature, issuer, audience, nonce), reading the provider's keys
    /// again when it was signed by a key the cached set lacks.
    async fn validate(&self, id_token: &CoreIdToken, nonce: &Nonce) -> Result<(), AuthError> {
        let unknown_key = |e: &ClaimsVerificationError| {
            matches!(
                e,
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey
                )
            )
        };
        for rediscover in [None, Some(false), Some(true)] {
            if let Some(rediscover) = rediscover {
                tracing::info!(
                    "The ID token of {} is signed by a key it has not published before; \
                     reading its {} again",
                    self.profile.issuer_url,
                    if rediscover {
                        "discovery document"
                    } else {
                        "keys"
                    }
                );
                self.reload_keys(rediscover).await?;
            }
            let client = self.client()?;
            match id_token.claims(&client.id_token_verifier(), nonce) {
                Ok(_) => return Ok(()),
                Err(e) if unknown_key(&e) && rediscover != Some(true) => continue,
                Err(e) => return Err(AuthError::IdToken(chain(&e))),
            }
        }
        Err(AuthError::IdToken("no key of the provider matches".into()))
    }

    fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        AuthError,
    > {
        let redirect = RedirectUrl::new(self.profile.redirect_url.to_string())
            .map_err(|e| AuthError::Callback(e.to_string()))?;
        let metadata = self
            .metadata
            .read()
            .map_err(|_| AuthError::Callback("provider state poisoned".into()))?
            .clone();
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.profile.client_id.clone()),
            self.profile
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(self.auth_type.clone()))
    }

    /// A fresh authorization URL with PKCE S256, `state` and `nonce`.
    pub fn begin_login(&self) -> Result<LoginRequest, AuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client()?;
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.profile.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(LoginRequest {
            url,
            state,
            nonce,
            verifier,
        })
    }

    fn stored(&self, response: &CoreTokenResponse) -> StoredTokens {
        StoredTokens {
            issuer: self.profile.issuer_url.clone(),
            client_id: self.profile.client_id.clone(),
            access_token: Secret::new(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
            expires_at: response.expires_in().map(|d| unix_now() + d.as_secs()),
            scope: response
                .scopes()
                .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        }
    }

    /// Trades the authorization code for tokens and validates the ID token, if any.
    pub async fn exchange(
        &self,
        code: Secret,
        login: LoginRequest,
    ) -> Result<StoredTokens, AuthError> {
        let client = self.client()?;
        let http = self.http.clone();
        let response = client
            .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
            .map_err(|e| AuthError::TokenEndpoint(e.to_string()))?
            .set_pkce_verifier(login.verifier)
            .request_async(&|r| send(http.clone(), r))
            .await
            .map_err(|e| AuthError::TokenEndpoint(describe(&e)))?;
        if let Some(id_token) = response.id_token() {
            self.validate(id_token, &login.nonce).await?;
        }
        Ok(self.stored(&response))
    }

    /// Uses a refresh token; the provider may rotate it (the new one is in the result).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<StoredTokens, RefreshError> {
        let client = self.client().map_err(RefreshError::Failed)?;
        let http = self.http.clone();
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let request = client
            .exchange_refresh_token(&token)
            .map_err(|e| RefreshError::Failed(AuthError::TokenEndpoint(e.to_string())))?;
        let e = match request.request_async(&|r| send(http.clone(), r)).await {
            Ok(response) => return Ok(self.stored(&response)),
            Err(e) => e,
        };
        let reason = describe(&e);
        match &e {
            RequestTokenError::ServerResponse(response)
                if matches!(
                    response.error(),
                    CoreErrorResponseType::Extension(code)
                        if code == "server_error" || code == "temporarily_unavailable"
                ) =>
            {
                Err(RefreshError::Unavailable(AuthError::TokenEndpoint(reason)))
            }
            RequestTokenError::ServerResponse(_) => Err(RefreshError::Rejected(reason)),
            // No answer, or one that is not an OAuth error (an HTML 502 page, say).
            _ => Err(RefreshError::Unavailable(AuthError::TokenEndpoint(reason))),
        }
    }
}
