//! Getting tokens from the provider — a refresh, or a new grant by the profile's flow — and
//! keeping what it granted.
//!
//! - A refresh asks for one resource's token with the scopes that resource needs, narrowed
//!   within the grant ([`scopes`](super::scopes)), and only for a resource the grant covers:
//!   providers refuse others, and some burn the refresh token doing so. A provider that is
//!   briefly down gets [`REFRESH_RETRIES`] more tries; a refused refresh calls for a new grant.
//! - A new grant is a sign-in ([`sign_in`](super::sign_in): in the browser or with a device
//!   code, side by side with other profiles' except where two browser callbacks would share a
//!   port; see [`managers`](mod@super::managers)) asking for every resource of the profile's
//!   backends, or — for a service account — the client-credentials grant. A manager that may
//!   not ask a person (`status`) stops with [`SignInNeeded`](super::AuthError::SignInNeeded).
//! - What was granted is kept: the refresh token, the grant's scopes, the access token of
//!   its resource and what the backends' metadata said, written to the cache file before the
//!   new access token is handed out, so that a rotated refresh token is never lost to a crash.
//!
//! Both go to the profile's provider, at its [`authority`](super::authority); which of them
//! runs, and when, is the [`renewal`](super::renewal)'s and the step-up's choice.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{
    AuthError,
    authority::Authority,
    cache::StoredTokens,
    oidc::{Granted, Provider, RefreshError},
    scopes::{narrowed, union},
    sign_in::SignIn,
    target::TargetId,
    tokens::TokenManager,
};
use crate::{config::Flow, secret::Secret};

/// Pauses before retrying a refresh the provider could not serve.
const REFRESH_RETRIES: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1500)];

impl TokenManager {
    /// The scopes a token for `resource` asks for: the configured ones, and those its
    /// backend asked for since (a step-up), which no other resource's tokens carry.
    pub(super) fn scopes_for(
        &self,
        tokens: Option<&StoredTokens>,
        resource: Option<&str>,
    ) -> Vec<String> {
        let extra = tokens.map_or(&[][..], |t| t.step_up_scopes(resource));
        union(&self.base_scopes(tokens), extra)
    }

    /// The scopes every token of the profile asks for: the configured ones, or — where the
    /// server says them — what its backends named (read in this process), else what the
    /// grant on disk was asked with.
    fn base_scopes(&self, tokens: Option<&StoredTokens>) -> Vec<String> {
        if !self.profile.server_scopes {
            return self.profile.scopes.clone();
        }
        let mut named: Option<Vec<String>> = None;
        for (_, t) in self.targets.iter() {
            if let Some(wanted) = t.wanted_scopes() {
                named = Some(union(named.as_deref().unwrap_or_default(), &wanted));
            }
        }
        named
            .or_else(|| tokens.map(|t| t.scopes.clone()))
            .unwrap_or_default()
    }

    /// For a profile whose server says the scopes: reads what each backend's challenge to a
    /// request without a token names, once, before a sign-in asks for them.
    pub(super) async fn hear_challenges(&self) {
        if !self.profile.server_scopes {
            return;
        }
        for (_, t) in self.targets.iter() {
            if let (None, Some(url)) = (t.challenge_scopes(), &t.url) {
                t.heard_challenge(super::resource::challenge_scopes(&self.http, url).await);
            }
        }
    }

