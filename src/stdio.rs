//! The client's side of the proxy: JSON-RPC 2.0 over stdin/stdout, one message per line.
//!
//! rmcp's own stdio transport drops a line that is not JSON without a word, so a client that
//! sent a broken request waits for an answer forever. Here every line that cannot be used gets
//! the error JSON-RPC 2.0 prescribes, and the session goes on:
//! - not JSON: `-32700 Parse error` (id `null`);
//! - JSON but not a JSON-RPC message, or a batch: `-32600 Invalid Request` (with the request's
//!   id when it has one);
//! - a known MCP method whose params do not fit: `-32602 Invalid params`, naming the problem;
//! - longer than [`MAX_MESSAGE_BYTES`]: `-32600`, with the request's id when it is among the
//!   first bytes of the line; the line is skipped without being buffered.
//!
//! Unknown notifications are ignored, as JSON-RPC never answers a notification. Nothing read
//! from stdin is logged: requests may carry anything.

use std::{borrow::Cow, sync::Arc};

use crate::protocol;
use rmcp::{
    RoleServer,
    model::{
        CallToolRequestParams, ClientRequest, CompleteRequestParams, GetPromptRequestParams,
        InitializeRequestParams, JsonRpcMessage, NumberOrString, PaginatedRequestParams,
        ReadResourceRequestParams, RequestId, SubscribeRequestParams, UnsubscribeRequestParams,
    },
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    sync::Mutex,
};

/// The largest message accepted on stdin, in bytes (the newline excluded). The same as rmcp's
/// limit for one server-sent event, so what a backend may send over HTTP also fits here.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an oversized line is kept to find its request id.
const ID_SEARCH_BYTES: usize = 4096;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;
const METHOD_NOT_FOUND: i64 = -32601;

/// JSON-RPC over a reader (stdin) and a writer (stdout).
pub struct StdioTransport<R, W> {
    read: BufReader<R>,
    /// The line being read; it survives a cancelled `receive` (rmcp polls it in a `select!`).
    line: Vec<u8>,
    /// The line being read is over the limit: only its first bytes are kept.
    oversized: bool,
    limit: usize,
    write: Arc<Mutex<Option<W>>>,
    /// Set at the first message that is not a `server/discover` probe (see [`Self::engaged`]).
    engaged: Option<tokio::sync::watch::Sender<bool>>,
    /// Set when stdin ends (see [`Self::ended`]).
    ended: tokio::sync::watch::Sender<bool>,
}

enum LineRead {
    Line,
    Oversized,
    Eof,
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    /// A transport with the standard [`MAX_MESSAGE_BYTES`] limit.
    pub fn new(read: R, write: W) -> Self {
        Self::with_limit(read, write, MAX_MESSAGE_BYTES)
    }

    /// A transport that accepts messages of up to `limit` bytes.
    pub fn with_limit(read: R, write: W, limit: usize) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            oversized: false,
            limit,
            write: Arc::new(Mutex::new(Some(write))),
            engaged: None,
            ended: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Turns `true` when stdin ends: the client is gone, and requests that would run until it
    /// cancels them (a `subscriptions/listen` stream) end too, so that the proxy can exit.
    pub fn ended(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ended.subscribe()
    }

    /// Turns `true` at the client's first message that is not a `server/discover` probe: from
    /// then on the client means to use the server, rather than only to ask what it is (a
    /// 2026-07-28 client may probe from a process of its own that ends right after).
    pub fn engaged(&mut self) -> tokio::sync::watch::Receiver<bool> {
        self.engaged
            .get_or_insert_with(|| tokio::sync::watch::Sender::new(false))
            .subscribe()
    }

    /// Reads up to the next newline without ever buffering more than the limit.
    async fn read_line(&mut self) -> std::io::Result<LineRead> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(LineRead::Eof);
            }
            let end = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..end.map_or(available.len(), |i| i + 1)];
            let taken = chunk.len();
            let content = self.line.len() + taken - usize::from(end.is_some());
            if !self.oversized && content > self.limit {
                self.oversized = true;
                let room = ID_SEARCH_BYTES.saturating_sub(self.line.len());
                self.line.extend_from_slice(&chunk[..room.min(taken)]);
                self.line.truncate(ID_SEARCH_BYTES);
            } else if !self.oversized {
                self.line.extend_from_slice(chunk);
            }
            self.read.consume(taken);
            if end.is_some() {
                return Ok(if std::mem::take(&mut self.oversized) {
                    LineRead::Oversized
                } else {
                    LineRead::Line
                });
            }
        }
    }
}

/// Writes an error response the transport itself produced.
async fn answer<W: AsyncWrite + Unpin>(
    write: &Mutex<Option<W>>,
    id: Option<Value>,
    code: i64,
    message: String,
) -> Option<()> {
    // Members in the usual order; `id` is `null` when unknown, as JSON-RPC 2.0 requires.
    let response = format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
        id.unwrap_or(Value::Null),
        json!({ "code": code, "message": message }),
    );
    let mut line = response.into_bytes();
    line.push(b'\n');
    let mut write = write.lock().await;
    let out = write.as_mut()?;
    out.write_all(&line).await.ok()?;
    out.flush().await.ok()
}

