//! One slot per backend: its connection kept alive in the background — connected
//! concurrently with the others, retried with backoff while down, watched while up.

use std::{sync::Arc, time::Duration};

use rmcp::{
    Peer, RoleClient, RoleServer,
    model::{ClientConfig, ClientRequest},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::TokenManager,
    backend::{self, BackendHandler, ProgressMaps},
    config,
    naming::Naming,
};

/// Where a backend stands.
#[derive(Clone)]
pub enum Status {
    /// Not tried yet, connecting, or waiting for its user to log in.
    Connecting,
    /// Connected.
    Ready(Peer<RoleClient>),
    /// The last attempt failed, or the connection ended; retried in the background.
    Down(String),
}

/// A backend and its live state.
pub struct Slot {
    /// The configured backend.
    pub backend: config::Backend,
    /// How its names are exposed.
    pub naming: Naming,
    /// Its progress-token maps, both directions.
    pub progress: ProgressMaps,
    tokens: Option<Arc<TokenManager>>,
    status: watch::Sender<Status>,
    /// Wakes a keeper that stopped retrying after a failed browser login.
    retry_login: tokio::sync::Notify,
}

/// What every slot's keeper shares with the gateway.
pub struct Shared {
    /// The stdio client.
    pub downstream: Peer<RoleServer>,
    /// Introduction sent to each backend: the client's own capabilities.
    pub info: ClientConfig,
    /// The last `logging/setLevel` the client sent, replayed to backends that connect later.
    pub log_level: std::sync::Mutex<Option<ClientRequest>>,
    /// Set once `initialize` has been answered: from then on, a backend that comes or goes
    /// is announced with `list_changed`.
    pub announce: std::sync::atomic::AtomicBool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Slot {
    /// A slot for `backend`, using `tokens` when it has an OIDC profile.
    pub fn new(
        backend: config::Backend,
        separator: &'static str,
        tokens: Option<Arc<TokenManager>>,
    ) -> Self {
        let naming = Naming {
            backend: backend.name.clone(),
            prefix: backend.prefix.clone(),
            separator,
        };
        Self {
            backend,
            naming,
            progress: ProgressMaps::default(),
            tokens,
            status: watch::Sender::new(Status::Connecting),
            retry_login: tokio::sync::Notify::new(),
        }
    }

    /// A request wanted this backend while it was down: if it is waiting after a failed
    /// login, try again now (the user is evidently there to log in).
    pub fn wake(&self) {
        self.retry_login.notify_one();
    }

    /// The connection, or why there is none.
    pub fn peer(&self) -> Result<Peer<RoleClient>, String> {
        match &*self.status.borrow() {
            Status::Ready(peer) => Ok(peer.clone()),
            Status::Connecting => Err(match &self.backend.profile {
                Some(p) => format!(
                    "still connecting, or waiting for you to log in to {} in the browser",
                    p.issuer_url
                ),
                None => "still connecting".into(),
            }),
            Status::Down(reason) => Err(reason.clone()),
        }
    }

    /// Waits until the first connection attempt has ended, either way.
    pub async fn settled(&self) {
        let mut status = self.status.subscribe();
        let _ = status.wait_for(|s| !matches!(s, Status::Connecting)).await;
    }

    fn set(&self, status: Status) {
        self.status.send_replace(status);
    }

    /// Keeps the backend connected until `shutdown`.
    pub async fn keep(
        self: Arc<Self>,
        http: reqwest::Client,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        // A backend that stays down is reported once, not at every retry.
        let mut last_failure = String::new();
        loop {
            let handler = BackendHandler::new(
                &self.backend.name,
                shared.info.clone(),
                shared.downstream.clone(),
                self.progress.clone(),
            )
            .with_naming(self.naming.clone());
            let attempt = tokio::select! {
                attempt = backend::connect(&self.backend, http.clone(), self.tokens.clone(), handler) => attempt,
                () = shutdown.cancelled() => return,
            };
            match attempt {
                Ok(mut link) => {
                    failures = 0;
                    last_failure.clear();
                    let level = shared.log_level.lock().ok().and_then(|l| l.clone());
                    if let Some(level) = level
                        && let Err(e) = link.peer().send_request(level).await
                    {
                        tracing::debug!(
                            "Backend '{}' refused the log level: {e}",
                            self.backend.name
                        );
                    }
                    tracing::info!("Backend '{}' is ready", self.backend.name);
                    self.set(Status::Ready(link.peer().clone()));
                    announce(&shared).await;
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                let _ = link.close_with_timeout(CLOSE_TIMEOUT).await;
                                return;
                            }
                            () = tokio::time::sleep(WATCH_INTERVAL) => {
                                if link.is_closed() || link.peer().is_transport_closed() {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!(
                        "Backend '{}' closed its connection; reconnecting",
                        self.backend.name
                    );
                    self.set(Status::Down(
                        "the connection to the backend was lost".into(),
                    ));
                    announce(&shared).await;
                }
                Err(e) if e.login_failed => {
                    // No browser tabs on a timer: the next request for this backend retries.
                    tracing::warn!("{e}");
                    self.set(Status::Down(format!(
                        "{e}; use one of its tools again to retry the login"
                    )));
                    tokio::select! {
                        () = self.retry_login.notified() => {}
                        () = shutdown.cancelled() => return,
                    }
                    self.set(Status::Connecting);
                    continue;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let reason = e.to_string();
                    if reason == last_failure {
                        tracing::debug!("{reason} (attempt {failures})");
                    } else {
                        tracing::warn!("{reason}; retrying in the background");
                    }
                    self.set(Status::Down(reason.clone()));
                    last_failure = reason;
                }
            }
            let backoff = with_jitter(Duration::from_secs(1 << failures.min(5)).min(MAX_BACKOFF));
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// `delay` shortened by a random part of up to a half, so that gateways started together (one
/// per desktop client, say) do not all knock on a recovering backend at the same moment.
fn with_jitter(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh SipHash key per call is random enough for spreading retries.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random % 1000) as f64 / 2000.0;
    delay.mul_f64(1.0 - fraction)
}

/// Tells the client that the set of tools, prompts and resources changed.
async fn announce(shared: &Shared) {
    if !shared.announce.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let client = &shared.downstream;
    let _ = client.notify_tool_list_changed().await;
    let _ = client.notify_prompt_list_changed().await;
    let _ = client.notify_resource_list_changed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_retries_over_the_second_half_of_the_delay() {
        let delay = Duration::from_secs(8);
        let spread: Vec<Duration> = (0..200).map(|_| with_jitter(delay)).collect();
        assert!(spread.iter().all(|d| *d > delay / 2 && *d <= delay));
        let distinct: std::collections::HashSet<_> = spread.iter().collect();
        assert!(
            distinct.len() > 100,
            "only {} distinct delays",
            distinct.len()
        );
    }
}
