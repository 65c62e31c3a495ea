//! Getting and keeping a valid access token for one OIDC profile: cache, refresh, browser login.

pub mod browser;
pub mod cache;
pub mod callback;
pub mod oidc;
mod provider_http;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Mutex, OnceCell};

use crate::{config::Profile, secret::Secret};
use browser::Browser;
use cache::{StoredTokens, TokenCache, unix_now};
use oidc::{Provider, RefreshError};

/// A cached access token is used while it has more than this many seconds left.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// Pauses before retrying a refresh the provider could not serve.
const REFRESH_RETRIES: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1500)];

/// Why no token could be had. Messages never contain a token, code or secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The issuer's discovery document could not be read.
    #[error(
        "OIDC discovery failed for issuer {issuer}: {reason} (check OIDC_ISSUER_URL / issuer_url)"
    )]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// The discovery document was read, but the provider's signing keys were not.
    #[error(
        "cannot read the signing keys of {issuer} at {jwks_uri}: {reason} (the issuer URL is \
         right; the provider's key set is failing, ask its administrators)"
    )]
    Keys {
        /// The configured issuer.
        issuer: String,
        /// The key set URL from the discovery document.
        jwks_uri: String,
        /// What went wrong.
        reason: String,
    },
    /// Nobody completed the browser login in time.
    #[error(
        "login timed out after {seconds} s: no browser login was completed; retry the request \
         and finish the login in the browser (the URL is printed on stderr)"
    )]
    LoginTimeout {
        /// The configured timeout.
        seconds: u64,
    },
    /// The identity provider refused the login (the user denied access, say).
    #[error("login refused by the identity provider: {error}{}", if description.is_empty() { String::new() } else { format!(" ({description})") })]
    Denied {
        /// OAuth error code, e.g. `access_denied`.
        error: String,
        /// Provider's description.
        description: String,
    },
    /// The redirect URL's port is taken by another program.
    #[error(
        "cannot receive the login callback: port {port} is already in use (redirect URL \
         {redirect_url}); stop the program using it, or set OIDC_REDIRECT_URL / redirect_url to \
         another port that is registered with your identity provider"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The configured redirect URL.
        redirect_url: String,
    },
    /// The callback server failed otherwise.
    #[error("login callback failed: {0}")]
    Callback(String),
    /// The token endpoint refused or failed.
    #[error("token request failed: {0}")]
    TokenEndpoint(String),
    /// The ID token did not validate.
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// The provider's discovery document names endpoints the proxy will not use.
    #[error("identity provider {issuer} cannot be trusted with a login: {reason}")]
    UnsafeProvider {
        /// The configured issuer.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// The server refused tokens fresh from a login: another login would not help.
    #[error(
        "the server rejects the tokens of {issuer} although they come from a login {seconds_ago} \
         s ago: it probably expects another audience or other scopes (check what it requires, \
         and OIDC_SCOPES / scopes); no new browser login for {wait} s"
    )]
    TokensRejected {
        /// The profile's issuer.
        issuer: String,
        /// How long ago the login was.
        seconds_ago: u64,
        /// Seconds until a new login may start.
        wait: u64,
    },
    /// The token cache directory is not safe to keep tokens in.
    #[error("{0}")]
    Cache(String),
    /// The authorization response came from another issuer (RFC 9207), or lacked the `iss`
    /// its provider promises.
    #[error("login refused: {0} (a mix-up of identity providers, or an attack); try again")]
    WrongIssuer(String),
}

/// Hands out access tokens for one profile, renewing them at most once at a time.
pub struct TokenManager {
    profile: Arc<Profile>,
    cache: TokenCache,
    http: reqwest::Client,
    browser: Arc<dyn Browser>,
    login_gate: Arc<Mutex<()>>,
    provider: OnceCell<Provider>,
    /// Held across a renewal, so concurrent requests wait for one refresh or login.
    current: Mutex<Option<StoredTokens>>,
    /// Renewals finished so far, and the last one that failed: requests that waited for a
    /// renewal share its outcome, so one refused login never opens a second browser tab.
    renewals: AtomicU64,
    last_failure: std::sync::Mutex<Option<(u64, AuthError)>>,
    /// When the last browser login finished: a backend that rejects the tokens of so fresh a
    /// login gets no new one before `login_timeout` has passed (no tab after tab).
    last_login: std::sync::Mutex<Option<std::time::Instant>>,
}

