//! The end of a session: every task the proxy starts for it is owned by one [`Closer`], which
//! stops them all and lets each close its backend session within [`CLOSE_DEADLINE`].

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long closing may take, all backends together: each ends its session with an HTTP
/// `DELETE` at the same time, and a task still running then is stopped.
///
/// Short, because a desktop client does not wait long: the stdio client of the MCP TypeScript
/// SDK, which many desktop clients use, closes stdin, sends SIGTERM 2 s later and SIGKILL 2 s
/// after that. 1.5 s lets a reachable backend answer its `DELETE` (one request with the token
/// already in hand: no login, no refresh) and the proxy exit on its own before the next signal.
/// A backend that takes longer is unwell; its session expires on the server's own timer.
pub const CLOSE_DEADLINE: Duration = Duration::from_millis(1500);

/// Owns the background tasks of one stdio session — logins, backend connections and the
/// keepers of the gateway's backends — and stops them at its end.
///
/// A task learns that closing has begun from [`Closer::token`]; one that holds a backend
/// session closes it then (rmcp's Streamable HTTP transport sends the `DELETE`). Clones share
/// the same tasks.
#[derive(Clone, Default)]
pub struct Closer {
    token: CancellationToken,
    /// Taken by [`Closer::close`]; a task spawned after that is not started.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Closer {
    /// A closer with no tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when closing begins.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Runs `task` in the background until it ends, or until closing stops it: it should
    /// watch [`Closer::token`] and end soon after, or it is aborted at the deadline. Once
    /// closing has begun, `task` is dropped without being started.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // The lock makes "not closing yet" and "spawned into the set `close` will wait for"
        // one step: a task cannot slip in after `close` took the set.
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if self.token.is_cancelled() {
            return;
        }
        // Forget the tasks that have ended (a keeper may start one per connection attempt).
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Stops every task and waits for them to end, up to [`CLOSE_DEADLINE`]; those still
    /// running then are aborted. Closing again does nothing more.
    pub async fn close(self) {
        let mut tasks = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            self.token.cancel();
            std::mem::take(&mut *tasks)
        };
        let all = async {
            while let Some(ended) = tasks.join_next().await {
                if let Err(e) = ended
                    && e.is_panic()
                {
                    tracing::error!("A background task failed while closing: {e}");
                }
            }
        };
        if tokio::time::timeout(CLOSE_DEADLINE, all).await.is_err() {
            tracing::warn!(
                "Stopped {} background task(s) that were still closing after {:.1} s (a backend \
                 that does not answer its DELETE?)",
                tasks.len(),
                CLOSE_DEADLINE.as_secs_f64()
            );
            tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_waits_for_tasks_that_watch_the_token() {
        let closer = Closer::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let token = closer.token().clone();
        closer.spawn(async move {
            token.cancelled().await;
            let _ = done_tx.send(());
        });
        closer.clone().close().await;
        assert!(done_rx.await.is_ok());
    }

    #[tokio::test]
    async fn a_task_that_ignores_closing_is_aborted_at_the_deadline() {
        let closer = Closer::new();
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        closer.spawn(async move {
            let _dropped = dropped_tx;
            let _ = never.await;
        });
        let started = tokio::time::Instant::now();
        closer.close().await;
        let took = started.elapsed();
        assert!(
            took >= CLOSE_DEADLINE && took < CLOSE_DEADLINE + Duration::from_secs(1),
            "{took:?}"
        );
        // Aborted: its sender was dropped without sending.
        assert!(dropped_rx.await.is_err());
    }

    #[tokio::test]
    async fn nothing_starts_once_closing_has_begun() {
        let closer = Closer::new();
        closer.clone().close().await;
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        closer.spawn(async move {
            let _ = started_tx.send(());
        });
        assert!(started_rx.await.is_err());
    }
}
