//! The ways a person signs in, when no refresh token can stand in for them:
//!
//! - **browser** (the default): the authorization URL opens in the system browser — or is only
//!   printed, with `open_browser: false`, for a remote shell — and the loopback
//!   [`super::callback`] server takes the code, which is exchanged with PKCE;
//! - **device** (RFC 8628), for machines without a browser: the person is told a URL and a
//!   code, on stderr and as a log message to the MCP client, and enters the code on any other
//!   device while the proxy polls the provider — as often as it allows (`interval`, five
//!   seconds more at each `slow_down`) and no longer than the code lives (`expires_in`).
//!
//! Both ask for the profile's scopes and for every resource indicator (RFC 8707) its backends
//! need, so that one sign-in serves them all; the access token they return is bound to the
//! resource of the backend that asked.

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast;

use super::{
    AuthError,
    browser::Browser,
    callback,
    oidc::{Granted, Provider, next_poll_interval},
};
use crate::{
    config::Profile,
    error_text::{duration_words, is_safe},
};

/// The longest wait between two polls when the provider cannot be reached.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(60);

/// What a person has to do to sign in, told to whoever listens: stderr always, and the MCP
/// clients of the sessions the profile serves (as log messages).
#[derive(Clone)]
pub struct Notices(broadcast::Sender<String>);

impl Default for Notices {
    fn default() -> Self {
        Self(broadcast::channel(16).0)
    }
}

impl Notices {
    /// Tells `text` to the person.
    pub fn say(&self, text: String) {
        // What a provider put into it (a device code, a URL) must not drive the terminal.
        let text: String = text.chars().filter(|c| is_safe(*c)).collect();
        eprintln!("authful-mcp-proxy: {text}");
        // Nobody listening (no client session yet, or the `login` command) is fine.
        let _ = self.0.send(text);
    }

    /// Listens for what the person is told from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

/// One sign-in: who, at which provider, for what.
pub(super) struct SignIn<'a> {
    pub profile: &'a Profile,
    pub provider: &'a Provider,
    pub browser: &'a Arc<dyn Browser>,
    pub notices: &'a Notices,
    /// The scopes asked for.
    pub scopes: &'a [String],
    /// Every resource indicator the grant is to cover.
    pub resources: &'a [String],
    /// The resource the access token returned is bound to.
    pub resource: Option<&'a str>,
    /// Where the server comes from, when the configuration did not name it: the person
    /// signing in decides whether to trust it.
    pub provenance: Option<&'a str>,
}

