//! Carrying one request across the proxy, in either direction: its `_meta`, its progress
//! notifications and its cancellation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::{
    Peer, ServiceError,
    model::{
        CancelledNotification, CancelledNotificationParam, ErrorData, GetMeta,
        ProgressNotificationParam, ProgressToken, RequestMetaObject,
    },
    service::{PeerRequestOptions, ServiceRole},
};
use tokio_util::sync::CancellationToken;

use crate::auth::AuthError;

/// rmcp gives every outgoing request a progress token of its own; this maps those tokens back
/// to the ones the original sender chose, for as long as the request runs.
#[derive(Clone, Default)]
pub struct ProgressMap(Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>);

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
    fn register(&self, ours: ProgressToken, theirs: ProgressToken) -> ProgressGuard {
        if let Ok(mut map) = self.0.lock() {
            map.insert(ours.clone(), theirs);
        }
        ProgressGuard {
            map: self.clone(),
            token: ours,
        }
    }

    /// Rewrites a progress notification to the original sender's token; `None` when the
    /// original sender asked for no progress (or the request has ended).
    pub fn translate(
        &self,
        mut params: ProgressNotificationParam,
    ) -> Option<ProgressNotificationParam> {
        let theirs = self.0.lock().ok()?.get(&params.progress_token)?.clone();
        params.progress_token = theirs;
        Some(params)
    }
}

/// Sends `request` to `peer` with the original `_meta`, relays progress through `progress`, and
/// cancels it at `peer` when `cancelled` fires (the original sender gave up).
pub async fn forward<R: ServiceRole>(
    peer: &Peer<R>,
    mut request: R::Req,
    meta: RequestMetaObject,
    cancelled: &CancellationToken,
    progress: &ProgressMap,
) -> Result<R::PeerResp, ServiceError> {
    let wanted = meta.get_progress_token();
    *request.get_meta_mut() = meta;
    let handle = peer
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await?;
    let _progress = wanted.map(|theirs| progress.register(handle.progress_token.clone(), theirs));
    let id = handle.id.clone();
    tokio::select! {
        response = handle.await_response() => response,
        () = cancelled.cancelled() => {
            let notice = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("cancelled by the client".into()),
            ));
            let _ = peer.send_notification(notice.into()).await;
            Err(ServiceError::Cancelled { reason: Some("cancelled by the client".into()) })
        }
    }
}

/// The login problem behind a failed request, if that is what it was.
pub fn find_auth_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AuthError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(auth) = e.downcast_ref::<AuthError>() {
            return Some(auth);
        }
        // rmcp's initialize error does not expose its transport error as a source.
        if let Some(rmcp::service::ClientInitializeError::TransportError { error, .. }) =
            e.downcast_ref::<rmcp::service::ClientInitializeError>()
        {
            return find_auth_error(error);
        }
        // `io::Error::source` skips the wrapped error itself, so look inside.
        if let Some(auth) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<AuthError>())
        {
            return Some(auth);
        }
        current = e.source();
    }
    None
}

/// What the client sees when a request to `backend` failed. JSON-RPC errors from the backend
/// pass through unchanged; transport and login failures become a message that names the backend
/// and says what happened.
pub fn client_error(backend: &str, error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(e) => e,
        other => {
            let message = match find_auth_error(&other) {
                Some(auth) => format!("backend '{backend}': authentication failed: {auth}"),
                None => format!(
                    "backend '{backend}' is unavailable: {}",
                    crate::auth::oidc::chain(&other)
                ),
            };
            ErrorData::internal_error(message, None)
        }
    }
}