fn is_fresh(tokens: &StoredTokens) -> bool {
    tokens
        .seconds_left(unix_now())
        .is_none_or(|left| left > REFRESH_MARGIN_SECS)
}

impl TokenManager {
    /// A manager for `profile` whose cache file lives in `cache_dir`. `login_gate` is shared by
    /// every profile so that only one browser login runs at a time.
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
            cache,
            http,
            browser,
            login_gate,
            provider: OnceCell::new(),
            current: Mutex::new(None),
            renewals: AtomicU64::new(0),
            last_failure: std::sync::Mutex::new(None),
            last_login: std::sync::Mutex::new(None),
        }
    }

    /// The profile this manager serves.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The token cache file.
    pub fn cache_path(&self) -> &Path {
        self.cache.path()
    }

    /// A valid access token: cached, refreshed, or from a browser login.
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        let seen = self.renewals.load(Ordering::SeqCst);
        let mut current = self.current.lock().await;
        if current.is_none() {
            self.cache.check().map_err(AuthError::Cache)?;
            *current = self.cache.load();
        }
        if let Some(tokens) = current.as_ref().filter(|t| is_fresh(t)) {
            return Ok(tokens.access_token.clone());
        }
        self.renew_once(&mut current, None, seen).await
    }

    /// The access token in hand, if any, without renewing: for best-effort calls such as
    /// closing a session.
    pub fn cached_token(&self) -> Option<Secret> {
        // A renewal in progress holds the lock; waiting for a login here would stall shutdown.
        let current = self.current.try_lock().ok()?;
        current.as_ref().map(|t| t.access_token.clone())
    }

    /// A backend refused `rejected`: returns a newer token, renewing unless another request
    /// already did.
    pub async fn renew_rejected(&self, rejected: &Secret) -> Result<Secret, AuthError> {
        let seen = self.renewals.load(Ordering::SeqCst);
        let mut current = self.current.lock().await;
        if let Some(tokens) = current
            .as_ref()
            .filter(|t| t.access_token != *rejected && is_fresh(t))
        {
            return Ok(tokens.access_token.clone());
        }
        tracing::info!(
            "Backend rejected the access token of profile '{}'; renewing it",
            self.profile.name
        );
        self.renew_once(&mut current, Some(rejected), seen).await
    }

    /// Renews unless a renewal that finished while this caller waited has failed: then that
    /// failure is the answer.
    async fn renew_once(
        &self,
        current: &mut Option<StoredTokens>,
        rejected: Option<&Secret>,
        seen: u64,
    ) -> Result<Secret, AuthError> {
        if let Ok(failure) = self.last_failure.lock()
            && let Some((at, error)) = failure.as_ref()
            && *at > seen
        {
            return Err(error.clone());
        }
        let result = self.renew(current, rejected).await;
        let done = self.renewals.fetch_add(1, Ordering::SeqCst) + 1;
        if let (Err(error), Ok(mut failure)) = (&result, self.last_failure.lock()) {
            *failure = Some((done, error.clone()));
        }
        result
    }

    async fn provider(&self) -> Result<&Provider, AuthError> {
        self.provider
            .get_or_try_init(|| Provider::discover(Arc::clone(&self.profile), self.http.clone()))
            .await
    }

    async fn renew(
        &self,
        current: &mut Option<StoredTokens>,
        rejected: Option<&Secret>,
    ) -> Result<Secret, AuthError> {
        // One renewal at a time across processes too: the others wait, then find its result
        // on disk. The wait covers a browser login in another process.
        let wait = self.profile.login_timeout + Duration::from_secs(30);
        let _renewing = self.cache.lock(wait).await;
        // Another process sharing the cache may have refreshed (and rotated) meanwhile.
        if let Some(on_disk) = self.cache.load()
            && current.as_ref() != Some(&on_disk)
        {
            let usable = is_fresh(&on_disk) && rejected != Some(&on_disk.access_token);
            let token = on_disk.access_token.clone();
            *current = Some(on_disk);
            if usable {
                tracing::debug!(
                    "Using tokens another process stored for '{}'",
                    self.profile.name
                );
                return Ok(token);
            }
        }
        let provider = self.provider().await?;
        if let Some(refresh_token) = current.as_ref().and_then(|t| t.refresh_token.clone()) {
            let mut attempt = 0;
            loop {
                match provider.refresh(&refresh_token).await {
                    Ok(mut tokens) => {
                        if tokens.refresh_token.is_none() {
                            tokens.refresh_token = Some(refresh_token);
                        }
                        tracing::debug!(
                            "Refreshed access token for '{}' ({})",
                            self.profile.name,
                            tokens.access_token
                        );
                        return Ok(self.keep(current, tokens));
                    }
                    Err(RefreshError::Rejected(reason)) => {
                        tracing::info!(
                            "Refresh for profile '{}' was refused ({reason}); logging in again",
                            self.profile.name
                        );
                        break;
                    }
                    // A provider that is briefly down gets a few more tries; the tokens stay,
                    // so the next request can refresh once it is back (no new login).
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
        if rejected.is_some()
            && let Some(ago) = self
                .last_login
                .lock()
                .ok()
                .and_then(|at| at.map(|at| at.elapsed()))
            && ago < self.profile.login_timeout
        {
            return Err(AuthError::TokensRejected {
                issuer: self.profile.issuer_url.clone(),
                seconds_ago: ago.as_secs(),
                wait: (self.profile.login_timeout - ago).as_secs(),
            });
        }
        let tokens = self.login(provider).await?;
        if let Ok(mut at) = self.last_login.lock() {
            *at = Some(std::time::Instant::now());
        }
        Ok(self.keep(current, tokens))
    }

    /// Persists before the new access token is handed out, so a rotated refresh token is never
    /// lost to a crash.
    fn keep(&self, current: &mut Option<StoredTokens>, tokens: StoredTokens) -> Secret {
        if let Err(e) = self.cache.save(&tokens) {
            tracing::warn!(
                "Could not save tokens to {}: {e}; the next start will need a new login",
                self.cache.path().display()
            );
        }
        let token = tokens.access_token.clone();
        *current = Some(tokens);
        token
    }

    async fn login(&self, provider: &Provider) -> Result<StoredTokens, AuthError> {
        let _one_browser_login_at_a_time = self.login_gate.lock().await;
        let login = provider.begin_login()?;
        let server = callback::CallbackServer::start(
            &self.profile.redirect_url,
            login.state.secret(),
            &self.profile.issuer_url,
            provider.sends_iss(),
        )
        .await?;
        let url = login.url.to_string();
        eprintln!(
            "authful-mcp-proxy: log in to {} (profile '{}') in your browser: {url}",
            self.profile.issuer_url, self.profile.name
        );
        let browser = Arc::clone(&self.browser);
        // A blocking thread cannot be cancelled; opening a browser returns soon, and the
        // binary's runtime shutdown does not wait long for it.
        let opened = tokio::task::spawn_blocking(move || browser.open(&url)).await;
        match opened {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("Could not open a browser ({e}); open the URL above"),
            Err(e) => tracing::warn!("Could not open a browser ({e}); open the URL above"),
        }
        let code = server.wait(self.profile.login_timeout).await?;
        let tokens = provider.exchange(code, login).await?;
        tracing::info!(
            "Logged in to {} (profile '{}')",
            self.profile.issuer_url,
            self.profile.name
        );
        Ok(tokens)
    }
}
