//! Two small HTTP servers for redirect tests: a [`Thief`] that records everything that reaches
//! it, and a [`Redirector`] that answers every request with a redirect (to the thief, say).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::IntoResponse,
};
use tokio_util::sync::CancellationToken;

/// One request as it arrived.
#[derive(Debug, Clone)]
#[expect(
    dead_code,
    reason = "the fields are read through Debug: the failure message of a test that finds one"
)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

async fn serve(router: Router) -> (SocketAddr, CancellationToken) {
    let stop = CancellationToken::new();
    (super::serve_http(router, &stop).await, stop)
}

/// Records every request and answers 200 `{}`.
pub struct Thief {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
}

impl Thief {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        let router = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push(Seen {
                        method,
                        uri,
                        headers,
                        body,
                    });
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        "{}",
                    )
                }
            },
        );
        let (addr, stop) = serve(router).await;
        Self { addr, seen, stop }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything that reached it.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Thief {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Answers every request with `status` and `Location: to`.
pub struct Redirector {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Redirector {
    pub async fn start(status: u16, to: String) -> Self {
        let status = StatusCode::from_u16(status).unwrap();
        let router = Router::new().fallback(move || {
            let to = to.clone();
            async move { (status, [(header::LOCATION, to)]).into_response() }
        });
        let (addr, stop) = serve(router).await;
        Self { addr, stop }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
