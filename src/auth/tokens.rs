//! Getting and keeping valid access tokens for one OIDC profile, for each of its backends.
//!
//! One [`TokenManager`] per profile holds one grant — one refresh token from one sign-in —
//! and the access tokens it yields, one per resource indicator (RFC 8707): backends whose
//! tokens must be bound to their own resource get their own, through the refresh token, so
//! one sign-in serves every backend of the profile and none receives a token meant for
//! another. Each backend holds an [`Access`]: the manager and which of its [`Target`]s it is.
//!
//! A token comes from memory, else from the cache file ([`cache`](super::cache)), else from a
//! refresh, else from a new grant: a sign-in ([`sign_in`](super::sign_in)) or, for a service
//! account, the client-credentials grant. One renewal runs at a time, across processes too,
//! and requests that waited for one share its outcome.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, OnceCell};
use url::Url;

use super::{
    AuthError, REFRESH_MARGIN_SECS, REFRESH_RETRIES,
    browser::Browser,
    cache::{AccessToken, StoredTokens, TokenCache, unix_now},
    oidc::{Granted, Provider, RefreshError},
    resource::{self, Challenge, ResourceMetadata},
    sign_in::{Notices, SignIn},
};
use crate::{
    config::{Backend, Flow, Profile, Resource},
    secret::Secret,
};

/// A backend whose tokens the profile provides, and the resource indicator they are bound to.
#[derive(Debug)]
pub struct Target {
    /// The backend's name, for messages.
    pub backend: String,
    /// Its URL.
    pub url: Option<Url>,
    /// Its `resource` setting.
    pub setting: Resource,
    /// Its metadata, once read: `Some(None)` when it publishes none (or none usable).
    metadata: std::sync::Mutex<Option<Option<ResourceMetadata>>>,
}

impl Target {
    fn new(backend: &str, url: Option<Url>, setting: Resource) -> Self {
        Self {
            backend: backend.to_owned(),
            url,
            setting,
            metadata: std::sync::Mutex::new(None),
        }
    }

    fn known(&self) -> Option<Option<ResourceMetadata>> {
        self.metadata.lock().ok()?.clone()
    }

    fn remember(&self, metadata: Option<ResourceMetadata>) {
        if let Ok(mut known) = self.metadata.lock() {
            *known = Some(metadata);
        }
    }
}

/// One backend's way to its tokens: its profile's manager, and which target it is.
#[derive(Clone)]
pub struct Access {
    manager: Arc<TokenManager>,
    target: usize,
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

    /// The backend wants `scopes` that `rejected` lacks (RFC 6750 `insufficient_scope`): a
    /// token from a new grant that asks for them too.
    pub async fn step_up(&self, rejected: &Secret, scopes: &[String]) -> Result<Secret, AuthError> {
        self.manager.step_up(self.target, rejected, scopes).await
    }
}

/// Hands out access tokens for one profile, renewing them at most once at a time.
pub struct TokenManager {
    profile: Arc<Profile>,
    targets: Vec<Target>,
    cache: TokenCache,
    http: reqwest::Client,
    browser: Arc<dyn Browser>,
    login_gate: Arc<Mutex<()>>,
    notices: Notices,
    /// Whether a person may be asked to sign in (not by `status`).
    interactive: bool,
    /// The issuer: configured, or named by the backends.
    issuer: OnceCell<String>,
    provider: OnceCell<Provider>,
    /// Held across a renewal, so concurrent requests wait for one refresh or sign-in.
    current: Mutex<Option<StoredTokens>>,
    /// Renewals finished so far, and the last one that failed: requests that waited for a
    /// renewal share its outcome, so one refused login never opens a second browser tab.
    renewals: AtomicU64,
    last_failure: std::sync::Mutex<Option<(u64, AuthError)>>,
    /// When the last sign-in finished: a backend that rejects the tokens of so fresh a
    /// sign-in gets no new one before `login_timeout` has passed (no tab after tab).
    last_login: std::sync::Mutex<Option<Instant>>,
    /// The scopes of the last step-up and when it was: the same scopes asked again so soon
    /// mean the provider will not grant them, and another sign-in would not help.
    last_step_up: std::sync::Mutex<Option<(Vec<String>, Instant)>>,
    /// The provider issued no refresh token, and the user has been told.
    told_no_refresh: AtomicBool,
}