/// What to do with one complete line.
enum Verdict {
    Deliver(Box<RxJsonRpcMessage<RoleServer>>),
    Answer(Option<Value>, i64, String),
    Ignore,
}

fn judge(line: &[u8]) -> Verdict {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    // Almost every line is a well-formed message: read it once, straight into its type. Only a
    // line that does not fit is read again, as a plain value, to say what is wrong with it.
    match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line) {
        Ok(JsonRpcMessage::Request(request)) => {
            let version = rmcp::model::GetMeta::get_meta(&request.request)
                .get("io.modelcontextprotocol/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(removed) = removed_in(request.request.method(), version.as_deref()) {
                return Verdict::Answer(Some(id_value(&request.id)), METHOD_NOT_FOUND, removed);
            }
            if let ClientRequest::CustomRequest(custom) = &request.request
                && let Some(problem) = params_problem(&custom.method, custom.params.clone())
            {
                return Verdict::Answer(
                    Some(id_value(&request.id)),
                    INVALID_PARAMS,
                    format!("Invalid params for {}: {problem}", custom.method),
                );
            }
            Verdict::Deliver(Box::new(JsonRpcMessage::Request(request)))
        }
        Ok(message) => Verdict::Deliver(Box::new(message)),
        Err(e) => misfit(line, &e),
    }
}

/// A `server/discover` probe.
fn is_probe(message: &RxJsonRpcMessage<RoleServer>) -> bool {
    matches!(message, JsonRpcMessage::Request(r) if matches!(r.request, ClientRequest::DiscoverRequest(_)))
}

/// The methods MCP 2026-07-28 removed: a request of that revision (its `_meta` names it) for
/// one of them is "method not found", before anything else is said of it — whether rmcp would
/// have answered it itself (`ping`) or found its params wrong (`initialize` has none of its
/// own then).
const REMOVED_IN_2026: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The error for `method` in a request of revision `version`, if that revision removed it.
fn removed_in(method: &str, version: Option<&str>) -> Option<String> {
    let version = version?;
    (version >= protocol::MODERN.as_str() && REMOVED_IN_2026.contains(&method)).then(|| {
        format!(
            "Method not found: {method} (removed in MCP {})",
            protocol::MODERN
        )
    })
}

fn id_value(id: &RequestId) -> Value {
    match id {
        NumberOrString::Number(n) => json!(n),
        NumberOrString::String(s) => json!(&**s),
    }
}

/// What to answer to a line that is not a message rmcp can read.
fn misfit(line: &[u8], typed: &serde_json::Error) -> Verdict {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            tracing::warn!("Answered a line on stdin that is not JSON ({e}) with a parse error");
            return Verdict::Answer(None, PARSE_ERROR, format!("Parse error: {e}"));
        }
    };
    let Some(object) = value.as_object() else {
        let what = if value.is_array() {
            "batches are not supported; send one message per line"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Verdict::Answer(None, INVALID_REQUEST, format!("Invalid Request: {what}"));
    };
    let id = object
        .get("id")
        .filter(|id| id.is_string() || id.is_i64())
        .cloned();
    let method = object.get("method").and_then(Value::as_str).unwrap_or("");
    // A notification is never answered, not even a broken one.
    if id.is_none() && !method.is_empty() && !object.contains_key("id") {
        tracing::debug!("Ignored an unusable notification '{method}' from the client");
        return Verdict::Ignore;
    }
    tracing::warn!("Answered an invalid JSON-RPC message on stdin ({typed})");
    Verdict::Answer(id, INVALID_REQUEST, format!("Invalid Request: {typed}"))
}

/// rmcp reads a known MCP method whose params do not fit its type as a custom request; this
/// names what is wrong with them. `None` for methods MCP does not define.
#[allow(deprecated)] // logging/setLevel: deprecated by a later protocol, still served
fn params_problem(method: &str, params: Option<Value>) -> Option<String> {
    fn misfit<T: serde::de::DeserializeOwned>(params: Option<Value>) -> Option<String> {
        serde_json::from_value::<T>(params.unwrap_or_else(|| json!({})))
            .err()
            .map(|e| e.to_string())
    }
    match method {
        "initialize" => misfit::<InitializeRequestParams>(params),
        "tools/call" => misfit::<CallToolRequestParams>(params),
        "prompts/get" => misfit::<GetPromptRequestParams>(params),
        "resources/read" => misfit::<ReadResourceRequestParams>(params),
        "resources/subscribe" => misfit::<SubscribeRequestParams>(params),
        "resources/unsubscribe" => misfit::<UnsubscribeRequestParams>(params),
        "completion/complete" => misfit::<CompleteRequestParams>(params),
        "logging/setLevel" => misfit::<rmcp::model::SetLevelRequestParams>(params),
        "server/discover" => misfit::<Option<rmcp::model::DiscoverRequestParams>>(params),
        "subscriptions/listen" => misfit::<rmcp::model::SubscriptionsListenRequestParams>(params),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            misfit::<Option<PaginatedRequestParams>>(params)
        }
        // Whatever the params, rmcp would have read these; a mismatch means a bad shape.
        "ping" => Some("ping takes no params".into()),
        _ => None,
    }
    .or_else(|| {
        // rmcp fell back to a custom request although the params fit: say so rather than
        // pretend the method is unknown.
        KNOWN_METHODS
            .contains(&method)
            .then(|| "the request does not have the shape MCP defines".into())
    })
}

