//! Logging out: the profile's tokens forgotten here and, where the provider allows it, revoked
//! there.
//!
//! The refresh token is revoked (RFC 7009) at the server that issued it — the one stored with
//! it, never one a backend names now — then the cache file is deleted. A provider without a
//! revocation endpoint, or one that fails, does not keep the tokens on disk: the file goes
//! either way, and [`LoggedOut`] says what became of the refresh token at the provider, so
//! that `logout` can tell the person it may stay valid there until it expires.

use std::{sync::Arc, time::Duration};

use super::{
    AuthError, authority::same_issuer, oidc::Provider, registration::Registrations,
    tokens::TokenManager,
};
use crate::secret::Secret;

impl TokenManager {
    /// Forgets the profile's tokens: revokes the refresh token at the server that issued it
    /// (the one stored with it; never one a backend names now) when it offers revocation (RFC
    /// 7009), then deletes the cache file. Says what it did.
    pub async fn log_out(&self) -> Result<LoggedOut, AuthError> {
        let mut current = self.current.lock().await;
        let _renewing = self.cache.lock(Duration::from_secs(10)).await;
        let stored = self.cache.load().or_else(|| current.take());
        let Some(stored) = stored else {
            return Ok(LoggedOut::NothingCached);
        };
        let revoked = match &stored.refresh_token {
            None => Revocation::NoRefreshToken,
            Some(refresh_token) => match self.revoke_at(&stored.issuer, refresh_token).await {
                Ok(true) => Revocation::Revoked,
                Ok(false) => Revocation::Unsupported,
                Err(e) => Revocation::Failed(e.to_string()),
            },
        };
        *current = None;
        self.cache.remove().map_err(|e| {
            AuthError::Cache(format!(
                "cannot delete {}: {e}",
                self.cache.path().display()
            ))
        })?;
        Ok(LoggedOut::Forgotten(revoked))
    }

    /// Revokes `refresh_token` at `issuer`, which issued it.
    async fn revoke_at(&self, issuer: &str, refresh_token: &Secret) -> Result<bool, AuthError> {
        if let Some(provider) = self.provider.get()
            && same_issuer(provider.issuer(), issuer)
        {
            return provider.revoke(refresh_token).await;
        }
        let provider = Provider::discover(
            Arc::clone(&self.profile),
            issuer,
            self.http.clone(),
            Registrations::new(self.cache.dir()),
        )
        .await?;
        provider.revoke(refresh_token).await
    }
}

/// What `log_out` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedOut {
    /// There were no tokens.
    NothingCached,
    /// The cache file is gone; and the refresh token?
    Forgotten(Revocation),
}

/// What became of the refresh token at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked.
    Revoked,
    /// There was none.
    NoRefreshToken,
    /// The provider has no revocation endpoint: it stays valid there until it expires.
    Unsupported,
    /// Revoking failed: it stays valid there until it expires.
    Failed(String),
}
