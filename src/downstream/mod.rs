//! The stdio client as the backends reach it — what they tell it and what they ask it — in the
//! era the client speaks:
//!
//! - **legacy** (a session opened with `initialize`): notifications are sent as they come, and
//!   a backend's requests (sampling, elicitation, roots) are put to the client as requests.
//! - **modern** (2026-07-28): the client hears only what it asked to hear, on its
//!   `subscriptions/listen` streams ([`subscriptions`]); a server may not send it requests, so
//!   a backend's requests wait for the client's call to carry them back as `input_required`
//!   ([`questions`]).

pub mod questions;
pub mod subscriptions;

use std::sync::Arc;

use rmcp::{
    Peer, RoleServer,
    model::{ClientResult, ErrorData, RequestMetaObject, ServerNotification, ServerRequest},
};
use tokio_util::sync::CancellationToken;

use crate::forward::{Hop, ProgressMap, client_error, forward};
use questions::Questions;
use subscriptions::Subscriptions;

/// Which era of MCP the stdio client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// A session opened with `initialize` (2025-11-25 and before).
    Legacy,
    /// No session: `_meta` on every request (2026-07-28).
    Modern,
}

/// The stdio client, for whatever reaches it from the backends.
pub struct Client {
    peer: Peer<RoleServer>,
    era: Era,
    /// The client's open `subscriptions/listen` streams (modern).
    pub subscriptions: Subscriptions,
    /// The backends' requests waiting for a call to carry them (modern).
    pub questions: Questions,
}

impl Client {
    /// The client behind `peer`, speaking `era`.
    pub fn new(peer: Peer<RoleServer>, era: Era) -> Arc<Self> {
        Arc::new(Self {
            peer,
            era,
            subscriptions: Subscriptions::default(),
            questions: Questions::default(),
        })
    }

    /// The session with the client: progress notifications, tied to a request, go straight to
    /// it in either era.
    pub fn peer(&self) -> &Peer<RoleServer> {
        &self.peer
    }

    /// The era the client speaks.
    pub fn era(&self) -> Era {
        self.era
    }

    /// Tells the client `notification`: a legacy client as it comes, a modern one on each of
    /// its streams that asked for it (and not at all where none did). `true` when it was sent
    /// somewhere.
    pub async fn notify(&self, notification: ServerNotification) -> bool {
        match self.era {
            Era::Legacy => self.peer.send_notification(notification).await.is_ok(),
            Era::Modern => self.subscriptions.deliver(&self.peer, notification).await,
        }
    }

    /// Puts `request`, of backend `backend`, to the client: a legacy client is asked directly;
    /// for a modern one it waits for a call to that backend to carry it (see [`questions`]).
    /// `cancelled`: the backend gave up.
    pub async fn ask(
        &self,
        backend: &str,
        request: ServerRequest,
        meta: RequestMetaObject,
        cancelled: &CancellationToken,
        progress: &ProgressMap,
    ) -> Result<ClientResult, ErrorData> {
        match self.era {
            Era::Legacy => forward(
                &self.peer,
                request,
                meta,
                cancelled,
                progress,
                // Sampling and elicitation wait for a person: no limit but the backend's own.
                None,
                Hop::ToClient(backend),
            )
            .await
            .map_err(|e| client_error("client", e).into()),
            Era::Modern => self.questions.ask(backend, request, cancelled).await,
        }
    }
}
