//! "direct": the same calls straight to the backend over HTTP — the physical limit a stdio
//! proxy is measured against.
//!
//! One MCP session as the Streamable HTTP transport defines it: `initialize` (the answer
//! carries `Mcp-Session-Id`), `notifications/initialized`, then every `tools/call` is a POST
//! with that session id, `Accept: application/json, text/event-stream` and, for a backend that
//! validates tokens, the bearer token. The answer is either a JSON body or an SSE stream whose
//! `data:` line holds the response. reqwest keeps the connections alive (and opens one per
//! request in flight), with `TCP_NODELAY`, so no request pays a TCP handshake or a delayed ACK.

use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};

/// One session with a Streamable HTTP backend.
pub struct Direct {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: Option<String>,
    protocol: String,
    next_id: AtomicU64,
}

impl Direct {
    /// Opens a session with the backend at `url`; `token` is sent as a bearer token.
    pub async fn connect(url: &str, token: Option<String>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("direct: cannot build an HTTP client: {e}"))?;
        let mut direct = Self {
            http,
            url: url.to_owned(),
            token,
            session: None,
            protocol: ProtocolVersion::LATEST_WITH_INITIALIZE.to_string(),
            next_id: AtomicU64::new(1),
        };
        let (result, session) = direct
            .post(json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": ProtocolVersion::LATEST_WITH_INITIALIZE,
                    "capabilities": {},
                    "clientInfo": {"name": "authful-mcp-proxy-bench-direct", "version": "1"},
                },
            }))
            .await?;
        direct.session = session;
        if let Some(version) = result
            .as_ref()
            .and_then(|r| r["result"]["protocolVersion"].as_str())
        {
            direct.protocol = version.to_owned();
        }
        direct
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(direct)
    }

    /// Calls `tool` with `arguments`; an error or `isError` is an error.
    pub async fn call(&self, tool: &str, arguments: &Value) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (response, _) = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": tool, "arguments": arguments}}))
            .await?;
        let response = response.ok_or_else(|| format!("direct: no answer to call {id}"))?;
        if response.get("error").is_some() || response["result"]["isError"] == json!(true) {
            return Err(format!("direct: {tool} failed: {response}"));
        }
        Ok(())
    }

    /// Ends the session (HTTP `DELETE`), as a well-behaved client does.
    pub async fn close(self) {
        if let Some(session) = &self.session {
            let _ = self
                .http
                .delete(&self.url)
                .header("Mcp-Session-Id", session)
                .send()
                .await;
        }
    }

    /// POSTs one message; returns the JSON-RPC response (none for a notification) and the
    /// session id the backend set, if any.
    async fn post(&self, message: Value) -> Result<(Option<Value>, Option<String>), String> {
        let mut request = self
            .http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .header("MCP-Protocol-Version", &self.protocol)
            .body(message.to_string());
        if let Some(session) = &self.session {
            request = request.header("Mcp-Session-Id", session);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("direct: POST {}: {e}", self.url))?;
        let status = response.status();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let body = response
            .text()
            .await
            .map_err(|e| format!("direct: reading the answer: {e}"))?;
        if !status.is_success() {
            return Err(format!("direct: HTTP {status}: {body}"));
        }
        let id = message.get("id").cloned();
        let parsed = match (id, sse) {
            (None, _) => None,
            (Some(id), true) => sse_response(&body, &id),
            (Some(_), false) => serde_json::from_str(&body).ok(),
        };
        Ok((parsed, session))
    }
}

/// The response with `id` among an SSE body's `data:` lines (a priming event has none).
fn sse_response(body: &str, id: &Value) -> Option<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message.get("id") == Some(id))
}
