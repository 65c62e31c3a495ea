//! A fault-injecting HTTP proxy in front of a test backend: requests pass through unchanged
//! until a fault is armed for an MCP method, then that request gets the fault instead.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, Response, StatusCode, Uri, header},
};
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What an armed request gets instead of the backend's answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This HTTP status with a short text body.
    Status(u16),
    /// 200 with `Content-Type: application/json` and an HTML body.
    NotJson,
    /// 200 JSON whose body stops after a few bytes of the promised length.
    Truncated,
    /// 200 `text/event-stream` that breaks off in the middle of an event.
    SseDropped,
    /// The request is received and never answered.
    Hang,
    /// The request passes through after this long: a slow backend.
    Delay(std::time::Duration),
}

#[derive(Default)]
struct Armed {
    /// Killed: every request, in flight or new, has its connection broken.
    dead: bool,
    /// (MCP method, fault, how many more requests get it)
    faults: Vec<(String, Fault, usize)>,
    /// MCP methods of every POST seen, in order.
    seen: Vec<String>,
}

/// The proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    armed: Arc<Mutex<Armed>>,
    died: CancellationToken,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct Ctx {
    upstream: String,
    http: reqwest::Client,
    armed: Arc<Mutex<Armed>>,
    died: CancellationToken,
}

impl FaultProxy {
    /// Starts the proxy on 127.0.0.1 in front of `upstream` (an MCP endpoint URL).
    pub async fn start(upstream: &str) -> Self {
        Self::start_on(upstream, 0).await
    }

    /// Like [`FaultProxy::start`], on a given port (to come back after [`FaultProxy::kill`]).
    pub async fn start_on(upstream: &str, port: u16) -> Self {
        let armed = Arc::new(Mutex::new(Armed::default()));
        let died = CancellationToken::new();
        let ctx = Ctx {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            armed: Arc::clone(&armed),
            died: died.clone(),
        };
        let app = Router::new().fallback(relay).with_state(ctx);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            armed,
            died,
            server,
        }
    }

    /// Dies like a crashed process: the port closes and every connection breaks, requests in
    /// flight included.
    pub fn kill(&self) {
        self.armed.lock().unwrap().dead = true;
        self.died.cancel();
        self.server.abort();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The MCP endpoint to give the proxy under test.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The next `times` POSTs carrying `method` get `fault`.
    pub fn arm(&self, method: &str, fault: Fault, times: usize) {
        self.armed
            .lock()
            .unwrap()
            .faults
            .push((method.to_owned(), fault, times));
    }

    /// How many POSTs with `method` arrived so far.
    pub fn seen(&self, method: &str) -> usize {
        let armed = self.armed.lock().unwrap();
        armed.seen.iter().filter(|m| *m == method).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A response whose connection breaks at once: what a client sees from a dead server.
fn broken() -> Response<Body> {
    let parts: Vec<Result<Bytes, std::io::Error>> =
        vec![Err(std::io::Error::other("injected: the server died"))];
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "100")
        .body(Body::from_stream(futures::stream::iter(parts)))
        .unwrap()
}

async fn relay(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    if ctx.armed.lock().unwrap().dead {
        return broken();
    }
    let died = ctx.died.clone();
    tokio::select! {
        response = answer(ctx, method, uri, headers, body) => response,
        () = died.cancelled() => broken(),
    }
}

async fn answer(
    ctx: Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let mcp_method = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_owned));
    let fault = if method == Method::POST {
        let mut armed = ctx.armed.lock().unwrap();
        let name = mcp_method.clone().unwrap_or_default();
        armed.seen.push(name.clone());
        let hit = armed
            .faults
            .iter_mut()
            .find(|(m, _, left)| *m == name && *left > 0);
        hit.map(|(_, fault, left)| {
            *left -= 1;
            fault.clone()
        })
    } else {
        None
    };
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap();
            return Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(format!("injected {code}\n")))
                .unwrap();
        }
        Some(Fault::NotJson) => {
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("<html><body>Gateway error</body></html>"))
                .unwrap();
        }
        Some(Fault::Truncated) => {
            let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":")),
                Err(std::io::Error::other("injected: connection lost")),
            ];
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, "400")
                .body(Body::from_stream(futures::stream::iter(parts)))
                .unwrap();
        }
        Some(Fault::SseDropped) => {
            let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(
                    b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"",
                )),
                Err(std::io::Error::other("injected: stream dropped")),
            ];
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(futures::stream::iter(parts)))
                .unwrap();
        }
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let target = format!(
        "{}{}",
        ctx.upstream,
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut request = ctx.http.request(method, target).body(body);
    for (name, value) in &headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(upstream) => {
            let mut response = Response::builder().status(upstream.status());
            for (name, value) in upstream.headers() {
                if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
                    response = response.header(name, value);
                }
            }
            // A streamed answer (SSE) breaks off when the server dies.
            let (died, dead) = (ctx.died.clone(), ctx.died.clone());
            let stream = upstream
                .bytes_stream()
                .map(|chunk| chunk.map_err(std::io::Error::other))
                .take_until(died.cancelled_owned())
                .chain(
                    futures::stream::once(async move { dead.is_cancelled() }).filter_map(
                        |dead| async move {
                            dead.then(|| Err(std::io::Error::other("injected: the server died")))
                        },
                    ),
                );
            response.body(Body::from_stream(stream)).unwrap()
        }
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("fault proxy: upstream failed: {e}")))
            .unwrap(),
    }
}
