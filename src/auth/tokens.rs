//! Getting and keeping valid access tokens for one OIDC profile, for each of its backends.
//!
//! One [`TokenManager`] per profile holds one grant — one refresh token from one sign-in —
//! and the access tokens it yields, one per resource indicator (RFC 8707): backends whose
//! tokens must be bound to their own resource get their own, through the refresh token, so
//! one sign-in serves every backend of the profile and none receives a token meant for
//! another. Each backend holds an [`Access`]: the manager and which of its [`Target`]s it is.
//!
//! A token comes from memory, else from the cache file ([`cache`](super::cache)), else from a
//! refresh, else from a new grant (`grants`): a sign-in ([`sign_in`](super::sign_in)) or, for
//! a service account, the client-credentials grant. One renewal runs at a time, across
//! processes too, and requests that waited for one share its outcome (`renewal`).
//!
//! Every credential goes to the profile's [`authority`](super::authority) — configured, or
//! pinned at the first sign-in — and nowhere else: refreshes, revocation and later sign-ins
//! use the server stored with the tokens, never one a backend names now. A backend may ask
//! for more scopes ([`step_up`](super::step_up)) on its own terms only.
//!
//! Here are the manager's fields, its construction and the entry points an [`Access`] calls;
//! the rest of its work has modules of its own (see the [map](super)), which import from
//! this one and never the other way round.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::{Mutex, OnceCell};

use super::{
    AuthError, REFRESH_MARGIN_SECS,
    authority::Authority,
    browser::Browser,
    cache::{AccessToken, StoredTokens, TokenCache, unix_now},
    oidc::Provider,
    resource::{Challenge, Owners},
    sign_in::Notices,
    target::{Target, TargetId, Targets},
};
use crate::{
    config::{Backend, Flow, Profile, Resource},
    error_text::untrusted,
    secret::Secret,
};

/// One backend's way to its tokens: its profile's manager, and which of its targets it is.
#[derive(Clone)]
pub struct Access {
    manager: Arc<TokenManager>,
    target: TargetId,
}

impl Access {
    /// The manager of the backend's profile.
    pub fn manager(&self) -> &Arc<TokenManager> {
        &self.manager
    }

    /// The backend's name.
    pub fn backend(&self) -> &str {
        &self.manager.targets[self.target].backend
    }

    /// The resource indicator the backend's tokens are bound to, as far as known without
    /// asking it.
    pub fn resource(&self) -> Option<String> {
        self.manager
            .known_resource(self.target, self.manager.stored().as_ref())
    }

    /// A valid access token for the backend.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        self.manager.token_for(self.target).await
    }

    /// The token in hand, without renewing: for best-effort calls such as closing a session.
    pub fn cached(&self) -> Option<Secret> {
        self.manager.cached_token(self.target)
    }

    /// The backend refused `rejected` (with `challenge`, if it said why): a newer token.
    pub async fn renew_rejected(
        &self,
        rejected: &Secret,
        challenge: Option<&Challenge>,
    ) -> Result<Secret, AuthError> {
        self.manager
            .renew_rejected(self.target, rejected, challenge)
            .await
    }

    /// The backend wants `scopes` that `rejected` lacks (RFC 6750 `insufficient_scope`) for a
    /// request the client made (`from_client`) or the proxy's own: a token that has them, if
    /// the backend may have one (see the [`super::step_up`] module).
    pub async fn step_up(
        &self,
        rejected: &Secret,
        scopes: &[String],
        from_client: bool,
    ) -> Result<Secret, AuthError> {
        self.manager
            .step_up(self.target, rejected, scopes, from_client)
            .await
    }

    /// Why the backend still refuses `token` for want of `scopes`, after a step-up: the
    /// provider did not grant them, or the backend refuses a token that has them.
    pub async fn scope_refusal(&self, token: &Secret, scopes: &[String]) -> AuthError {
        self.manager.scope_refusal(self.target, token, scopes).await
    }
}

/// Hands out access tokens for one profile, renewing them at most once at a time.
pub struct TokenManager {
    pub(super) profile: Arc<Profile>,
    pub(super) targets: Targets,
    pub(super) cache: TokenCache,
    pub(super) http: reqwest::Client,
    pub(super) browser: Arc<dyn Browser>,
    pub(super) login_gate: Arc<Mutex<()>>,
    pub(super) notices: Notices,
    /// Whether a person may be asked to sign in (not by `status`).
    pub(super) interactive: bool,
    /// The server the credentials belong to: configured, pinned, or agreed by the backends.
    pub(super) authority: OnceCell<Authority>,
    pub(super) provider: OnceCell<Provider>,
    /// The company identity provider of a cross-app access profile.
    pub(super) idp: OnceCell<super::cross_app::Idp>,
    /// Held across a renewal, so concurrent requests wait for one refresh or sign-in.
    pub(super) current: Mutex<Option<StoredTokens>>,
    /// Renewals finished so far, and the last one that failed: requests that waited for a
    /// renewal share its outcome, so one refused login never opens a second browser tab.
    pub(super) renewals: AtomicU64,
    pub(super) last_failure: std::sync::Mutex<Option<(u64, AuthError)>>,
    /// When the last sign-in finished: a backend that rejects the tokens of so fresh a
    /// sign-in gets no new one before `login_timeout` has passed (no tab after tab).
    pub(super) last_login: std::sync::Mutex<Option<Instant>>,
    /// The provider issued no refresh token, and the user has been told.
    pub(super) told_no_refresh: AtomicBool,
}

