//! One keeper per backend, in either mode: its connection made in the background (concurrently
//! with the others, logins included), watched while up, made again when it is lost or failed;
//! the client's log level replayed to it; and — in the gateway — its lists, read whole when it
//! connects and again when it says they changed, then announced to the client.
//!
//! What differs by [`Mode`]: the gateway retries a failed backend in the background with
//! backoff (a login that failed waits for a request, so no browser tab opens on a timer), reads
//! the lists itself and shows the backend under its names; the drop-in retries only when a
//! request wants the backend, and passes its lists and notifications through as they are.

mod kept_lists;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    Peer, RoleServer,
    model::{ClientConfig, ClientRequest, RequestMetaObject, ServerPeerInfo},
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Access,
    backend::{self, BackendHandler, Connection, Origin, ProgressMaps},
    config::{self, Mode},
    error_text::untrusted,
    lists::{Kind, Lists},
    naming::Naming,
    remembered::{Memory, Remembered},
    request_error::RequestError,
};

/// Where a backend stands.
#[derive(Clone)]
pub(super) enum Status {
    /// Not tried yet, connecting, or waiting for its user to log in.
    Connecting,
    /// Connected.
    Ready(Connection),
    /// The last attempt failed, or the connection ended; retried in the background.
    Down(String),
}

/// A backend and its live state.
pub struct Keeper {
    /// The configured backend.
    pub backend: config::Backend,
    /// How the server serves it.
    mode: Mode,
    /// How its names are exposed.
    pub naming: Naming,
    /// Its progress-token maps, both directions.
    pub progress: ProgressMaps,
    access: Option<Access>,
    status: watch::Sender<Status>,
    /// Its first connection attempt is over: it failed, or the backend is connected and its
    /// lists are read. The first list a client asks for waits for this.
    settled: watch::Sender<bool>,
    /// Wakes a keeper that waits for a request before it tries again (after a failed login,
    /// and in the drop-in after any failure).
    retry_login: tokio::sync::Notify,
    lists: Mutex<Lists>,
    /// Where its lists and introduction are remembered between runs, if they are.
    memory: Option<Memory>,
    /// What it was the last time it was connected (from `memory`): served until its fresh lists
    /// are read.
    recalled: Mutex<Option<Recalled>>,
    /// One read of the lists at a time, so that an older read never overwrites a newer one.
    reading: tokio::sync::Mutex<()>,
    /// Shared by all keepers: counts every change of any keeper's lists or status, so the merged
    /// lists know when to merge again.
    version: Arc<AtomicU64>,
}

/// What every keeper's keeper shares with the gateway.
pub struct Shared {
    /// The stdio client.
    pub downstream: Peer<RoleServer>,
    /// Introduction sent to each backend: the client's own capabilities.
    pub info: ClientConfig,
    /// The last `logging/setLevel` the client sent, replayed to backends that connect later.
    pub log_level: std::sync::Mutex<Option<ClientRequest>>,
    /// Set once `initialize` has been answered: from then on, a backend that comes or goes,
    /// or changes its lists, is announced with `list_changed`.
    pub announce: std::sync::atomic::AtomicBool,
    /// Per kind: the client has been sent its first list. A backend's first lists are
    /// announced only for these kinds: the first list waits for every backend, so it has
    /// them all, and a gateway of many backends that starts would otherwise send a burst of
    /// `list_changed` right after `initialize`.
    pub listed: [std::sync::atomic::AtomicBool; 4],
    /// Held while a keeper publishes a new connection, and while `initialize` decides whether
    /// to answer before it: the two never miss each other (an `initialize` answered before the
    /// backend was there always hears of it).
    pub publishing: std::sync::Mutex<()>,
}

/// A backend as remembered from an earlier run.
struct Recalled {
    introduction: Option<Arc<ServerPeerInfo>>,
    lists: Lists,
    remembered: Remembered,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

impl Keeper {
    /// A keeper for `backend`, named by `naming`, authorized through `access` when it has an OIDC profile;
    /// `version` counts changes across all keepers. With a `memory`, what it remembers is served
    /// until the backend's fresh lists are read.
    pub fn new(
        backend: config::Backend,
        mode: Mode,
        naming: Naming,
        access: Option<Access>,
        version: Arc<AtomicU64>,
        memory: Option<Memory>,
    ) -> Self {
        let recalled = memory.as_ref().and_then(Memory::recall).map(|remembered| {
            tracing::debug!(
                "Serving the lists backend '{}' had last time until it is connected",
                backend.name
            );
            Recalled {
                introduction: remembered.introduction.clone().map(Arc::new),
                lists: remembered.lists(),
                remembered,
            }
        });
        Self {
            backend,
            mode,
            naming,
            progress: ProgressMaps::default(),
            access,
            status: watch::Sender::new(Status::Connecting),
            settled: watch::Sender::new(false),
            retry_login: tokio::sync::Notify::new(),
            lists: Mutex::default(),
            memory,
            recalled: Mutex::new(recalled),
            reading: tokio::sync::Mutex::new(()),
            version,
        }
    }