/// A token this close to its expiry is not sent: it could expire on the way.
const LAST_SECONDS: i64 = 10;

fn is_fresh(access: &AccessToken) -> bool {
    access
        .seconds_left(unix_now())
        .is_none_or(|left| left > REFRESH_MARGIN_SECS)
}

/// A fresh token for `resource` other than `rejected`: another request renewed meanwhile.
fn newer(
    tokens: Option<&StoredTokens>,
    resource: Option<&str>,
    rejected: &Secret,
) -> Option<Secret> {
    tokens?
        .access(resource)
        .filter(|a| a.token != *rejected && is_fresh(a))
        .map(|a| a.token)
}

/// `scopes` with `more` added, each once, in order.
fn union(scopes: &[String], more: &[String]) -> Vec<String> {
    let mut all = scopes.to_vec();
    for scope in more {
        if !all.contains(scope) {
            all.push(scope.clone());
        }
    }
    all
}

impl TokenManager {
    /// A manager for `profile` whose cache file lives in `cache_dir`, handing out tokens bound
    /// to no resource (see [`TokenManager::for_backends`]). `login_gate` is shared by every
    /// profile so that only one browser login runs at a time.
    pub fn new(
        profile: Arc<Profile>,
        cache_dir: &Path,
        http: reqwest::Client,
        browser: Arc<dyn Browser>,
        login_gate: Arc<Mutex<()>>,
    ) -> Self {
        let cache = TokenCache::new(cache_dir, &profile);
        Self {
            profile,
            targets: vec![Target::new("", None, Resource::Off)],
            cache,
            http,
            browser,
            login_gate,
            notices: Notices::default(),
            interactive: true,
            issuer: OnceCell::new(),
            provider: OnceCell::new(),
            current: Mutex::new(None),
            renewals: AtomicU64::new(0),
            last_failure: std::sync::Mutex::new(None),
            last_login: std::sync::Mutex::new(None),
            last_step_up: std::sync::Mutex::new(None),
            told_no_refresh: AtomicBool::new(false),
        }
    }

    /// The same, for `backends` (those of the profile), each with its resource indicator.
    pub fn for_backends(mut self, backends: &[&Backend]) -> Self {
        if !backends.is_empty() {
            self.targets = backends
                .iter()
                .map(|b| Target::new(&b.name, Some(b.url.clone()), b.resource.clone()))
                .collect();
        }
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

    /// The access of the backend named `backend` (the first target for a name it does not
    /// know).
    pub fn access(self: &Arc<Self>, backend: &str) -> Access {
        let target = self
            .targets
            .iter()
            .position(|t| t.backend == backend)
            .unwrap_or(0);
        Access {
            manager: Arc::clone(self),
            target,
        }
    }

    /// A valid access token for the first backend (or bound to no resource).
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        self.token_for(0).await
    }

    /// The tokens on disk, without asking anyone anything.
    pub fn stored(&self) -> Option<StoredTokens> {
        self.cache.check().ok()?;
        self.cache.load()
    }

    /// A valid access token for `target`: cached, refreshed, or from a new grant.
    pub async fn token_for(&self, target: usize) -> Result<Secret, AuthError> {
        let seen = self.renewals.load(Ordering::SeqCst);
        let mut current = self.current.lock().await;
        if current.is_none() {
            self.cache.check().map_err(AuthError::Cache)?;
            *current = self.cache.load();
        }
        let resource = self.resource(target, current.as_mut()).await;
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
        let person_needed =
            tokens.refresh_token.is_none() && self.profile.flow != Flow::ClientCredentials;
        person_needed
            && access
                .seconds_left(unix_now())
                .is_some_and(|left| left > LAST_SECONDS)
    }

