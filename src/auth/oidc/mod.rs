//! The exchanges with the identity provider: discovery (OpenID Connect, or RFC 8414's OAuth
//! metadata), the authorization URL, the token endpoint for every grant the proxy uses
//! (authorization code, refresh, device code, client credentials), device authorization (RFC
//! 8628), revocation (RFC 7009) and ID-token validation. HTTP goes through our own reqwest
//! client (one HTTP stack, see [`crate::clients::identity_provider`]); token requests are
//! plain form POSTs, so that one function adds the client's credentials
//! ([`super::client_auth::ClientAuth`]) and the resource indicator to each.
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

use std::{str::FromStr, time::Duration};

use openidconnect::{
    AdditionalProviderMetadata, AuthenticationFlow, ClaimsVerificationError, ClientId, CsrfToken,
    IssuerUrl, JsonWebKeySet, Nonce, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata,
    RedirectUrl, Scope, SignatureVerificationError,
    core::{
        CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
        CoreGrantType, CoreIdToken, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
        CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
        CoreSubjectIdentifierType,
    },
};
use serde::{Deserialize, Serialize};
use url::Url;

pub use super::provider_http::ProviderRequestError;
use super::{
    AuthError,
    cache::{AccessToken, unix_now},
    client_auth::ClientAuth,
    provider_http::send,
};
use crate::{
    config::{Profile, endpoint_problem},
    error_text::{chain, untrusted},
    secret::Secret,
};

/// The longest lifetime a token response may claim: a provider's `expires_in` beyond it is
/// taken as this (a number near `u64::MAX` would wrap the expiry into the past, and the token
/// would be renewed at every request).
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// The longest pause between device-code polls a provider may ask for (`interval`, and after
/// each `slow_down`): longer, and a code would expire between two polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

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

/// A discovered provider for one profile.
pub struct Provider {
    /// The issuer, as configured or as the backends named it.
    issuer: String,
    /// Replaced when the provider's keys are read again.
    metadata: RwLock<Metadata>,
    profile: Arc<Profile>,
    http: reqwest::Client,
    client_auth: ClientAuth,
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

/// What a token endpoint granted.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The access token, its expiry and scopes.
    pub access: AccessToken,
    /// A new refresh token, if the provider issued (or rotated) one.
    pub refresh_token: Option<Secret>,
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

/// A device authorization (RFC 8628 §3.2): what the person is told, and what the proxy polls
/// with.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// The code the token requests carry.
    pub device_code: Secret,
    /// The code the person enters.
    pub user_code: String,
    /// Where the person enters it.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// The same page with the code filled in, if the provider offers one.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls (RFC 8628: 5 when the provider says nothing).
    #[serde(default = "default_device_interval")]
    pub interval: u64,
}

fn default_device_interval() -> u64 {
    5
}

impl DeviceAuthorization {
    /// The authorization as it may be shown to a person: its URLs are `https://` (or `http://`
    /// on a loopback host) like every other endpoint of the provider — never `javascript:` or
    /// `file:` — and its code holds no terminal escapes; its numbers are clamped to what a
    /// sign-in can use.
    fn checked(mut self) -> Result<Self, String> {
        let safe = |name: &str, uri: &str| -> Result<String, String> {
            let problem = match Url::parse(uri) {
                // Shown as parsed: a URL's serialization holds no control characters.
                Ok(url) => match endpoint_problem(&url) {
                    None => return Ok(url.to_string()),
                    Some(problem) => problem,
                },
                Err(e) => format!("'{uri}' is not a URL ({e})"),
            };
            Err(format!(
                "its device authorization gives {name} {}; the sign-in is refused",
                untrusted(&problem)
            ))
        };
        self.verification_uri = safe("verification_uri", &self.verification_uri)?;
        if let Some(complete) = &self.verification_uri_complete {
            self.verification_uri_complete = Some(safe("verification_uri_complete", complete)?);
        }
        let code = untrusted(&self.user_code);
        if code.trim().is_empty() {
            return Err("its device authorization gives an empty user_code".to_owned());
        }
        self.user_code = code;
        self.interval = self.interval.clamp(1, MAX_POLL_INTERVAL.as_secs());
        Ok(self)
    }
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
fn oauth_error(response: &openidconnect::HttpResponse) -> TokenError {
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
    /// Reads `issuer`'s discovery document — OpenID Connect's, else RFC 8414's OAuth
    /// metadata — and the provider's JWKS.
    pub async fn discover(
        profile: Arc<Profile>,
        issuer: &str,
        http: reqwest::Client,
    ) -> Result<Self, AuthError> {
        let failed = |reason: String| AuthError::Discovery {
            issuer: issuer.to_owned(),
            reason,
        };
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| failed(e.to_string()))?;
        let client = http.clone();
        let metadata = match Metadata::discover_async(issuer_url.clone(), &|r| {
            send(client.clone(), r)
        })
        .await
        {
            Ok(metadata) => metadata,
            Err(e) => {
                let reason = chain(&e);
                match Self::oauth_metadata(&http, &issuer_url).await {
                    Ok(metadata) => metadata,
                    Err(oauth) => {
                        return Err(match keys_url(&http, issuer).await {
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
        let client_auth = ClientAuth::choose(
            &profile,
            metadata
                .token_endpoint_auth_methods_supported()
                .map(Vec::as_slice),
        );
        tracing::debug!(
            "Discovered {issuer} (client authentication: {})",
            client_auth.method()
        );
        Ok(Self {
            issuer: issuer.to_owned(),
            metadata: RwLock::new(metadata),
            profile,
            http,
            client_auth,
        })
    }

    /// RFC 8414 metadata at `issuer`, with its keys, for a provider without OpenID Connect
    /// discovery; `None` when there is none either.
    /// A plain OAuth server may publish no key set (it issues no ID tokens): an empty one
    /// stands in, and an ID token it did send would fail validation.
    async fn oauth_metadata(
        http: &reqwest::Client,
        issuer: &IssuerUrl,
    ) -> Result<Metadata, String> {
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

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether the provider promises `iss` in every authorization response (RFC 9207).
    pub fn sends_iss(&self) -> bool {
        self.metadata.read().is_ok_and(|m| {
            m.additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true)
        })
    }

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
        let fresh =
            Self::discover(Arc::clone(&self.profile), &self.issuer, self.http.clone()).await?;
        if let (Ok(mut metadata), Ok(fresh)) = (self.metadata.write(), fresh.metadata.into_inner())
        {
            *metadata = fresh;
        }
        Ok(())
    }

    /// Validates an ID token (signature, issuer, audience, and the nonce when the login sent
    /// one: the device grant has none), reading the provider's keys again when it was signed
    /// by a key the cached set lacks.
    async fn validate(&self, id_token: &str, nonce: Option<&Nonce>) -> Result<(), AuthError> {
        let id_token = CoreIdToken::from_str(id_token)
            .map_err(|e| AuthError::IdToken(format!("not a JWT ({e})")))?;
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
                    self.issuer,
                    if rediscover {
                        "discovery document"
                    } else {
                        "keys"
                    }
                );
                self.reload_keys(rediscover).await?;
            }
            let client = self.client()?;
            let verifier = client.id_token_verifier();
            let checked = match nonce {
                Some(nonce) => id_token.claims(&verifier, nonce).map(|_| ()),
                None => id_token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            };
            match checked {
                Ok(()) => return Ok(()),
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
        // No secret here: token requests go through `token_request`, which authenticates the
        // client itself; this client only builds authorization URLs and validates ID tokens.
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.profile.client_id.clone()),
            None,
        )
        .set_redirect_uri(redirect))
    }

    /// A fresh authorization URL with PKCE S256, `state` and `nonce`, asking for `scopes` and
    /// the `resources` (RFC 8707) the login is to cover, with the profile's extra parameters.
    pub fn begin_login(
        &self,
        scopes: &[String],
        resources: &[String],
    ) -> Result<LoginRequest, AuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client()?;
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for resource in resources {
            request = request.add_extra_param("resource", resource.clone());
        }
        for (name, value) in &self.profile.authorize_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(LoginRequest {
            url,
            state,
            nonce,
            verifier,
        })
    }