    /// A request wanted this backend while it was down: if it is waiting after a failed
    /// login, try again now (the user is evidently there to log in).
    pub fn wake(&self) {
        self.retry_login.notify_one();
    }

    /// Waits for a request that wants the backend ([`Keeper::wake`]), then marks it connecting;
    /// `false` when `shutdown` came first.
    async fn wait_for_a_request(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = self.retry_login.notified() => {}
            () = shutdown.cancelled() => return false,
        }
        self.set(Status::Connecting);
        true
    }

    /// The drop-in's way to its backend: a failed connection is tried again first (a person
    /// may be back to log in), then the connection, waiting up to `limit` while it is being
    /// made.
    pub async fn connection_within(
        &self,
        limit: Option<Duration>,
    ) -> Result<Connection, RequestError> {
        let retry = self.status.send_if_modified(|status| {
            let down = matches!(status, Status::Down(_));
            if down {
                *status = Status::Connecting;
            }
            down
        });
        if retry {
            self.wake();
        }
        let mut status = self.status.subscribe();
        let settled = status.wait_for(|s| !matches!(s, Status::Connecting));
        let _ = match limit {
            Some(limit) => tokio::time::timeout(limit, settled).await.ok(),
            None => Some(settled.await),
        };
        let outcome = status.borrow().clone();
        match outcome {
            Status::Ready(connection) => Ok(connection),
            Status::Down(reason) => Err(RequestError::NotConnected(reason)),
            Status::Connecting => Err(RequestError::Unavailable {
                backend: self.backend.name.clone(),
                reason: match &self.backend.profile {
                    Some(p) => format!("still {}", p.waiting_for()),
                    None => "still connecting".into(),
                },
            }),
        }
    }

    /// The connection once the backend is connected, waiting up to `limit` (`None`: as long as
    /// it takes) while it connects or its user signs in; or why there is none.
    pub async fn connection_when_ready(
        &self,
        limit: Option<Duration>,
        cancelled: &CancellationToken,
    ) -> Result<Connection, String> {
        let mut status = self.status.subscribe();
        let ready = status.wait_for(|s| !matches!(s, Status::Connecting));
        tokio::select! {
            _ = async {
                match limit {
                    Some(limit) => tokio::time::timeout(limit, ready).await.ok().map(|_| ()),
                    None => ready.await.ok().map(|_| ()),
                }
            } => {}
            () = cancelled.cancelled() => {}
        }
        self.connection()
    }

    /// What the backend said of itself in `initialize`: now if connected, else as remembered.
    pub fn introduction(&self) -> Option<Arc<ServerPeerInfo>> {
        if let Ok(connection) = self.connection() {
            return connection.info();
        }
        self.recalled.lock().ok()?.as_ref()?.introduction.clone()
    }

    /// Whether what the backend was last time is served until its fresh lists are read.
    pub fn recalls(&self) -> bool {
        self.recalled.lock().is_ok_and(|r| r.is_some())
    }

    /// Where the backend stands now.
    pub(super) fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The connection, or why there is none.
    pub fn connection(&self) -> Result<Connection, String> {
        match &*self.status.borrow() {
            Status::Ready(connection) => Ok(connection.clone()),
            Status::Connecting => Err(match &self.backend.profile {
                Some(p) => format!("still connecting, or {}", p.waiting_for()),
                None => "still connecting".into(),
            }),
            Status::Down(reason) => Err(reason.clone()),
        }
    }

    /// Waits until the backend has introduced itself (connected: its capabilities and
    /// instructions are known) or its first connection attempt is over.
    pub async fn introduced(&self) {
        if self.recalls() {
            return;
        }
        let mut status = self.status.subscribe();
        let mut settled = self.settled.subscribe();
        tokio::select! {
            _ = status.wait_for(|s| matches!(s, Status::Ready(_))) => {}
            _ = settled.wait_for(|done| *done) => {}
        }
    }

