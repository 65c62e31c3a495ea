//! The exchanges with the identity provider: discovery (OpenID Connect, or RFC 8414's OAuth
//! metadata), the authorization URL, the token endpoint for every grant the proxy uses
//! (authorization code, refresh, device code, client credentials), device authorization (RFC
//! 8628), revocation (RFC 7009) and ID-token validation. HTTP goes through our own reqwest
//! client (one HTTP stack, see [`crate::clients::identity_provider`]); every request goes to
//! `https://` (or `http://` on a loopback host), follows no redirect, and reads at most 1 MiB
//! (`provider_http`).
//!
//! A [`Provider`] is one profile's discovered identity provider; this module holds it — its
//! construction and the authorization URL of a login ([`Provider::begin_login`]) — and the
//! modules that add its other exchanges, each in `impl Provider` blocks of its own:
//! - `metadata`: the provider's discovery document (OpenID Connect, else RFC 8414), the key set
//!   it names, and the checks on the endpoints it advertises;
//! - `id_token`: ID-token validation, and reading the provider's keys again when a token is
//!   signed by one the cached set lacks;
//! - `token_endpoint`: one form POST with the client's credentials for every grant
//!   (authorization code, refresh, client credentials), what it [`Granted`] or why not
//!   ([`TokenError`], [`RefreshError`]), and revocation;
//! - `device`: the device authorization grant (RFC 8628), its [`DeviceAuthorization`] and its
//!   polls.
//!
//! A provider is trusted with the user's login, so what it says is checked before it is used:
//! its endpoints when it is discovered (`metadata`), the codes and URLs of a device
//! authorization before a person sees them (`device`), its words before they reach a terminal
//! (`token_endpoint`).

mod device;
mod id_token;
mod metadata;
mod token_endpoint;

use std::sync::{Arc, RwLock};

use openidconnect::{
    AuthenticationFlow, ClientId, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
    core::{CoreClient, CoreResponseType},
};
use url::Url;

pub use device::{DeviceAuthorization, MAX_POLL_INTERVAL, next_poll_interval};
pub use metadata::ExtraMetadata;
use metadata::Metadata;
pub use token_endpoint::{Granted, RefreshError, TokenError};

pub use super::provider_http::ProviderRequestError;
use super::{
    AuthError,
    registration::{self, Client, Kind, Offer, Registrations},
};
use crate::config::Profile;

/// A discovered provider for one profile.
pub struct Provider {
    /// The issuer, as configured or as the backends named it.
    issuer: String,
    /// Replaced when the provider's keys are read again.
    metadata: RwLock<Metadata>,
    profile: Arc<Profile>,
    http: reqwest::Client,
    /// Who the proxy is there: chosen at the first need (see [`registration`]).
    client: RwLock<Option<Arc<Client>>>,
    /// One registration at a time.
    registering: tokio::sync::Mutex<()>,
    registrations: Registrations,
}

/// Whether `issuer` is a bare origin (no path).
fn is_origin(issuer: &str) -> bool {
    Url::parse(issuer).is_ok_and(|u| u.path().trim_matches('/').is_empty())
}

/// One login attempt's secrets, kept until the code comes back.
pub struct LoginRequest {
    /// Where to send the browser.
    pub url: Url,
    /// The `state` the callback must echo.
    pub state: CsrfToken,
    /// The `nonce` of an OpenID Connect login, which its ID token must carry.
    nonce: Option<Nonce>,
    verifier: PkceCodeVerifier,
}

impl Provider {
    /// Reads `issuer`'s discovery document — OpenID Connect's, else RFC 8414's OAuth
    /// metadata; a client the proxy registers there is kept in `registrations`.
    pub async fn discover(
        profile: Arc<Profile>,
        issuer: &str,
        http: reqwest::Client,
        registrations: Registrations,
    ) -> Result<Self, AuthError> {
        // MCP 2025-03-26: a server that runs OAuth itself and publishes no metadata is its own
        // authorization server, with its endpoints at conventional paths of its origin.
        let conventional = profile.own_oauth && is_origin(issuer);
        let metadata = metadata::discover(&http, issuer, conventional).await?;
        tracing::debug!("Discovered {issuer}");
        Ok(Self {
            issuer: issuer.to_owned(),
            metadata: RwLock::new(metadata),
            profile,
            http,
            client: RwLock::new(None),
            registering: tokio::sync::Mutex::new(()),
            registrations,
        })
    }

    /// What the server offers a client it does not know.
    fn offer(&self) -> Offer {
        let metadata = self.metadata.read().ok();
        Offer {
            issuer: self.issuer.clone(),
            registration_endpoint: metadata
                .as_ref()
                .and_then(|m| m.registration_endpoint().map(|u| u.url().to_string())),
            metadata_documents: metadata.as_ref().is_some_and(|m| {
                m.additional_metadata()
                    .client_id_metadata_document_supported
                    == Some(true)
            }),
        }
    }