    /// POSTs `form` to `endpoint` with the client's credentials.
    async fn post(
        &self,
        endpoint: &str,
        mut form: Vec<(String, String)>,
    ) -> Result<openidconnect::HttpResponse, TokenError> {
        let authorization = self
            .client_auth
            .apply(&self.profile.client_id, &self.issuer, endpoint, &mut form)
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
    async fn token_request(
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
            return Err(oauth_error(&response));
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
        if let Some(id_token) = id_token {
            self.validate(&id_token, Some(&login.nonce)).await?;
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

    /// Starts a device authorization (RFC 8628 §3.1) for `scopes` and `resources`.
    pub async fn start_device(
        &self,
        scopes: &[String],
        resources: &[String],
    ) -> Result<DeviceAuthorization, AuthError> {
        let endpoint = self
            .metadata
            .read()
            .ok()
            .and_then(|m| {
                m.additional_metadata()
                    .device_authorization_endpoint
                    .clone()
            })
            .ok_or_else(|| AuthError::FlowUnsupported {
                issuer: self.issuer.clone(),
                flow: "device",
                missing: "device_authorization_endpoint",
            })?;
        let mut form = vec![("scope".into(), scopes.join(" "))];
        form.extend(resources.iter().map(|r| ("resource".into(), r.clone())));
        form.extend(self.profile.authorize_params.iter().cloned());
        let response = self
            .post(&endpoint, form)
            .await
            .map_err(|e| AuthError::TokenEndpoint(format!("device authorization failed: {e}")))?;
        if !response.status().is_success() {
            return Err(AuthError::TokenEndpoint(format!(
                "device authorization failed: {}",
                oauth_error(&response)
            )));
        }
        let device: DeviceAuthorization = serde_json::from_slice(response.body()).map_err(|e| {
            AuthError::TokenEndpoint(format!("unreadable device authorization response: {e}"))
        })?;
        device
            .checked()
            .map_err(|reason| AuthError::UnsafeProvider {
                issuer: self.issuer.clone(),
                reason,
            })
    }

    /// Polls the token endpoint once for a device code (RFC 8628 §3.4); the ID token, if any,
    /// is validated (it carries no nonce).
    pub async fn poll_device(
        &self,
        device: &DeviceAuthorization,
        resource: Option<&str>,
    ) -> Result<Granted, TokenError> {
        let form = vec![("device_code".into(), device.device_code.expose().to_owned())];
        let (granted, id_token) = self
            .token_request(
                "urn:ietf:params:oauth:grant-type:device_code",
                form,
                resource,
            )
            .await?;
        if let Some(id_token) = id_token {
            self.validate(&id_token, None)
                .await
                .map_err(|e| TokenError::Failed(e.to_string()))?;
        }
        Ok(granted)
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

/// How long to wait before polling a device code again: the provider's interval, grown by 5 s
/// at each `slow_down` (RFC 8628 §3.5).
pub fn next_poll_interval(current: Duration, error: &TokenError) -> Duration {
    match error.code() {
        Some("slow_down") => current
            .saturating_add(Duration::from_secs(5))
            .min(MAX_POLL_INTERVAL),
        _ => current,
    }
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
