//! A keeper's loop: connect (logins included), replay the client's log level, read and announce
//! the lists (the gateway's), watch the connection, and connect again when it is lost or failed
//! — in the background with backoff in the gateway, when a request wants it in the drop-in —
//! until shutdown, which ends the backend session.

use std::{sync::Arc, time::Duration};

use rmcp::model::RequestMetaObject;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Keeper, Shared, Status, kept_lists};
use crate::{
    backend::{self, BackendHandler, Origin},
    config::Mode,
    error_text::untrusted,
    lists::Kind,
};

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

impl Keeper {
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
            let spoken = self.spoken.lock().ok().and_then(|s| s.clone());
            let attempt = tokio::select! {
                attempt = backend::connect(&self.backend, http.clone(), self.access.clone(), handler, spoken.as_ref()) => attempt,
                () = shutdown.cancelled() => return,
            };
            match attempt {
                Ok((mut link, connection)) => {
                    if let (Some(info), Ok(mut spoken)) = (connection.info(), self.spoken.lock()) {
                        *spoken = Some(info.protocol_version.clone());
                    }
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
