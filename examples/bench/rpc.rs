//! The raw JSON-RPC client that drives every stdio peer alike.
//!
//! A desktop MCP client starts a command and talks newline-delimited JSON-RPC over its stdin
//! and stdout. [`StdioPeer`] does just that and nothing more, so the same bytes reach our proxy,
//! `mcp-remote` and the Python original: no SDK of either side shapes the comparison.
//!
//! - Requests are written as one line each, `{"jsonrpc":"2.0","id":N,"method":...}\n`, with a
//!   single `write` so that a reader never sees half a request.
//! - Lines are read until the response with the wanted id arrives; notifications are skipped,
//!   and a request from the server (a `ping`, say) gets an answer so that it never waits on us.
//! - The clock of a measured request stops when its line has been read, before it is parsed:
//!   parsing a 10,000-tool list in a debug build takes longer than the proxy takes to send it.
//! - [`StdioPeer::pipelined`] keeps K requests in flight for throughput: a new request is
//!   written whenever an answer comes back, until a number of calls or a time budget is spent.
//!
//! A response with an `error`, a tool result with `isError: true`, an exit or a silence longer
//! than [`StdioPeer::timeout`] is an error that names the peer and shows the end of its stderr
//! log: the bench fails only when something is broken, never on slowness.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use rmcp::model::ProtocolVersion;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{ChildStderr, ChildStdin, ChildStdout, Command},
};

use crate::child::Guarded;

/// Where a peer's stderr goes.
pub enum Stderr {
    /// Appended to this log file.
    File(PathBuf),
    /// A pipe the caller reads ([`StdioPeer::take_stderr`]), writing to this log itself.
    Piped(PathBuf),
}

/// A response as read: its line, and when the line was complete.
pub struct Reply {
    /// The JSON-RPC response, unparsed.
    pub line: String,
    /// When its last byte had been read.
    pub at: Instant,
}

impl Reply {
    /// The response's `result`, parsed.
    pub fn result(&self) -> Result<Value, String> {
        let mut value: Value =
            serde_json::from_str(&self.line).map_err(|e| format!("unparsable response: {e}"))?;
        Ok(value["result"].take())
    }
}

/// Just enough of a message to route it, whatever its size.
#[derive(Deserialize)]
struct Head {
    id: Option<Value>,
    method: Option<String>,
    error: Option<Value>,
    result: Option<ResultHead>,
}

#[derive(Deserialize)]
struct ResultHead {
    #[serde(rename = "isError", default)]
    is_error: bool,
}

/// One peer process and its stdio.
pub struct StdioPeer {
    label: String,
    log: PathBuf,
    process: Guarded,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: String,
    next_id: u64,
    /// Longest wait for one response.
    pub timeout: Duration,
}

