//! One keeper per backend, in either mode: its connection made in the background (concurrently
//! with the others, logins included), watched while up, made again when it is lost or failed;
//! the client's log level replayed to it; and — in the gateway — its lists, read whole when it
//! connects and again when it says they changed, then announced to the client.
//!
//! What differs by [`Mode`]: the gateway retries a failed backend in the background with
//! backoff (a login that failed waits for a request, so no browser tab opens on a timer), reads
//! the lists itself and shows the backend under its names; the drop-in retries only when a
//! request wants the backend, and passes its lists and notifications through as they are.
//!
//! This module holds the keeper's state and what the server asks of it (the connection, waits
//! for it, what the backend said of itself); `connecting.rs` its loop; `kept_lists.rs` its
//! lists, fresh or [remembered](crate::remembered).

mod connecting;
mod kept_lists;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::model::{ClientConfig, ClientRequest, ProtocolVersion, ServerPeerInfo};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Access,
    backend::{Connection, ProgressMaps},
    config::{self, Mode},
    lists::Lists,
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
    /// The revision of MCP the backend spoke when last connected (in this run, or remembered):
    /// the next connection starts with it.
    spoken: Mutex<Option<ProtocolVersion>>,
    /// Shared by all keepers: counts every change of any keeper's lists or status, so the merged
    /// lists know when to merge again.
    version: Arc<AtomicU64>,
}

/// What every keeper's keeper shares with the gateway.
pub struct Shared {
    /// The stdio client, in the era it speaks.
    pub downstream: Arc<crate::downstream::Client>,
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
            spoken: Mutex::new(
                recalled
                    .as_ref()
                    .and_then(|r| r.introduction.as_ref())
                    .map(|i| i.protocol_version.clone()),
            ),
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

    /// Whether it remembers its list of `kind` from the last run (a list it never read there
    /// is unknown, not empty).
    pub fn recalls_list(&self, kind: crate::lists::Kind) -> bool {
        self.recalled
            .lock()
            .is_ok_and(|r| r.as_ref().is_some_and(|r| r.lists.read(kind).is_some()))
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
}