    /// The client the proxy is at this server, without registering one: `None` when it has
    /// none yet (see [`Provider::client_for_sign_in`]).
    pub fn known_client(&self) -> Option<Arc<Client>> {
        if let Some(client) = self.client.read().ok()?.clone() {
            return Some(client);
        }
        let supported = self
            .metadata
            .read()
            .ok()?
            .token_endpoint_auth_methods_supported()
            .cloned();
        let client = Arc::new(registration::known(
            &self.profile,
            &self.offer(),
            &self.registrations,
            supported.as_deref(),
        )?);
        tracing::debug!(
            "Client at {}: {} (client authentication: {})",
            self.issuer,
            client.kind.describe(),
            client.auth.method()
        );
        if let Ok(mut slot) = self.client.write() {
            *slot = Some(Arc::clone(&client));
        }
        Some(client)
    }

    /// The client a sign-in uses: the one the proxy is, else one it registers now.
    pub async fn client_for_sign_in(&self) -> Result<Arc<Client>, AuthError> {
        let _one_at_a_time = self.registering.lock().await;
        if let Some(client) = self.known_client() {
            return Ok(client);
        }
        let client = Arc::new(
            registration::register(
                &self.http,
                &self.profile,
                &self.offer(),
                &self.registrations,
            )
            .await?,
        );
        if let Ok(mut slot) = self.client.write() {
            *slot = Some(Arc::clone(&client));
        }
        Ok(client)
    }

    /// The client of a request that needs one already (a refresh, revocation, the code of a
    /// sign-in).
    fn current_client(&self) -> Result<Arc<Client>, AuthError> {
        self.known_client().ok_or_else(|| AuthError::Registration {
            profile: self.profile.name.clone(),
            issuer: self.issuer.clone(),
            reason: "no client is registered there yet; a sign-in registers one".into(),
        })
    }

    /// The server answered `invalid_client`: a client the proxy registered is forgotten, so
    /// that the next sign-in registers a new one.
    fn client_refused(&self, client: &Client) {
        if client.kind != Kind::Registered {
            return;
        }
        tracing::warn!(
            "{} no longer knows the client the proxy registered there: the next sign-in \
             registers a new one",
            self.issuer
        );
        self.registrations
            .forget(&self.issuer, self.profile.redirect_url.as_str());
        if let Ok(mut slot) = self.client.write()
            && slot.as_ref().is_some_and(|c| c.id == client.id)
        {
            *slot = None;
        }
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

    /// The provider as [`openidconnect`]'s client, for authorization URLs and ID-token
    /// verification.
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
            ClientId::new(self.current_client()?.id.clone()),
            None,
        )
        .set_redirect_uri(redirect))
    }

    /// A fresh authorization URL with PKCE S256 and `state`, asking for `scopes` and the
    /// `resources` (RFC 8707) the login is to cover, with the profile's extra parameters. An
    /// OpenID Connect login (`openid` among the scopes) carries a `nonce` for its ID token;
    /// a plain OAuth one (a server that says its own scopes) asks for exactly `scopes`, none
    /// when they are empty.
    pub fn begin_login(
        &self,
        scopes: &[String],
        resources: &[String],
    ) -> Result<LoginRequest, AuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        if !scopes.iter().any(|s| s == "openid") {
            return self.begin_oauth_login(scopes, resources, challenge, verifier);
        }
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
            nonce: Some(nonce),
            verifier,
        })
    }

    /// The authorization URL of a plain OAuth login: no `openid` added, no `nonce`.
    fn begin_oauth_login(
        &self,
        scopes: &[String],
        resources: &[String],
        challenge: PkceCodeChallenge,
        verifier: PkceCodeVerifier,
    ) -> Result<LoginRequest, AuthError> {
        let client = self.current_client()?;
        let mut url = self
            .metadata
            .read()
            .map_err(|_| AuthError::Callback("provider state poisoned".into()))?
            .authorization_endpoint()
            .url()
            .clone();
        let state = CsrfToken::new_random();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.id)
                .append_pair("state", state.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", challenge.method().as_str())
                .append_pair("redirect_uri", self.profile.redirect_url.as_str());
            if !scopes.is_empty() {
                query.append_pair("scope", &scopes.join(" "));
            }
            for resource in resources {
                query.append_pair("resource", resource);
            }
            for (name, value) in &self.profile.authorize_params {
                query.append_pair(name, value);
            }
        }
        Ok(LoginRequest {
            url,
            state,
            nonce: None,
            verifier,
        })
    }
}