/// A token this close to its expiry is not sent: it could expire on the way.
const LAST_SECONDS: i64 = 10;

/// Whether `access` has more than [`REFRESH_MARGIN_SECS`] left (or no expiry said).
pub(super) fn is_fresh(access: &AccessToken) -> bool {
    access
        .seconds_left(unix_now())
        .is_none_or(|left| left > REFRESH_MARGIN_SECS)
}

/// A fresh token for `resource` other than `rejected`: another request renewed meanwhile.
pub(super) fn newer(
    tokens: Option<&StoredTokens>,
    resource: Option<&str>,
    rejected: &Secret,
) -> Option<Secret> {
    tokens?
        .access(resource)
        .filter(|a| a.token != *rejected && is_fresh(a))
        .map(|a| a.token)
}

impl TokenManager {
    /// A manager for `profile` whose cache file lives in `cache_dir`, handing out tokens bound
    /// to no resource (see [`TokenManager::for_backends`]). Its sign-ins wait at `login_gate`,
    /// which the profiles whose browser callbacks listen on one port share.
    pub fn new(
        profile: Arc<Profile>,
        cache_dir: &Path,
        http: reqwest::Client,
        browser: Arc<dyn Browser>,
        login_gate: Arc<Mutex<()>>,
    ) -> Self {
        let cache = TokenCache::new(cache_dir, &profile, &[]);
        Self {
            profile,
            targets: Targets::unbound(),
            cache,
            http,
            browser,
            login_gate,
            notices: Notices::default(),
            interactive: true,
            authority: OnceCell::new(),
            provider: OnceCell::new(),
            idp: OnceCell::new(),
            current: Mutex::new(None),
            renewals: AtomicU64::new(0),
            last_failure: std::sync::Mutex::new(None),
            last_login: std::sync::Mutex::new(None),
            told_no_refresh: AtomicBool::new(false),
        }
    }

    /// The same, for `backends` (those of the profile), each with its resource indicator;
    /// `all` are every configured backend, whose resources the profile's backends may not
    /// claim as their own.
    pub fn for_backends(mut self, backends: &[&Backend], all: &[Backend]) -> Self {
        if backends.is_empty() {
            return self;
        }
        let targets = backends
            .iter()
            .map(|b| {
                let others = all
                    .iter()
                    .filter(|o| o.name != b.name && o.url != b.url)
                    .flat_map(|o| {
                        let configured = match &o.resource {
                            Resource::Url(resource) => Some((o.name.clone(), resource.clone())),
                            _ => None,
                        };
                        std::iter::once((o.name.clone(), o.url.to_string())).chain(configured)
                    });
                Target::new(
                    &b.name,
                    Some(b.url.clone()),
                    b.resource.clone(),
                    Owners::new(others),
                )
            })
            .collect();
        self.targets = Targets::new(targets);
        let urls: Vec<&url::Url> = backends.iter().map(|b| &b.url).collect();
        self.cache = TokenCache::new(self.cache.dir(), &self.profile, &urls);
        self
    }

    /// Never asks a person to sign in: tokens come from the cache or a refresh only (and from
    /// the client-credentials grant, which needs nobody).
    pub fn non_interactive(mut self) -> Self {
        self.interactive = false;
        self
    }

    /// The profile this manager serves.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The token cache file.
    pub fn cache_path(&self) -> &Path {
        self.cache.path()
    }

    /// What people are told to do to sign in (device codes, login URLs).
    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    /// The access of the backend named `backend`; an error for a backend this manager does
    /// not provide tokens for (another profile's tokens would be the wrong ones).
    pub fn access(self: &Arc<Self>, backend: &str) -> Result<Access, AuthError> {
        let target = self
            .targets
            .find(backend)
            .ok_or_else(|| AuthError::UnknownBackend {
                profile: self.profile.name.clone(),
                backend: backend.to_owned(),
                backends: self.targets.names(),
            })?;
        Ok(Access {
            manager: Arc::clone(self),
            target,
        })
    }

