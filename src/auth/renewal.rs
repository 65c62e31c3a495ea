//! Renewing a profile's tokens: one renewal at a time, and requests that waited for one share
//! its outcome.
//!
//! A renewal holds the manager's lock on the tokens in memory, so that concurrent requests of
//! this process wait for it, and the token file's lock ([`cache`](super::cache)), so that
//! other processes sharing the file wait too. Then, in order:
//!
//! 1. tokens another process stored meanwhile are used, if fresh — and if they come from the
//!    server this process signs in at: those of another are never sent anywhere;
//! 2. else a refresh, else a new grant ([`grants`](super::grants));
//! 3. but when a backend rejects the tokens of a sign-in that finished less than
//!    `login_timeout` ago, another sign-in would most likely get the same tokens: the answer
//!    is [`TokensRejected`](super::AuthError::TokensRejected), not browser tab after tab.
//!
//! A renewal that fails is the answer for every request that waited for it too (`renew_once`),
//! so one refused login never opens a second tab.

use std::{sync::atomic::Ordering, time::Duration};

use super::{
    AuthError,
    authority::same_issuer,
    cache::StoredTokens,
    target::TargetId,
    tokens::{TokenManager, is_fresh},
};
use crate::secret::Secret;

impl TokenManager {
    /// Renews unless a renewal that finished while this caller waited has failed: then that
    /// failure is the answer.
    pub(super) async fn renew_once(
        &self,
        current: &mut Option<StoredTokens>,
        target: TargetId,
        rejected: Option<&Secret>,
        seen: u64,
    ) -> Result<Secret, AuthError> {
        if let Ok(failure) = self.last_failure.lock()
            && let Some((at, error)) = failure.as_ref()
            && *at > seen
        {
            return Err(error.clone());
        }
        let result = self.renew(current, target, rejected).await;
        let done = self.renewals.fetch_add(1, Ordering::SeqCst) + 1;
        if let (Err(error), Ok(mut failure)) = (&result, self.last_failure.lock()) {
            *failure = Some((done, error.clone()));
        }
        result
    }

    /// How long a renewal waits for the token file's lock.
    pub(super) fn lock_wait(&self) -> Duration {
        // The wait covers a sign-in in another process.
        self.profile.login_timeout + Duration::from_secs(30)
    }

    /// Whether tokens on disk come from another server than the one this process signs in
    /// at (another process of an issuer-less profile pinned a different one): they are never
    /// sent anywhere by this one.
    fn foreign(&self, tokens: &StoredTokens) -> bool {
        let foreign = self
            .authority
            .get()
            .is_some_and(|a| !same_issuer(&a.issuer, &tokens.issuer));
        if foreign {
            tracing::warn!(
                "Ignoring the tokens of {} in {}: profile '{}' signs in at {} in this process",
                tokens.issuer,
                self.cache.path().display(),
                self.profile.name,
                self.issuer_label()
            );
        }
        foreign
    }

    /// One renewal, under the token file's lock: tokens another process stored meanwhile, else
    /// a refresh, else a new grant — but no new sign-in for a backend that rejected the tokens
    /// of one that just finished.
    async fn renew(
        &self,
        current: &mut Option<StoredTokens>,
        target: TargetId,
        rejected: Option<&Secret>,
    ) -> Result<Secret, AuthError> {
        // One renewal at a time across processes too: the others wait, then find its result
        // on disk.
        let _renewing = self.cache.lock(self.lock_wait()).await;
        let resource = self.resource(target, current.as_mut()).await?;
        // Another process sharing the cache may have refreshed (and rotated) meanwhile.
        if let Some(on_disk) = self.cache.load()
            && current.as_ref() != Some(&on_disk)
            && !self.foreign(&on_disk)
        {
            let usable = on_disk
                .access(resource.as_deref())
                .filter(|a| is_fresh(a) && rejected != Some(&a.token));
            *current = Some(on_disk);
            if let Some(access) = usable {
                tracing::debug!(
                    "Using tokens another process stored for '{}'",
                    self.profile.name
                );
                return Ok(access.token);
            }
        }
        let provider = self.provider(current.as_mut()).await?;
        self.hear_challenges().await;
        let needed = self.scopes_for(current.as_ref(), resource.as_deref());
        if let Some(granted) = self
            .refresh(provider, current.as_ref(), resource.as_deref(), &needed)
            .await?
        {
            let grant = current
                .as_ref()
                .map(|t| t.scopes.clone())
                .unwrap_or_default();
            let issuer = provider.issuer();
            return Ok(self.keep(
                current,
                target,
                resource.as_deref(),
                granted,
                &grant,
                issuer,
            ));
        }
        if rejected.is_some()
            && let Some(ago) = self
                .last_login
                .lock()
                .ok()
                .and_then(|at| at.map(|at| at.elapsed()))
            && ago < self.profile.login_timeout
        {
            return Err(AuthError::TokensRejected {
                issuer: provider.issuer().to_owned(),
                seconds_ago: ago.as_secs(),
                wait: (self.profile.login_timeout - ago).as_secs(),
            });
        }
        let granted = self.new_grant(provider, current, target, &needed).await?;
        let issuer = provider.issuer();
        Ok(self.keep(
            current,
            target,
            resource.as_deref(),
            granted,
            &needed,
            issuer,
        ))
    }
}