    /// Waits until the first connection attempt is over (see [`Keeper::is_settled`]).
    pub async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        let _ = settled.wait_for(|done| *done).await;
    }

    /// Waits until the first connection attempt is over, up to `limit` (`None`: as long as it
    /// takes) or until `cancelled`.
    pub async fn settled_within(&self, limit: Option<Duration>, cancelled: &CancellationToken) {
        let settled = async {
            match limit {
                Some(limit) => {
                    let _ = tokio::time::timeout(limit, self.settled()).await;
                }
                None => self.settled().await,
            }
        };
        tokio::select! {
            () = settled => {}
            () = cancelled.cancelled() => {}
        }
    }

    /// Whether the first connection attempt is over: failed, or connected with lists read.
    pub fn is_settled(&self) -> bool {
        *self.settled.borrow()
    }

    fn settle(&self) {
        self.settled
            .send_if_modified(|done| !std::mem::replace(done, true));
    }

    fn set(&self, status: Status) {
        self.status.send_replace(status);
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Keeps the backend connected until `shutdown`, then ends its session (an HTTP `DELETE`);
    /// the gateway's [`Closer`](crate::shutdown::Closer) bounds how long that may take.
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
            let (changes, mut changed) = mpsc::unbounded_channel();
            let mut handler = BackendHandler::new(
                &self.backend.name,
                shared.info.clone(),
                shared.downstream.clone(),
                self.progress.clone(),
            );
            // The drop-in passes the backend's names and `list_changed` through as they are.
            if self.mode == Mode::Gateway {
                handler = handler
                    .with_naming(self.naming.clone())
                    .with_list_changes(changes);
            }
            let attempt = tokio::select! {
                attempt = backend::connect(&self.backend, http.clone(), self.access.clone(), handler) => attempt,
                () = shutdown.cancelled() => return,
            };
            match attempt {
                Ok((mut link, connection)) => {
                    failures = 0;
                    last_failure.clear();
                    let level = shared.log_level.lock().ok().and_then(|l| l.clone());
                    if let Some(level) = level
                        && let Err(e) = connection
                            .send(
                                level,
                                RequestMetaObject::default(),
                                &shutdown,
                                Origin::Proxy,
                            )
                            .await
                    {
                        tracing::debug!(
                            "Backend '{}' refused the log level: {}",
                            self.backend.name,
                            e
                        );
                    }
                    {
                        let _publishing = shared.publishing.lock();
                        self.set(Status::Ready(connection.clone()));
                    }
                    if self.mode == Mode::Gateway {
                        self.read_lists(&connection, &Kind::ALL, &shutdown).await;
                    }
                    // The first list answers wait for these lists: they have them.
                    let first = !self.is_settled();
                    let changed_since_last_run = match self.mode {
                        Mode::Gateway => self.take_recalled(),
                        // Every list is announced below, as after a provisional answer.
                        Mode::DropIn => {
                            self.drop_recalled();
                            None
                        }
                    };
                    self.settle();
                    match self.mode {
                        Mode::Gateway => tracing::info!(
                            "Backend '{}' is ready: {}",
                            self.backend.name,
                            self.counts()
                        ),
                        Mode::DropIn => tracing::info!(
                            "Connected to backend '{}' ({})",
                            self.backend.name,
                            connection
                                .info()
                                .and_then(|info| info
                                    .server_info
                                    .as_ref()
                                    .map(|s| untrusted(&s.name)))
                                .unwrap_or_else(|| "unnamed server".into())
                        ),
                    }
                    match changed_since_last_run {
                        // The client may have the remembered lists: only what changed is news.
                        Some(kinds) => kept_lists::announce(&shared, &kinds, false).await,
                        None => kept_lists::announce(&shared, &Kind::ALL, first).await,
                    }
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                if let Err(e) = link.close().await {
                                    let name = &self.backend.name;
                                    tracing::debug!("Closing backend '{name}': {e}");
                                }
                                return;
                            }
                            Some(first) = changed.recv() => {
                                // Several notifications in a row are one read.
                                let mut kinds = Vec::new();
                                let mut next = Some(first);
                                while let Some(changed_list) = next {
                                    for kind in kept_lists::kinds_of(changed_list) {
                                        if !kinds.contains(kind) {
                                            kinds.push(*kind);
                                        }
                                    }
                                    next = changed.try_recv().ok();
                                }
                                self.read_lists(&connection, &kinds, &shutdown).await;
                                tracing::debug!(
                                    "Backend '{}' changed its lists: {}",
                                    self.backend.name,
                                    self.counts()
                                );
                                kept_lists::announce(&shared, &kinds, false).await;
                            }
                            () = tokio::time::sleep(WATCH_INTERVAL) => {
                                if link.is_closed() || connection.is_closed() {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!(
                        "Backend '{}' closed its connection; reconnecting",
                        self.backend.name
                    );
                    self.forget_lists();
                    self.set(Status::Down(
                        "the connection to the backend was lost".into(),
                    ));
                    kept_lists::announce(&shared, &Kind::ALL, false).await;
                    if self.mode == Mode::DropIn {
                        // Connected again when a request wants it.
                        if !self.wait_for_a_request(&shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
                Err(e) if self.mode == Mode::DropIn || e.login_failed() => {
                    // The drop-in tries again when a request wants the backend, as at first;
                    // a failed login too, so that no browser tab opens on a timer.
                    let reason = if self.mode == Mode::DropIn {
                        tracing::error!("{e}");
                        e.to_string()
                    } else {
                        tracing::warn!("{e}");
                        format!("{e}; use one of its tools again to retry the login")
                    };
                    self.set(Status::Down(reason));
                    self.settle();
                    if !self.wait_for_a_request(&shutdown).await {
                        return;
                    }
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
                    self.settle();
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
