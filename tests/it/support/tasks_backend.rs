//! A backend of MCP 2025-11-25 with its experimental tasks, written as plain JSON (rmcp's types
//! have no place for them): `capabilities.tasks`, a tool whose `execution.taskSupport` is
//! `optional`, a call with `params.task` answered with a task, and `tasks/get`, `tasks/result`,
//! `tasks/list`, `tasks/cancel` about it. Streamable HTTP on 127.0.0.1, every answer an SSE
//! event (as every SDK's server answers); stops when dropped.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What the backend says of its tasks.
pub fn capabilities() -> Value {
    json!({"tools": {}, "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}})
}

/// Its one tool.
pub fn research_tool() -> Value {
    json!({"name": "research", "inputSchema": {"type": "object"},
           "execution": {"taskSupport": "optional"}})
}

/// The task a call with `params.task` starts, in `status`.
pub fn task(status: &str) -> Value {
    json!({"taskId": "task-1", "status": status, "ttl": 60000, "pollInterval": 100,
           "createdAt": "2026-12-07T10:00:00Z", "lastUpdatedAt": "2026-12-07T10:00:01Z"})
}

/// The backend; what it was sent is in [`TasksBackend::calls`].
pub struct TasksBackend {
    url: String,
    calls: Arc<Mutex<Vec<Value>>>,
    stop: CancellationToken,
}

impl Drop for TasksBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TasksBackend {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route(
                "/mcp",
                post(answer)
                    .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                    .delete(|| async { StatusCode::OK }),
            )
            .with_state(Arc::clone(&calls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopping.cancelled_owned())
                .await;
        });
        Self { url, calls, stop }
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The params of every `tools/call` it got, in order.
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }
}

async fn answer(
    State(calls): State<Arc<Mutex<Vec<Value>>>>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = &message["params"];
    let result = match method {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": capabilities(),
                               "serverInfo": {"name": "tasks-2025", "version": "1"}}),
        "tools/list" => json!({"tools": [research_tool()]}),
        "tools/call" => {
            calls.lock().unwrap().push(params.clone());
            if params.get("task").is_some() {
                json!({"task": task("working")})
            } else {
                json!({"content": [{"type": "text", "text": "researched at once"}]})
            }
        }
        "tasks/get" => task("completed"),
        "tasks/cancel" => task("cancelled"),
        "tasks/list" => json!({"tasks": [task("completed")]}),
        "tasks/result" => json!({
            "content": [{"type": "text", "text": "researched as a task"}],
            "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "task-1"}}
        }),
        other => {
            let error = json!({"jsonrpc": "2.0", "id": id,
                               "error": {"code": -32601, "message": format!("no {other}")}});
            return sse(&error);
        }
    };
    sse(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// `message` as the one event of an SSE answer.
fn sse(message: &Value) -> Response {
    (
        [
            ("content-type", "text/event-stream"),
            ("mcp-session-id", "tasks-session"),
        ],
        format!("event: message\ndata: {message}\n\n"),
    )
        .into_response()
}