const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
];

/// The request id of an oversized line, if it appears as a top-level member among the bytes
/// that were kept: `{"jsonrpc":"2.0","id":7,"method":...` as clients write it.
fn top_level_id(prefix: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(prefix);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut key_start = None;
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_string = false;
                    if depth == 1
                        && let Some(start) = key_start.take()
                        && &text[start..i] == "id"
                    {
                        let rest = text[i + 1..].trim_start().strip_prefix(':')?;
                        let rest = rest.trim_start();
                        let mut stream = serde_json::Deserializer::from_str(rest).into_iter();
                        return match stream.next()? {
                            Ok(id @ (Value::Number(_) | Value::String(_))) => Some(id),
                            _ => None,
                        };
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                key_start = Some(i + 1);
            }
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn name() -> Cow<'static, str> {
        "stdio".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = Arc::clone(&self.write);
        async move {
            let mut line = serde_json::to_vec(&item)?;
            if let Some(restored) = crate::legacy_tasks::restore(&line) {
                line = restored;
            }
            line.push(b'\n');
            let mut write = write.lock().await;
            let out = write
                .as_mut()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
            out.write_all(&line).await?;
            out.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let read = match self.read_line().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!("Reading stdin failed: {e}");
                    self.ended.send_replace(true);
                    return None;
                }
            };
            let mut line = std::mem::take(&mut self.line);
            if let Some(stowed) = crate::legacy_tasks::stow_request(&line) {
                line = stowed;
            }
            let verdict = match read {
                LineRead::Eof => {
                    self.ended.send_replace(true);
                    return None;
                }
                LineRead::Oversized => {
                    tracing::warn!(
                        "Answered a message of more than {} bytes on stdin with an error",
                        self.limit
                    );
                    Verdict::Answer(
                        top_level_id(&line),
                        INVALID_REQUEST,
                        format!(
                            "Invalid Request: the message exceeds the proxy's limit of {} bytes",
                            self.limit
                        ),
                    )
                }
                LineRead::Line => {
                    let trimmed = line.trim_ascii();
                    if trimmed.is_empty() {
                        Verdict::Ignore
                    } else {
                        judge(trimmed)
                    }
                }
            };
            match verdict {
                Verdict::Deliver(message) => {
                    if let Some(engaged) = &self.engaged
                        && !is_probe(&message)
                    {
                        engaged.send_replace(true);
                    }
                    return Some(*message);
                }
                Verdict::Answer(id, code, message) => {
                    answer(&self.write, id, code, message).await?;
                }
                Verdict::Ignore => {}
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        if let Some(mut out) = self.write.lock().await.take() {
            out.shutdown().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_top_level_id_in_a_truncated_line() {
        let line =
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"x":"aaaa"#;
        assert_eq!(top_level_id(line), Some(json!(7)));
        let line = br#"{"method":"tools/call","params":{"id":1,"a":"x\"id\":3"},"id":"abc","#;
        assert_eq!(top_level_id(line), Some(json!("abc")));
        let line = br#"{"method":"tools/call","params":{"id":1,"data":"aaaa"#;
        assert_eq!(top_level_id(line), None);
    }

    #[test]
    fn judges_lines_as_json_rpc_asks() {
        let Verdict::Answer(None, PARSE_ERROR, _) = judge(b"not json") else {
            panic!("not JSON must be a parse error")
        };
        let Verdict::Answer(None, INVALID_REQUEST, _) = judge(b"[1,2]") else {
            panic!("a batch must be an invalid request")
        };
        let Verdict::Answer(Some(id), INVALID_PARAMS, message) =
            judge(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"nope":1}}"#)
        else {
            panic!("tools/call without a name must be invalid params")
        };
        assert_eq!(id, json!(3));
        assert!(message.contains("name"), "{message}");
        let Verdict::Answer(Some(id), INVALID_REQUEST, _) =
            judge(br#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#)
        else {
            panic!("a wrong jsonrpc version must be an invalid request")
        };
        assert_eq!(id, json!("x"));
        for notification in [
            &br#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#[..],
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":7}"#,
        ] {
            assert!(
                !matches!(judge(notification), Verdict::Answer(..)),
                "a notification is never answered"
            );
        }
        let Verdict::Deliver(_) = judge(
            br#"{"jsonrpc":"2.0","id":"probe","method":"server/discover","params":{"_meta":{}}}"#,
        ) else {
            panic!("server/discover reaches the server, which answers it")
        };
        let Verdict::Deliver(_) =
            judge(br#"{"jsonrpc":"2.0","id":1,"method":"vendor/extension","params":{}}"#)
        else {
            panic!("an unknown method reaches the server, which answers method not found")
        };
    }
}