impl StdioPeer {
    /// Starts `cmd` with piped stdin and stdout; `label` names it in errors.
    pub fn spawn(mut cmd: Command, label: &str, stderr: Stderr) -> Result<Self, String> {
        let log = match &stderr {
            Stderr::File(log) | Stderr::Piped(log) => log.clone(),
        };
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        match stderr {
            Stderr::File(log) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
                cmd.stderr(file);
            }
            Stderr::Piped(_) => {
                cmd.stderr(Stdio::piped());
            }
        }
        let mut process = Guarded::spawn(cmd, label)?;
        let stdin = process.child.stdin.take();
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or_else(|| format!("{label}: no stdout pipe"))?;
        Ok(Self {
            label: label.to_owned(),
            log,
            process,
            stdin,
            // Big enough for a 10,000-tool list in a few reads.
            stdout: BufReader::with_capacity(1 << 20, stdout),
            line: String::new(),
            next_id: 1,
            timeout: Duration::from_secs(90),
        })
    }

    /// The process id (the root of the peer's process tree).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The stderr pipe, when spawned with [`Stderr::Piped`].
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.process.child.stderr.take()
    }

    /// `initialize` (the latest revision with it) and, once answered, `notifications/initialized`.
    /// Returns the answer and when it arrived.
    pub async fn initialize(&mut self) -> Result<(Value, Instant), String> {
        let reply = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": ProtocolVersion::LATEST_WITH_INITIALIZE,
                    "capabilities": {},
                    "clientInfo": {"name": "authful-mcp-proxy-bench", "version": "1"},
                }),
            )
            .await?;
        let result = reply.result()?;
        if result.get("protocolVersion").is_none() {
            return Err(self.failure(&format!(
                "initialize answered without a protocolVersion: {result}"
            )));
        }
        self.notify("notifications/initialized", json!({})).await?;
        Ok((result, reply.at))
    }

    /// Sends a request and waits for its response.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Reply, String> {
        let id = self.send(method, &params).await?;
        self.read_until(id, method).await
    }

    /// `tools/call` of `tool` with `arguments`; a JSON-RPC error or `isError` is an error.
    pub async fn call(&mut self, tool: &str, arguments: &Value) -> Result<(), String> {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
            .map(drop)
    }

    /// Up to `total` calls of `tool`, `in_flight` at a time; no new call is started once
    /// `budget` has passed (a slow peer is not kept busy for minutes). Returns how many calls
    /// were answered and the time from the first write to the last answer.
    pub async fn pipelined(
        &mut self,
        total: usize,
        in_flight: usize,
        budget: Duration,
        tool: &str,
        arguments: &Value,
    ) -> Result<(usize, Duration), String> {
        let params = json!({"name": tool, "arguments": arguments});
        let started = Instant::now();
        let mut outstanding = HashSet::new();
        let mut sent = 0;
        let mut done = 0;
        loop {
            while sent < total && outstanding.len() < in_flight && started.elapsed() < budget {
                outstanding.insert(self.send("tools/call", &params).await?);
                sent += 1;
            }
            if outstanding.is_empty() {
                break;
            }
            let (head, _) = self.read_message("tools/call").await?;
            if let Some(id) = head.id.as_ref().and_then(Value::as_u64)
                && head.method.is_none()
                && outstanding.remove(&id)
            {
                self.check(&head, "tools/call")?;
                done += 1;
            }
        }
        Ok((done, started.elapsed()))
    }

    /// Closes stdin (how desktop clients end a session) and waits for the exit; the process
    /// group is killed if it lingers.
    pub async fn close(mut self) {
        drop(self.stdin.take());
        self.process.stop(Duration::from_secs(5)).await;
    }

    async fn send(&mut self, method: &str, params: &Value) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.write(&message).await?;
        Ok(id)
    }

    /// Sends a notification.
    pub async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        self.write(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await
    }

    async fn write(&mut self, message: &Value) -> Result<(), String> {
        let mut line = message.to_string();
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin already closed", self.label))?;
        if let Err(e) = stdin.write_all(line.as_bytes()).await {
            return Err(self.failure(&format!("cannot write to its stdin: {e}")));
        }
        Ok(())
    }

    /// Reads messages until the response to `id`.
    async fn read_until(&mut self, id: u64, method: &str) -> Result<Reply, String> {
        loop {
            let (head, at) = self.read_message(method).await?;
            if head.method.is_none() && head.id.as_ref().and_then(Value::as_u64) == Some(id) {
                self.check(&head, method)?;
                return Ok(Reply {
                    line: std::mem::take(&mut self.line),
                    at,
                });
            }
        }
    }

    /// Reads one message, answering requests from the server on the way; also returns when its
    /// line was complete.
    async fn read_message(&mut self, method: &str) -> Result<(Head, Instant), String> {
        loop {
            self.line.clear();
            let read = tokio::time::timeout(self.timeout, self.stdout.read_line(&mut self.line));
            match read.await {
                Err(_) => {
                    return Err(self.failure(&format!(
                        "no answer to {method} within {} s",
                        self.timeout.as_secs()
                    )));
                }
                Ok(Err(e)) => return Err(self.failure(&format!("cannot read its stdout: {e}"))),
                Ok(Ok(0)) => {
                    return Err(self.failure(&format!("exited while {method} was pending")));
                }
                Ok(Ok(_)) => {}
            }
            let at = Instant::now();
            if self.line.trim().is_empty() {
                continue;
            }
            let head: Head = serde_json::from_str(&self.line).map_err(|e| {
                let shown: String = self.line.chars().take(200).collect();
                self.failure(&format!("wrote a line that is not JSON-RPC ({e}): {shown}"))
            })?;
            match (&head.method, &head.id) {
                // A request from the server: answer it so that it does not wait for us.
                (Some(request), Some(id)) => {
                    let answer = if request == "ping" {
                        json!({"jsonrpc": "2.0", "id": id, "result": {}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": id,
                               "error": {"code": -32601, "message": "the bench client does not do this"}})
                    };
                    self.write(&answer).await?;
                }
                // A notification.
                (Some(_), None) => {}
                (None, _) => return Ok((head, at)),
            }
        }
    }

    fn check(&self, head: &Head, method: &str) -> Result<(), String> {
        if let Some(error) = &head.error {
            return Err(self.failure(&format!("{method} failed: {error}")));
        }
        if head.result.as_ref().is_some_and(|r| r.is_error) {
            let shown: String = self.line.chars().take(300).collect();
            return Err(self.failure(&format!("{method} returned a tool error: {shown}")));
        }
        Ok(())
    }

    /// An error message that names the peer and shows the end of its stderr.
    pub fn failure(&self, what: &str) -> String {
        format!("{}: {what}\n{}", self.label, log_tail(&self.log))
    }
}

/// The last lines of a log file, indented, for an error message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    let mut shown = format!("  (stderr: {})", log.display());
    for line in tail {
        shown.push_str("\n  | ");
        shown.extend(line.chars().take(300));
    }
    shown
}