impl SignIn<'_> {
    /// ", the server that backend 'a' names ..." for the prompt, or nothing.
    fn provenance(&self) -> String {
        self.provenance
            .map(|p| format!("; {p}"))
            .unwrap_or_default()
    }

    /// A login in the browser: authorization code with PKCE, `state`, `nonce` and RFC 9207's
    /// `iss`.
    pub async fn browser(&self) -> Result<Granted, AuthError> {
        self.provider.client_for_sign_in().await?;
        let login = self.provider.begin_login(self.scopes, self.resources)?;
        let server = callback::CallbackServer::start(
            &self.profile.redirect_url,
            login.state.secret(),
            self.provider.issuer(),
            self.provider.sends_iss(),
        )
        .await?;
        let url = login.url.to_string();
        if self.profile.open_browser {
            eprintln!(
                "authful-mcp-proxy: log in to {} (profile '{}'{}) in your browser: {url}",
                self.provider.issuer(),
                self.profile.name,
                self.provenance()
            );
            let browser = Arc::clone(self.browser);
            let opened_url = url.clone();
            // A blocking thread cannot be cancelled; opening a browser returns soon, and the
            // binary's runtime shutdown does not wait long for it.
            match tokio::task::spawn_blocking(move || browser.open(&opened_url)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("Could not open a browser ({e}); open the URL above"),
                Err(e) => tracing::warn!("Could not open a browser ({e}); open the URL above"),
            }
        } else {
            let notice = format!(
                "to log in to {} (profile '{}'{}), open this URL in a browser on this machine \
                 (it returns to {}): {url}",
                self.provider.issuer(),
                self.profile.name,
                self.provenance(),
                self.profile.redirect_url
            );
            self.notices.say(notice);
            self.show(
                &url,
                format!(
                    "Sign in to {} (profile '{}') on this machine",
                    self.provider.issuer(),
                    self.profile.name
                ),
            )
            .await;
        }
        let code = server.wait(self.profile.login_timeout).await?;
        self.provider.exchange(code, login, self.resource).await
    }

    /// Shows `url` through the client, where it can (see [`Browser::show`]).
    async fn show(&self, url: &str, message: String) {
        let (browser, url) = (Arc::clone(self.browser), url.to_owned());
        let _ = tokio::task::spawn_blocking(move || browser.show(&url, &message)).await;
    }

    /// A device authorization: the person enters a code elsewhere while the proxy polls.
    pub async fn device(&self) -> Result<Granted, AuthError> {
        self.provider.client_for_sign_in().await?;
        let device = self
            .provider
            .start_device(self.scopes, self.resources)
            .await?;
        let lifetime = Duration::from_secs(device.expires_in).min(self.profile.login_timeout);
        let direct = device
            .verification_uri_complete
            .as_deref()
            .map(|complete| format!(" (or open {complete}, which has the code filled in)"))
            .unwrap_or_default();
        self.notices.say(format!(
            "to sign in to {} (profile '{}'{}), open {} on any device and enter the code \
             {}{direct}; waiting {} for it",
            self.provider.issuer(),
            self.profile.name,
            self.provenance(),
            device.verification_uri,
            device.user_code,
            duration_words(lifetime)
        ));
        self.show(
            device
                .verification_uri_complete
                .as_deref()
                .unwrap_or(&device.verification_uri),
            format!(
                "Sign in to {} (profile '{}'): enter the code {} on this page",
                self.provider.issuer(),
                self.profile.name,
                device.user_code
            ),
        )
        .await;
        let now = tokio::time::Instant::now();
        // Checked: the lifetime is bounded by `login_timeout`, but no number a provider sends
        // may panic the process.
        let deadline = now.checked_add(lifetime).unwrap_or(now);
        let mut interval = Duration::from_secs(device.interval.max(1));
        let mut wait = interval;
        let mut failures = 0u32;
        loop {
            if tokio::time::Instant::now()
                .checked_add(wait)
                .is_none_or(|at| at >= deadline)
            {
                tokio::time::sleep_until(deadline).await;
                return Err(AuthError::DeviceExpired {
                    seconds: lifetime.as_secs(),
                });
            }
            tokio::time::sleep(wait).await;
            let error = match self.provider.poll_device(&device, self.resource).await {
                Ok(granted) => return Ok(granted),
                Err(error) => error,
            };
            failures = if error.code().is_none() {
                failures + 1
            } else {
                0
            };
            match error.code() {
                Some("authorization_pending") => wait = interval,
                Some("slow_down") => {
                    interval = next_poll_interval(interval, &error);
                    tracing::debug!(
                        "The provider asks to poll more slowly: every {} s",
                        interval.as_secs()
                    );
                    wait = interval;
                }
                Some("access_denied") => {
                    return Err(AuthError::Denied {
                        error: "access_denied".into(),
                        description: "the sign-in was declined on the device".into(),
                    });
                }
                Some("expired_token") => {
                    return Err(AuthError::DeviceExpired {
                        seconds: lifetime.as_secs(),
                    });
                }
                Some(_) => return Err(AuthError::TokenEndpoint(error.to_string())),
                // A connection the provider closed while it idled in the pool: try again at
                // once on a new one.
                None if failures == 1 => {
                    tracing::debug!("Polling for the device code failed ({error}); once more");
                    wait = Duration::from_millis(200);
                }
                None => {
                    // RFC 8628 §3.5: back off while the provider cannot be reached.
                    wait = interval
                        .saturating_mul(2u32.pow(failures.min(6)))
                        .min(MAX_POLL_BACKOFF);
                    tracing::warn!(
                        "Polling {} for the device code failed ({error}); trying again in {} s",
                        self.provider.issuer(),
                        wait.as_secs()
                    );
                }
            }
        }
    }
}