    /// The access token in hand for `target`, if any, without renewing.
    pub fn cached_token(&self, target: usize) -> Option<Secret> {
        // A renewal in progress holds the lock; waiting for a login here would stall shutdown.
        let current = self.current.try_lock().ok()?;
        let tokens = current.as_ref()?;
        let resource = self.known_resource(target, Some(tokens));
        tokens.access(resource.as_deref()).map(|a| a.token)
    }

    /// The backend of `target` refused `rejected`: returns a newer token, renewing unless
    /// another request already did. A `challenge` naming the backend's metadata may say that
    /// its tokens must be bound to a resource the proxy did not know of.
    pub async fn renew_rejected(
        &self,
        target: usize,
        rejected: &Secret,
        challenge: Option<&Challenge>,
    ) -> Result<Secret, AuthError> {
        let seen = self.renewals.load(Ordering::SeqCst);
        let mut current = self.current.lock().await;
        if let Some(hint) = challenge.and_then(|c| c.resource_metadata.as_deref()) {
            self.learn_from_hint(target, hint, current.as_mut()).await;
        }
        let resource = self.resource(target, current.as_mut()).await;
        if let Some(newer) = newer(current.as_ref(), resource.as_deref(), rejected) {
            return Ok(newer);
        }
        tracing::info!(
            "Backend '{}' rejected the access token of profile '{}'{}; renewing it",
            self.targets[target].backend,
            self.profile.name,
            challenge
                .and_then(Challenge::describe)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
        self.renew_once(&mut current, target, Some(rejected), seen)
            .await
    }

    /// The backend of `target` needs `scopes` that `rejected` lacks: a new grant asks for the
    /// configured scopes and these. Never twice in a row for the same scopes: a provider that
    /// did not grant them once will not the second time.
    pub async fn step_up(
        &self,
        target: usize,
        rejected: &Secret,
        scopes: &[String],
    ) -> Result<Secret, AuthError> {
        let mut current = self.current.lock().await;
        let asked = self.asked_scopes(current.as_ref());
        let wanted = union(&asked, scopes);
        let resource = self.resource(target, current.as_mut()).await;
        if let Some(newer) = newer(current.as_ref(), resource.as_deref(), rejected) {
            // Another request stepped up meanwhile.
            return Ok(newer);
        }
        let backend = &self.targets[target].backend;
        let recent = self.last_step_up.lock().ok().and_then(|last| {
            last.as_ref()
                .filter(|(s, at)| *s == wanted && at.elapsed() < self.profile.login_timeout)
                .map(|(_, at)| at.elapsed())
        });
        if recent.is_some() || (wanted == asked && current.is_some()) {
            return Err(AuthError::ScopeNotGranted {
                backend: backend.clone(),
                scopes: scopes.join(" "),
                issuer: self.issuer_label(),
            });
        }
        tracing::info!(
            "Backend '{backend}' needs the scopes {}; signing in again for profile '{}' with \
             scopes {}",
            scopes.join(" "),
            self.profile.name,
            wanted.join(" ")
        );
        if let Ok(mut last) = self.last_step_up.lock() {
            *last = Some((wanted.clone(), Instant::now()));
        }
        let _renewing = self.cache.lock(self.lock_wait()).await;
        let provider = self.provider(current.as_mut()).await?;
        let granted = self
            .new_grant(provider, &mut current, target, &wanted)
            .await?;
        Ok(self.keep(&mut current, target, resource.as_deref(), granted, &wanted))
    }

    /// Renews unless a renewal that finished while this caller waited has failed: then that
    /// failure is the answer.
    async fn renew_once(
        &self,
        current: &mut Option<StoredTokens>,
        target: usize,
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

    /// The scopes a new grant asks for: those of the last one (a step-up may have added to
    /// them), else the configured ones.
    fn asked_scopes(&self, tokens: Option<&StoredTokens>) -> Vec<String> {
        tokens
            .map(|t| t.scopes.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.profile.scopes.clone())
    }

    fn lock_wait(&self) -> Duration {
        // The wait covers a sign-in in another process.
        self.profile.login_timeout + Duration::from_secs(30)
    }

    async fn renew(
        &self,
        current: &mut Option<StoredTokens>,
        target: usize,
        rejected: Option<&Secret>,
    ) -> Result<Secret, AuthError> {
        // One renewal at a time across processes too: the others wait, then find its result
        // on disk.
        let _renewing = self.cache.lock(self.lock_wait()).await;
        let resource = self.resource(target, current.as_mut()).await;
        // Another process sharing the cache may have refreshed (and rotated) meanwhile.
        if let Some(on_disk) = self.cache.load()
            && current.as_ref() != Some(&on_disk)
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
        if let Some(granted) = self
            .refresh(provider, current.as_ref(), resource.as_deref())
            .await?
        {
            let scopes = current
                .as_ref()
                .map(|t| t.scopes.clone())
                .unwrap_or_default();
            return Ok(self.keep(current, target, resource.as_deref(), granted, &scopes));
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
        let scopes = self.asked_scopes(current.as_ref());
        let granted = self.new_grant(provider, current, target, &scopes).await?;
        Ok(self.keep(current, target, resource.as_deref(), granted, &scopes))
    }

    /// A refresh for `resource`, if the grant has a refresh token that may ask for it;
    /// `Ok(None)` when a new grant is needed.
    async fn refresh(
        &self,
        provider: &Provider,
        tokens: Option<&StoredTokens>,
        resource: Option<&str>,
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
        let mut attempt = 0;
        loop {
            match provider.refresh(&refresh_token, resource).await {
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
    async fn new_grant(
        &self,
        provider: &Provider,
        current: &mut Option<StoredTokens>,
        target: usize,
        scopes: &[String],
    ) -> Result<Granted, AuthError> {
        let resource = self.resource(target, current.as_mut()).await;
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
        for index in 0..self.targets.len() {
            if let Some(r) = self.resource(index, current.as_mut()).await
                && !resources.contains(&r)
            {
                resources.push(r);
            }
        }
        let _one_sign_in_at_a_time = self.login_gate.lock().await;
        let sign_in = SignIn {
            profile: &self.profile,
            provider,
            browser: &self.browser,
            notices: &self.notices,
            scopes,
            resources: &resources,
            resource: resource.as_deref(),
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
            .unwrap_or_else(|| StoredTokens::new(provider.issuer(), &self.profile.client_id));
        tokens.refresh_token = None;
        tokens.resources = resources;
        *current = Some(tokens);
        Ok(granted)
    }

    /// Persists before the new access token is handed out, so a rotated refresh token is never
    /// lost to a crash.
    fn keep(
        &self,
        current: &mut Option<StoredTokens>,
        target: usize,
        resource: Option<&str>,
        granted: Granted,
        scopes: &[String],
    ) -> Secret {
        let issuer = self
            .issuer
            .get()
            .cloned()
            .unwrap_or_else(|| self.issuer_label());
        let tokens =
            current.get_or_insert_with(|| StoredTokens::new(&issuer, &self.profile.client_id));
        if granted.refresh_token.is_some() {
            tokens.refresh_token = granted.refresh_token;
        }
        if !scopes.is_empty() && tokens.scopes != scopes {
            if !tokens.scopes.is_empty() {
                // Tokens of the old scopes may lack the new ones.
                tokens.forget_access();
            }
            tokens.scopes = scopes.to_vec();
        }
        let token = granted.access.token.clone();
        tokens.set_access(resource, granted.access);
        // What the backends' metadata said, so that later runs need not ask again.
        for t in &self.targets {
            if let (Some(url), Some(known)) = (&t.url, t.known()) {
                tokens
                    .discovered
                    .insert(url.to_string(), known.map(|m| m.resource));
            }
        }
        if let Err(e) = self.cache.save(tokens) {
            tracing::warn!(
                "Could not save tokens to {}: {e}; the next start will need a new sign-in",
                self.cache.path().display()
            );
        }
        tracing::debug!(
            "Access token of '{}' for backend '{}' ready",
            self.profile.name,
            self.targets[target].backend
        );
        token
    }

    fn issuer_label(&self) -> String {
        self.issuer
            .get()
            .cloned()
            .unwrap_or_else(|| self.profile.issuer_label().to_owned())
    }

    /// The provider, discovered once; its issuer is the configured one, or the one the cache
    /// or the backends' metadata name.
    async fn provider(&self, tokens: Option<&mut StoredTokens>) -> Result<&Provider, AuthError> {
        let issuer = match &self.profile.issuer_url {
            Some(issuer) => issuer.clone(),
            None => match tokens.as_deref().map(|t| t.issuer.clone()) {
                Some(issuer) => issuer,
                None => self.issuer_from_backends(tokens).await?,
            },
        };
        let issuer = self.issuer.get_or_init(|| async { issuer }).await;
        self.provider
            .get_or_try_init(|| {
                Provider::discover(Arc::clone(&self.profile), issuer, self.http.clone())
            })
            .await
    }

    /// The first authorization server a backend of the profile names in its metadata.
    async fn issuer_from_backends(
        &self,
        mut tokens: Option<&mut StoredTokens>,
    ) -> Result<String, AuthError> {
        for index in 0..self.targets.len() {
            if let Some(metadata) = self.metadata(index, tokens.as_deref_mut()).await
                && let Some(issuer) = metadata.authorization_servers.first()
            {
                tracing::info!(
                    "Profile '{}' signs in at {issuer}, which backend '{}' names",
                    self.profile.name,
                    self.targets[index].backend
                );
                return Ok(issuer.clone());
            }
        }
        Err(AuthError::NoIssuer {
            profile: self.profile.name.clone(),
            backends: self
                .targets
                .iter()
                .map(|t| t.backend.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The resource indicator of `target` as far as known without asking the backend.
    fn known_resource(&self, target: usize, tokens: Option<&StoredTokens>) -> Option<String> {
        let target = &self.targets[target];
        let discovered = || -> Option<Option<String>> {
            if let Some(known) = target.known() {
                return Some(known.map(|m| m.resource));
            }
            let url = target.url.as_ref()?.as_str();
            tokens?.discovered.get(url).cloned()
        };
        match &target.setting {
            Resource::Off => None,
            Resource::Url(resource) => Some(resource.clone()),
            Resource::Auto => discovered().flatten(),
            Resource::Own => discovered()
                .flatten()
                .or_else(|| target.url.as_ref().map(Url::to_string)),
        }
    }

    /// The resource indicator of `target`, reading its metadata first if nothing says yet
    /// whether it has any (once: the answer is kept in the cache file).
    async fn resource(&self, target: usize, tokens: Option<&mut StoredTokens>) -> Option<String> {
        if matches!(self.targets[target].setting, Resource::Auto | Resource::Own) {
            // Remembered in the target, where `known_resource` finds it.
            let _ = self.metadata(target, tokens).await;
        }
        self.known_resource(target, None)
    }

    /// `target`'s metadata, read from the backend unless known (in memory, or its resource in
    /// the cache file).
    async fn metadata(
        &self,
        target: usize,
        tokens: Option<&mut StoredTokens>,
    ) -> Option<ResourceMetadata> {
        let t = &self.targets[target];
        if let Some(known) = t.known() {
            return known;
        }
        let url = t.url.as_ref()?;
        if let Some(tokens) = tokens.as_deref()
            && let Some(resource) = tokens.discovered.get(url.as_str())
        {
            // Known from an earlier run; the authorization servers are not needed then.
            let metadata = resource.clone().map(|resource| ResourceMetadata {
                resource,
                authorization_servers: Vec::new(),
                scopes_supported: Vec::new(),
            });
            t.remember(metadata.clone());
            return metadata;
        }
        let metadata = self.read_metadata(target, None).await;
        if let Some(tokens) = tokens {
            tokens.discovered.insert(
                url.to_string(),
                metadata.as_ref().map(|m| m.resource.clone()),
            );
        }
        metadata
    }

    /// Reads `target`'s metadata from the backend (at `hint` first, if given) and keeps it;
    /// metadata naming authorization servers other than the profile's issuer is not used.
    async fn read_metadata(&self, target: usize, hint: Option<&str>) -> Option<ResourceMetadata> {
        let t = &self.targets[target];
        let url = t.url.as_ref()?;
        let metadata = match resource::discover(&self.http, url, hint).await {
            Ok(metadata) => metadata,
            Err(problem) => {
                tracing::warn!("Backend '{}': {problem}", t.backend);
                None
            }
        };
        let issuer = self
            .profile
            .issuer_url
            .clone()
            .or_else(|| self.issuer.get().cloned());
        let metadata = metadata.filter(|m| {
            let trusted = |issuer: &str| {
                m.authorization_servers.is_empty()
                    || m.authorization_servers
                        .iter()
                        .any(|a| a.trim_end_matches('/') == issuer.trim_end_matches('/'))
            };
            let usable = issuer.as_deref().is_none_or(trusted);
            if !usable {
                tracing::warn!(
                    "Backend '{}' trusts the authorization servers {:?}, not {} of profile '{}': \
                     its metadata is not used",
                    t.backend,
                    m.authorization_servers,
                    issuer.as_deref().unwrap_or_default(),
                    self.profile.name
                );
            }
            usable
        });
        t.remember(metadata.clone());
        metadata
    }

    /// A `401` named the backend's metadata: read it there, in case it says more than what was
    /// known (a resource the tokens must be bound to).
    async fn learn_from_hint(&self, target: usize, hint: &str, tokens: Option<&mut StoredTokens>) {
        let t = &self.targets[target];
        if !matches!(t.setting, Resource::Auto | Resource::Own) {
            return;
        }
        let before = t.known().flatten().map(|m| m.resource);
        let metadata = self.read_metadata(target, Some(hint)).await;
        let after = metadata.map(|m| m.resource);
        if after != before {
            tracing::info!(
                "Backend '{}' names its resource {}: its tokens are bound to it from now on",
                t.backend,
                after.as_deref().unwrap_or("(none)")
            );
        }
        if let (Some(tokens), Some(url)) = (tokens, t.url.as_ref()) {
            tokens.discovered.insert(url.to_string(), after);
        }
    }

    /// Forgets the profile's tokens: revokes the refresh token at the provider when it offers
    /// revocation (RFC 7009), then deletes the cache file. Says what it did.
    pub async fn log_out(&self) -> Result<LoggedOut, AuthError> {
        let mut current = self.current.lock().await;
        let _renewing = self.cache.lock(Duration::from_secs(10)).await;
        let stored = self.cache.load().or_else(|| current.take());
        let Some(stored) = stored else {
            return Ok(LoggedOut::NothingCached);
        };
        let revoked = match &stored.refresh_token {
            None => Revocation::NoRefreshToken,
            Some(refresh_token) => {
                let provider = self.provider(None).await;
                match provider {
                    Err(e) => Revocation::Failed(e.to_string()),
                    Ok(provider) => match provider.revoke(refresh_token).await {
                        Ok(true) => Revocation::Revoked,
                        Ok(false) => Revocation::Unsupported,
                        Err(e) => Revocation::Failed(e.to_string()),
                    },
                }
            }
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
