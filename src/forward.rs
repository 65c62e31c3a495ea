//! Carrying one request across the proxy, in either direction: its `_meta`, its progress
//! notifications and its cancellation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    Peer, ServiceError,
    model::{
        CancelledNotification, CancelledNotificationParam, GetMeta, ProgressNotificationParam,
        ProgressToken, RequestId, RequestMetaObject,
    },
    service::{PeerRequestOptions, ServiceRole},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use rmcp::transport::streamable_http_client::StreamableHttpError;

use crate::{auth::AuthError, error_text, request_error::RequestError};

/// rmcp gives every outgoing request a progress token of its own; this maps those tokens back
/// to the ones the original sender chose, for as long as the request runs. Every progress
/// notification also counts as a sign of life for the request's timeout.
#[derive(Clone, Default)]
pub struct ProgressMap(Arc<Mutex<HashMap<ProgressToken, Running>>>);

struct Running {
    /// The request on our side of the hop, whose answer ends it.
    request: RequestId,
    /// The original sender's token; `None` when it asked for no progress.
    theirs: Option<ProgressToken>,
    alive: Arc<Notify>,
}

/// Removes a mapping when its request ends.
pub struct ProgressGuard {
    map: ProgressMap,
    token: ProgressToken,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.0.lock() {
            map.remove(&self.token);
        }
    }
}

impl ProgressMap {
    fn register(
        &self,
        ours: ProgressToken,
        request: RequestId,
        theirs: Option<ProgressToken>,
        alive: Arc<Notify>,
    ) -> ProgressGuard {
        if let Ok(mut map) = self.0.lock() {
            map.insert(
                ours.clone(),
                Running {
                    request,
                    theirs,
                    alive,
                },
            );
        }
        ProgressGuard {
            map: self.clone(),
            token: ours,
        }
    }

    /// Forgets the mapping of `request` as soon as its answer arrives, before the answer is
    /// passed on: progress that a peer sends after its answer must not reach a client that has
    /// already seen the request finish (Cursor drops the connection over it).
    pub fn finish(&self, request: &RequestId) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|_, running| running.request != *request);
        }
    }

    /// Rewrites a progress notification to the original sender's token; `None` when the
    /// original sender asked for no progress (or the request has ended).
    pub fn translate(
        &self,
        mut params: ProgressNotificationParam,
    ) -> Option<ProgressNotificationParam> {
        let map = self.0.lock().ok()?;
        let running = map.get(&params.progress_token)?;
        running.alive.notify_one();
        params.progress_token = running.theirs.clone()?;
        Some(params)
    }
}

/// Sends `request` to `peer` with the original `_meta`, relays progress through `progress`, and
/// cancels it at `peer` when `cancelled` fires (the original sender gave up) or when `timeout`
/// passes without an answer or a progress notification.
pub async fn forward<R: ServiceRole>(
    peer: &Peer<R>,
    mut request: R::Req,
    meta: RequestMetaObject,
    cancelled: &CancellationToken,
    progress: &ProgressMap,
    timeout: Option<Duration>,
) -> Result<R::PeerResp, ServiceError> {
    let wanted = meta.get_progress_token();
    *request.get_meta_mut() = meta;
    let handle = peer
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await?;
    let alive = Arc::new(Notify::new());
    let id = handle.id.clone();
    let _progress = progress.register(
        handle.progress_token.clone(),
        id.clone(),
        wanted,
        Arc::clone(&alive),
    );
    let response = handle.await_response();
    tokio::pin!(response);
    let reason = loop {
        let quiet = async {
            match timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            response = &mut response => return response,
            () = alive.notified() => continue,
            () = cancelled.cancelled() => break "cancelled by the client",
            () = quiet => break "timed out",
        }
    };
    let notice = CancelledNotification::new(CancelledNotificationParam::new(
        Some(id),
        Some(reason.into()),
    ));
    let _ = peer.send_notification(notice.into()).await;
    match (reason, timeout) {
        ("timed out", Some(timeout)) => Err(ServiceError::Timeout { timeout }),
        _ => Err(ServiceError::Cancelled {
            reason: Some(reason.into()),
        }),
    }
}

/// The login problem behind a failed request, if that is what it was.
pub fn find_auth_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AuthError> {
    error_text::find::<AuthError>(error)
}

/// Why a request to a backend failed, in the HTTP layer's words ("connection refused", "HTTP
/// 503") rather than through rmcp's wrapper types; one line, and never the whole of a body the
/// backend sent.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let http = error_text::find::<StreamableHttpError<reqwest::Error>>(error);
    let text = match http {
        // The reqwest error is not exposed as a source; its own chain says what happened.
        Some(StreamableHttpError::Client(reqwest)) => error_text::chain(reqwest),
        Some(StreamableHttpError::UnexpectedServerResponse(response)) => {
            if response.starts_with("could not parse JSON response") {
                "its answer is not JSON-RPC (not JSON)".to_owned()
            } else {
                response.to_string()
            }
        }
        Some(other) => error_text::chain(other),
        None => error_text::chain(error),
    };
    error_text::one_line(&text, 300)
}

/// What the client sees when a request to `backend` failed. JSON-RPC errors from the backend
/// pass through unchanged; transport and login failures become a message that names the backend
/// and says what happened.
pub fn client_error(backend: &str, error: ServiceError) -> RequestError {
    let backend = backend.to_owned();
    match error {
        ServiceError::McpError(e) => RequestError::Backend(e),
        ServiceError::Timeout { timeout } => RequestError::TimedOut { backend, timeout },
        other => match find_auth_error(&other) {
            Some(auth) => RequestError::Unauthenticated {
                backend,
                reason: auth.to_string(),
            },
            None => RequestError::Unavailable {
                backend,
                reason: describe(&other),
            },
        },
    }
}