    /// A valid access token for the first backend (or bound to no resource).
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        self.token_for(TargetId::FIRST).await
    }

    /// The tokens on disk, without asking anyone anything.
    pub fn stored(&self) -> Option<StoredTokens> {
        self.cache.check().ok()?;
        self.cache.load()
    }

    /// A valid access token for `target`: cached, refreshed, or from a new grant.
    pub(super) async fn token_for(&self, target: TargetId) -> Result<Secret, AuthError> {
        let seen = self.renewals.load(Ordering::SeqCst);
        let mut current = self.current.lock().await;
        if current.is_none() {
            self.cache.check().map_err(AuthError::Cache)?;
            *current = self.cache.load();
        }
        let resource = self.resource(target, current.as_mut()).await?;
        if let Some(tokens) = current.as_ref()
            && let Some(access) = tokens.access(resource.as_deref())
            && self.usable(&access, tokens)
        {
            return Ok(access.token);
        }
        self.renew_once(&mut current, target, None, seen).await
    }

    /// Whether `access` may go out as it is: with time to spare before it expires, or — when
    /// only a person could renew it (no refresh token) — while it is still valid: a login is
    /// not worth starting a minute early.
    fn usable(&self, access: &AccessToken, tokens: &StoredTokens) -> bool {
        if is_fresh(access) {
            return true;
        }
        let person_needed = tokens.refresh_token.is_none()
            && self.profile.flow != Flow::ClientCredentials
            && self.profile.identity_assertion.is_none();
        person_needed
            && access
                .seconds_left(unix_now())
                .is_some_and(|left| left > LAST_SECONDS)
    }

    /// The access token in hand for `target`, if any, without renewing.
    pub(super) fn cached_token(&self, target: TargetId) -> Option<Secret> {
        // A renewal in progress holds the lock; waiting for a login here would stall shutdown.
        let current = self.current.try_lock().ok()?;
        let tokens = current.as_ref()?;
        let resource = self.known_resource(target, Some(tokens));
        tokens.access(resource.as_deref()).map(|a| a.token)
    }

    /// The backend of `target` refused `rejected`: returns a newer token, renewing unless
    /// another request already did. Its metadata is read again first (where its challenge
    /// says, if on its own origin): it may name a resource the tokens must be bound to — or,
    /// for a profile pinned to a server, another server, which is an error.
    pub(super) async fn renew_rejected(
        &self,
        target: TargetId,
        rejected: &Secret,
        challenge: Option<&Challenge>,
    ) -> Result<Secret, AuthError> {
        let seen = self.renewals.load(Ordering::SeqCst);
        let mut current = self.current.lock().await;
        let hint = challenge.and_then(|c| c.resource_metadata.as_deref());
        self.relearn(target, hint, current.as_mut()).await?;
        let resource = self.resource(target, current.as_mut()).await?;
        if let Some(newer) = newer(current.as_ref(), resource.as_deref(), rejected) {
            return Ok(newer);
        }
        tracing::info!(
            "Backend '{}' rejected the access token of profile '{}'{}; renewing it",
            self.targets[target].backend,
            self.profile.name,
            challenge
                .and_then(Challenge::describe)
                .map(|d| format!(" ({})", untrusted(&d)))
                .unwrap_or_default()
        );
        self.renew_once(&mut current, target, Some(rejected), seen)
            .await
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    struct NoBrowser;

    impl Browser for NoBrowser {
        fn open(&self, _url: &str) -> Result<(), String> {
            Err("no browser in unit tests".into())
        }
    }

    fn manager(backends: &[&str]) -> Arc<TokenManager> {
        let redirect = Url::parse("http://127.0.0.1:8080/auth/callback").unwrap();
        let profile = Arc::new(Profile::new(
            "work",
            Some("https://idp.example"),
            "client",
            redirect,
        ));
        let backends: Vec<Backend> = backends
            .iter()
            .map(|name| {
                let url = Url::parse(&format!("https://{name}.example/mcp")).unwrap();
                Backend::new(name, url, Some(Arc::clone(&profile)), None)
            })
            .collect();
        let own: Vec<&Backend> = backends.iter().collect();
        let manager = TokenManager::new(
            profile,
            &std::env::temp_dir(),
            reqwest::Client::new(),
            Arc::new(NoBrowser),
            Arc::default(),
        );
        Arc::new(manager.for_backends(&own, &backends))
    }

    #[test]
    fn each_backend_gets_its_own_target() {
        let manager = manager(&["wiki", "tickets"]);
        for name in ["wiki", "tickets"] {
            let access = manager.access(name).unwrap();
            assert_eq!(access.backend(), name);
        }
    }

    #[test]
    fn an_unknown_backend_is_an_error_naming_the_profiles_backends() {
        let error = manager(&["wiki", "tickets"])
            .access("mail")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            error,
            "profile 'work' provides no tokens for a backend named 'mail' (its backends: wiki, \
             tickets)"
        );
        let unbound = manager(&[]).access("mail").err().unwrap().to_string();
        assert!(unbound.ends_with("(its backends: none)"), "{unbound}");
    }
}
