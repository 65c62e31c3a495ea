//! Backends with tasks, written as plain JSON. Streamable HTTP on 127.0.0.1, every answer an SSE
//! event (as every SDK's server answers); each stops when dropped.
//!
//! - [`TasksBackend::start`]: MCP 2025-11-25 with its experimental tasks (rmcp's types have no
//!   place for them): `capabilities.tasks`, a tool whose `execution.taskSupport` is `optional`,
//!   a call with `params.task` answered with a task, and `tasks/get`, `tasks/result`,
//!   `tasks/list`, `tasks/cancel` about it.
//! - [`TasksBackend::start_2026`]: MCP 2026-07-28 alone (it refuses `initialize`) with the tasks
//!   extension: a call answered with a task (`resultType: "task"`) when the client declared the
//!   extension, and `tasks/get` answering it completed.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
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

/// The `tools/call` params a backend got, in order.
type Calls = Arc<Mutex<Vec<Value>>>;

/// The backend; what it was sent is in [`TasksBackend::calls`].
pub struct TasksBackend {
    url: String,
    calls: Calls,
    stop: CancellationToken,
}

impl Drop for TasksBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TasksBackend {
    /// Starts the backend of 2025-11-25 on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_speaking(false).await
    }

    /// Starts the backend of 2026-07-28 on a free port of 127.0.0.1.
    pub async fn start_2026() -> Self {
        Self::start_speaking(true).await
    }

    async fn start_speaking(modern: bool) -> Self {
        let calls: Calls = Arc::default();
        let app = Router::new()
            .route(
                "/mcp",
                post(answer)
                    .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                    .delete(|| async { StatusCode::OK }),
            )
            .with_state((Arc::clone(&calls), modern));
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

/// What a backend answers to one request: its result, or a JSON-RPC error (with the HTTP status
/// it comes with).
type Answer = Result<Value, (StatusCode, Value)>;

/// "Method not found", as an SSE answer.
fn unknown(method: &str) -> (StatusCode, Value) {
    (
        StatusCode::OK,
        json!({"code": -32601, "message": format!("no {method}")}),
    )
}

async fn answer(State((calls, modern)): State<(Calls, bool)>, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = &message["params"];
    if method == "tools/call" {
        calls.lock().unwrap().push(params.clone());
    }
    let answer = if modern {
        of_2026(method, params)
    } else {
        of_2025(method, params)
    };
    match answer {
        Ok(result) => sse(&json!({"jsonrpc": "2.0", "id": id, "result": result})),
        Err((StatusCode::OK, error)) => sse(&json!({"jsonrpc": "2.0", "id": id, "error": error})),
        Err((status, error)) => (
            status,
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string(),
        )
            .into_response(),
    }
}

/// The backend of 2025-11-25.
fn of_2025(method: &str, params: &Value) -> Answer {
    Ok(match method {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": capabilities(),
                               "serverInfo": {"name": "tasks-2025", "version": "1"}}),
        "tools/list" => json!({"tools": [research_tool()]}),
        "tools/call" if params.get("task").is_some() => json!({"task": task("working")}),
        "tools/call" => json!({"content": [{"type": "text", "text": "researched at once"}]}),
        "tasks/get" => task("completed"),
        "tasks/cancel" => task("cancelled"),
        "tasks/list" => json!({"tasks": [task("completed")]}),
        "tasks/result" => json!({
            "content": [{"type": "text", "text": "researched as a task"}],
            "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "task-1"}}
        }),
        other => return Err(unknown(other)),
    })
}

/// The extension's task, in `status`, with `extra` fields.
pub fn task_2026(status: &str, extra: Value) -> Value {
    let mut task = json!({"taskId": "t26", "status": status, "ttlMs": 60000,
                          "createdAt": "2026-12-07T10:00:00Z", "lastUpdatedAt": "2026-12-07T10:00:01Z"});
    if let (Some(task), Value::Object(extra)) = (task.as_object_mut(), extra) {
        task.extend(extra);
    }
    task
}

/// The extension's key in capabilities.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// The backend of 2026-07-28.
fn of_2026(method: &str, params: &Value) -> Answer {
    Ok(match method {
        "initialize" => {
            return Err((
                StatusCode::BAD_REQUEST,
                json!({"code": -32022, "message": "Unsupported protocol version",
                       "data": {"supported": ["2026-07-28"], "requested": params["protocolVersion"]}}),
            ));
        }
        "server/discover" => json!({
            "resultType": "complete", "supportedVersions": ["2026-07-28"], "ttlMs": 0,
            "cacheScope": "private",
            "capabilities": {"tools": {}, "extensions": {TASKS_EXTENSION: {}}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "tasks-2026", "version": "1"}},
        }),
        "tools/list" => json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private",
                               "tools": [{"name": "research", "inputSchema": {"type": "object"}}]}),
        "tools/call" => {
            let declared = params
                .pointer("/_meta/io.modelcontextprotocol~1clientCapabilities/extensions")
                .and_then(|e| e.get(TASKS_EXTENSION))
                .is_some();
            if declared {
                let mut task = task_2026("working", json!({}));
                task["resultType"] = json!("task");
                task
            } else {
                json!({"resultType": "complete",
                       "content": [{"type": "text", "text": "researched at once"}]})
            }
        }
        "tasks/get" => {
            let mut task = task_2026(
                "completed",
                json!({"result": {"content": [{"type": "text", "text": "researched as a task"}]}}),
            );
            task["resultType"] = json!("complete");
            task
        }
        other => return Err(unknown(other)),
    })
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
