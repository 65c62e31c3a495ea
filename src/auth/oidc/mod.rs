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
use super::{AuthError, client_auth::ClientAuth};
use crate::config::Profile;

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

impl Provider {
    /// Reads `issuer`'s discovery document — OpenID Connect's, else RFC 8414's OAuth
    /// metadata — and the provider's JWKS.
    pub async fn discover(
        profile: Arc<Profile>,
        issuer: &str,
        http: reqwest::Client,
    ) -> Result<Self, AuthError> {
        let metadata = metadata::discover(&http, issuer).await?;
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
}
