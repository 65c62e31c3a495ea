//! An HTTP+SSE (MCP 2024-11-05) front for the test backend, as servers from before Streamable
//! HTTP have: `GET {path}` opens a session's event stream, whose first event, `endpoint`, names
//! `POST /messages?session_id=N`; each POST (answered `202`) goes to an rmcp server session
//! running the backend's own handler, whose messages come back as `message` events on the
//! stream. `POST {path}` is `405 Method Not Allowed`, as on such servers, so a client that tries
//! Streamable HTTP there first meets what the specification says to fall back on.
//!
//! The routes sit behind the backend's gatekeeper: every GET and POST needs its token.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{get, post},
};
use futures::{StreamExt, channel::mpsc};
use rmcp::{
    ServerHandler, ServiceExt,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The front's state, shared with the test.
#[derive(Default)]
pub struct SseFront {
    sessions: Mutex<HashMap<u64, mpsc::UnboundedSender<ClientJsonRpcMessage>>>,
    next: AtomicU64,
    streams_opened: AtomicU64,
    posts: AtomicU64,
    /// Prefixed to the endpoint: another origin, to see that no client follows it.
    foreign_origin: Mutex<Option<String>>,
    /// Cancelled to end every open stream, as a server restart would.
    end: Mutex<CancellationToken>,
}

impl SseFront {
    /// Event streams opened so far.
    pub fn streams_opened(&self) -> u64 {
        self.streams_opened.load(Ordering::SeqCst)
    }

    /// Messages POSTed so far.
    pub fn posts(&self) -> u64 {
        self.posts.load(Ordering::SeqCst)
    }

    /// From now on, the endpoint event names `origin` (`http://host:port`) instead of this
    /// server.
    pub fn name_foreign_endpoint(&self, origin: &str) {
        *lock(&self.foreign_origin) = Some(origin.to_owned());
    }

    /// Ends every open stream (and so its session).
    pub fn end_streams(&self) {
        let mut end = lock(&self.end);
        end.cancel();
        *end = CancellationToken::new();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Deserialize)]
struct SessionQuery {
    session_id: u64,
}

/// The routes: `GET`/`POST` at `path`, `POST /messages`.
pub fn routes<H>(path: &str, handler: H, front: Arc<SseFront>) -> Router
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    let open = move |State(front): State<Arc<SseFront>>| {
        let handler = handler.clone();
        async move { open_stream(handler, front) }
    };
    Router::new()
        .route(
            path,
            get(open).post(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route("/messages", post(receive))
        .with_state(front)
}

fn open_stream<H>(handler: H, front: Arc<SseFront>) -> Response
where
    H: ServerHandler + Send + Sync + 'static,
{
    let id = front.next.fetch_add(1, Ordering::SeqCst);
    front.streams_opened.fetch_add(1, Ordering::SeqCst);
    let (to_server, from_client) = mpsc::unbounded::<ClientJsonRpcMessage>();
    let (to_client, from_server) = mpsc::unbounded::<ServerJsonRpcMessage>();
    lock(&front.sessions).insert(id, to_server);
    tokio::spawn(async move {
        if let Ok(running) = handler.serve((to_client, from_client)).await {
            let _ = running.waiting().await;
        }
    });
    let origin = lock(&front.foreign_origin).clone().unwrap_or_default();
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{origin}/messages?session_id={id}"));
    let end = lock(&front.end).clone();
    // rmcp's messages always serialize.
    let messages = from_server.filter_map(|message| async move {
        Event::default()
            .event("message")
            .json_data(&message)
            .ok()
            .map(Ok::<_, Infallible>)
    });
    let events = futures::stream::once(async move { Ok::<_, Infallible>(endpoint) })
        .chain(messages)
        .take_until(end.cancelled_owned());
    Sse::new(events).into_response()
}

async fn receive(
    State(front): State<Arc<SseFront>>,
    Query(query): Query<SessionQuery>,
    body: Bytes,
) -> StatusCode {
    front.posts.fetch_add(1, Ordering::SeqCst);
    let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let session = lock(&front.sessions).get(&query.session_id).cloned();
    match session {
        Some(session) if session.unbounded_send(message).is_ok() => StatusCode::ACCEPTED,
        _ => StatusCode::NOT_FOUND,
    }
}
