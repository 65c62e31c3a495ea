//! The OpenID Connect exchanges: discovery, the authorization URL, code and refresh grants,
//! ID-token validation. HTTP goes through our own reqwest client (one HTTP stack).

use std::sync::Arc;

use openidconnect::{
    AuthType, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse,
    core::{
        CoreClient, CoreClientAuthMethod, CoreErrorResponseType, CoreProviderMetadata,
        CoreResponseType, CoreTokenResponse,
    },
};
use url::Url;

use super::{
    AuthError,
    cache::{StoredTokens, unix_now},
};
use crate::{config::Profile, secret::Secret};

/// A discovered provider for one profile.
pub struct Provider {
    metadata: CoreProviderMetadata,
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

async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
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

/// An error and its sources on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// The `jwks_uri` of the issuer's discovery document, if that document can be read: after a
/// failed discovery, this tells a broken key set from a wrong issuer URL.
async fn keys_url(http: &reqwest::Client, issuer: &str) -> Option<String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let document: serde_json::Value = http
        .get(url)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()?;
    document["jwks_uri"].as_str().map(str::to_owned)
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
        let metadata = match CoreProviderMetadata::discover_async(issuer, &|r| {
            send(client.clone(), r)
        })
        .await
        {
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
            metadata,
            profile,
            http,
            auth_type,
        })
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
        Ok(CoreClient::from_provider_metadata(
            self.metadata.clone(),
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
            id_token
                .claims(&client.id_token_verifier(), &login.nonce)
                .map_err(|e| AuthError::IdToken(chain(&e)))?;
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
