//! Carrying one request across the proxy, in either direction: its `_meta`, its progress
//! notifications and its cancellation; and its debug line.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rmcp::{
    Peer, ServiceError,
    model::{
        CancelledNotification, CancelledNotificationParam, GetExtensions, GetMeta,
        NotificationMetaObject, ProgressNotificationParam, ProgressToken, RequestId,
        RequestMetaObject,
    },
    service::{PeerRequestOptions, ServiceRole},
};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Level;

use rmcp::transport::streamable_http_client::StreamableHttpError;

use crate::{auth::AuthError, error_text, request_error::RequestError, shape};

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

/// Puts `meta` (the `_meta` rmcp took out of a notification it received) back on
/// `notification` for the next hop. rmcp leaves an empty `_meta` where it took the original
/// out: a notification that had none goes on without one, as it was sent.
pub fn carry_meta<N>(notification: &mut N, meta: NotificationMetaObject)
where
    N: GetMeta<Metadata = NotificationMetaObject> + GetExtensions,
{
    if meta.is_empty() {
        notification
            .extensions_mut()
            .remove::<NotificationMetaObject>();
    } else {
        *notification.get_meta_mut() = meta;
    }
}

/// The prefix of the `_meta` keys a 2026-07-28 peer describes itself with on each request.
const MODERN_META_PREFIX: &str = "io.modelcontextprotocol/";

/// Which way a request crosses the proxy, as its debug line says it.
#[derive(Debug, Clone, Copy)]
pub enum Hop<'a> {
    /// From the client (or the proxy itself) to the backend of this name.
    ToBackend(&'a str),
    /// From the backend of this name to the client.
    ToClient(&'a str),
}

impl fmt::Display for Hop<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::ToBackend(backend) => write!(f, "to backend '{backend}'"),
            Hop::ToClient(backend) => write!(f, "from backend '{backend}' to the client"),
        }
    }
}

/// Sends `request` to `peer` with the original `_meta`, relays progress through `progress`, and
/// cancels it at `peer` when `cancelled` fires (the original sender gave up) or when `timeout`
/// passes without an answer or a progress notification.
///
/// At debug level it logs one line per request: what it was, its id on this `hop`, how long
/// the answer took and its [`shape`] — never what the messages say.
pub async fn forward<R: ServiceRole>(
    peer: &Peer<R>,
    request: R::Req,
    meta: RequestMetaObject,
    cancelled: &CancellationToken,
    progress: &ProgressMap,
    timeout: Option<Duration>,
    hop: Hop<'_>,
) -> Result<R::PeerResp, ServiceError> {
    // Every relayed request passes here: without debug logging, the line costs one check of
    // the log level — no clock reading, nothing serialized.
    let traced =
        tracing::enabled!(Level::DEBUG).then(|| (shape::Request::of(&request), Instant::now()));
    let (id, outcome) = exchange(peer, request, meta, cancelled, progress, timeout).await;
    if let Some((request, started)) = traced {
        log_exchange(&request, id.as_ref(), hop, started.elapsed(), &outcome);
    }
    outcome
}

/// [`forward`]'s work; the id is the request's on this hop, `None` when it could not be sent.
async fn exchange<R: ServiceRole>(
    peer: &Peer<R>,
    mut request: R::Req,
    meta: RequestMetaObject,
    cancelled: &CancellationToken,
    progress: &ProgressMap,
    timeout: Option<Duration>,
) -> (Option<RequestId>, Result<R::PeerResp, ServiceError>) {
    let wanted = meta.get_progress_token();
    *request.get_meta_mut() = meta;
    // What a 2026-07-28 peer says of itself on each request (its revision, capabilities,
    // identity, log level) is about this hop; rmcp adds the proxy's own where the next hop
    // speaks that revision. Passed on, it would make rmcp take a session of an older revision
    // for one of 2026-07-28 (see docs/protocol-eras.md).
    request
        .get_meta_mut()
        .retain(|key, _| !key.starts_with(MODERN_META_PREFIX));
    let handle = match peer
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
    {
        Ok(handle) => handle,
        Err(e) => return (None, Err(e)),
    };
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
            response = &mut response => return (Some(id), response),
            () = alive.notified() => continue,
            () = cancelled.cancelled() => break "cancelled by the client",
            () = quiet => break "timed out",
        }
    };
    let notice = CancelledNotification::new(CancelledNotificationParam::new(
        Some(id.clone()),
        Some(reason.into()),
    ));
    let _ = peer.send_notification(notice.into()).await;
    let error = match (reason, timeout) {
        ("timed out", Some(timeout)) => ServiceError::Timeout { timeout },
        _ => ServiceError::Cancelled {
            reason: Some(reason.into()),
        },
    };
    (Some(id), Err(error))
}

/// The debug line of one request: `tools/call 'search' #7 to backend 'docs': answered in
/// 12.3 ms: 1 content item (text 1.2 kB), isError false`.
fn log_exchange(
    request: &shape::Request,
    id: Option<&RequestId>,
    hop: Hop<'_>,
    elapsed: Duration,
    outcome: &Result<impl Serialize, ServiceError>,
) {
    let took = shape::duration(elapsed);
    let what = match outcome {
        Ok(result) => format!("answered in {took}: {}", shape::result(result)),
        Err(ServiceError::McpError(error)) => {
            format!("answered in {took}: {}", shape::error(error))
        }
        Err(ServiceError::Timeout { .. }) => {
            format!("no answer in {took} (request_timeout): cancelled there")
        }
        // The reasons are the proxy's own ("cancelled by the client") or rmcp's.
        Err(ServiceError::Cancelled { reason }) => format!(
            "cancelled after {took}: {}",
            error_text::untrusted(reason.as_deref().unwrap_or("no reason given"))
        ),
        // The HTTP layer's words (connection refused, HTTP 503, a login problem): the proxy's
        // diagnosis, where `describe` leaves out the only text rmcp quotes from an answer.
        Err(other) => format!("failed after {took}: {}", describe(other)),
    };
    match id {
        Some(id) => tracing::debug!("{request} #{id} {hop}: {what}"),
        None => tracing::debug!("{request} {hop}: not sent: {what}"),
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