    /// A refresh for `resource` with the scopes it `needs` (narrowed from a wider grant), if
    /// the grant has a refresh token that may ask for it; `Ok(None)` when a new grant is
    /// needed.
    pub(super) async fn refresh(
        &self,
        provider: &Provider,
        tokens: Option<&StoredTokens>,
        resource: Option<&str>,
        needs: &[String],
    ) -> Result<Option<Granted>, AuthError> {
        let Some(tokens) = tokens else {
            return Ok(None);
        };
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            return Ok(None);
        };
        if let Some(resource) = resource
            && !tokens.resources.iter().any(|r| r == resource)
        {
            // Providers refuse a resource the grant does not cover (`invalid_target`), and
            // some burn the refresh token doing so: sign in again, asking for it.
            tracing::info!(
                "The grant of profile '{}' does not cover the resource {resource}; signing in \
                 again",
                self.profile.name
            );
            return Ok(None);
        }
        let scope = narrowed(&tokens.scopes, needs);
        let mut attempt = 0;
        loop {
            match provider
                .refresh(&refresh_token, resource, scope.as_deref())
                .await
            {
                Ok(mut granted) => {
                    if granted.refresh_token.is_none() {
                        granted.refresh_token = Some(refresh_token);
                    }
                    tracing::debug!(
                        "Refreshed the access token of '{}'{}",
                        self.profile.name,
                        resource.map(|r| format!(" for {r}")).unwrap_or_default()
                    );
                    return Ok(Some(granted));
                }
                Err(RefreshError::Rejected(reason)) => {
                    tracing::info!(
                        "Refresh for profile '{}' was refused ({reason}); signing in again",
                        self.profile.name
                    );
                    return Ok(None);
                }
                // A provider that is briefly down gets a few more tries; the tokens stay,
                // so the next request can refresh once it is back (no new sign-in).
                Err(RefreshError::Unavailable(error)) if attempt < REFRESH_RETRIES.len() => {
                    tracing::warn!(
                        "Refresh for profile '{}' failed ({error}); retrying in {} ms",
                        self.profile.name,
                        REFRESH_RETRIES[attempt].as_millis()
                    );
                    tokio::time::sleep(REFRESH_RETRIES[attempt]).await;
                    attempt += 1;
                }
                Err(RefreshError::Unavailable(error) | RefreshError::Failed(error)) => {
                    return Err(error);
                }
            }
        }
    }

    /// A new grant by the profile's flow, for `scopes`, covering the resources of every
    /// target, with an access token for `target`'s.
    pub(super) async fn new_grant(
        &self,
        provider: &Provider,
        current: &mut Option<StoredTokens>,
        target: TargetId,
        scopes: &[String],
    ) -> Result<Granted, AuthError> {
        let resource = self.resource(target, current.as_mut()).await?;
        if let Some(assertion) = &self.profile.identity_assertion {
            return self
                .cross_app_grant(assertion, provider, scopes, resource.as_deref())
                .await;
        }
        if self.profile.flow == Flow::ClientCredentials {
            let granted = provider
                .client_credentials(scopes, resource.as_deref())
                .await?;
            tracing::info!(
                "Got a client-credentials token from {} (profile '{}')",
                provider.issuer(),
                self.profile.name
            );
            return Ok(granted);
        }
        if !self.interactive {
            return Err(AuthError::SignInNeeded {
                profile: self.profile.name.clone(),
            });
        }
        let mut resources = Vec::new();
        for (id, _) in self.targets.iter() {
            if let Some(r) = self.resource(id, current.as_mut()).await?
                && !resources.contains(&r)
            {
                resources.push(r);
            }
        }
        let provenance = self.authority.get().and_then(Authority::provenance);
        let _callback_port_free = self.login_gate.lock().await;
        let sign_in = SignIn {
            profile: &self.profile,
            provider,
            browser: &self.browser,
            notices: &self.notices,
            scopes,
            resources: &resources,
            resource: resource.as_deref(),
            provenance: provenance.as_deref(),
        };
        let granted = match self.profile.flow {
            Flow::Device => sign_in.device().await?,
            _ => sign_in.browser().await?,
        };
        tracing::info!(
            "Logged in to {} (profile '{}')",
            provider.issuer(),
            self.profile.name
        );
        if let Ok(mut at) = self.last_login.lock() {
            *at = Some(Instant::now());
        }
        if granted.refresh_token.is_none() && !self.told_no_refresh.swap(true, Ordering::SeqCst) {
            let hint = if scopes.iter().any(|s| s == "offline_access") {
                String::new()
            } else {
                " (many providers issue one only for the scope offline_access: add it to \
                 OIDC_SCOPES / scopes)"
                    .to_owned()
            };
            tracing::warn!(
                "{} issued no refresh token for profile '{}': every expiry, and every backend \
                 bound to another resource, needs a new sign-in{hint}",
                provider.issuer(),
                self.profile.name
            );
        }
        // The new grant covers these resources (and no other): refreshes ask within them. The
        // access tokens in hand stay valid (and, without refresh tokens, are the only way to
        // the other backends until they expire).
        let mut tokens = current
            .take()
            .filter(|t| t.issuer == provider.issuer())
            .unwrap_or_else(|| StoredTokens::new(provider.issuer(), &self.client_id()));
        tokens.refresh_token = None;
        tokens.resources = resources;
        *current = Some(tokens);
        Ok(granted)
    }

    /// The id of the client the tokens are granted to: the one the provider knows the proxy
    /// by, else the profile's.
    fn client_id(&self) -> String {
        self.provider
            .get()
            .and_then(|p| p.known_client())
            .map(|c| c.id.clone())
            .unwrap_or_else(|| self.profile.client_label().to_owned())
    }

    /// Keeps what `issuer` granted as the token of `target` (bound to `resource`), from a
    /// grant that asked for `grant_scopes`; persists before the new access token is handed
    /// out, so a rotated refresh token is never lost to a crash.
    pub(super) fn keep(
        &self,
        current: &mut Option<StoredTokens>,
        target: TargetId,
        resource: Option<&str>,
        granted: Granted,
        grant_scopes: &[String],
        issuer: &str,
    ) -> Secret {
        let tokens = current.get_or_insert_with(|| StoredTokens::new(issuer, &self.client_id()));
        if granted.refresh_token.is_some() {
            tokens.refresh_token = granted.refresh_token;
        }
        if granted.id_token.is_some() {
            tokens.id_token = granted.id_token;
        }
        if !grant_scopes.is_empty() {
            tokens.scopes = grant_scopes.to_vec();
        }
        let token = granted.access.token.clone();
        tokens.set_access(resource, granted.access);
        // What the backends' metadata said, so that later runs need not ask again.
        for (id, t) in self.targets.iter() {
            if let (Some(url), Some(known)) = (&t.url, t.known())
                && let Ok(usable) = self.judge(id, known, Some(issuer))
            {
                tokens
                    .discovered
                    .insert(url.to_string(), usable.map(|m| m.resource));
            }
        }
        self.save(tokens);
        tracing::debug!(
            "Access token of '{}' for backend '{}' ready",
            self.profile.name,
            self.targets[target].backend
        );
        token
    }

    /// Writes `tokens` to the cache file; a failure costs the next start a sign-in, not this
    /// request its token.
    pub(super) fn save(&self, tokens: &StoredTokens) {
        if let Err(e) = self.cache.save(tokens) {
            tracing::warn!(
                "Could not save tokens to {}: {e}; the next start will need a new sign-in",
                self.cache.path().display()
            );
        }
    }
}
