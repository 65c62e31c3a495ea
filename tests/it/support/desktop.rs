//! A desktop client as Claude Desktop behaves, not as the spec allows: raw JSON-RPC lines over
//! the proxy's real stdio loop (OS pipes), one page of each list and never a cursor, no
//! attention to `list_changed`, and 60 s for any answer. Every message from the proxy is kept
//! in the order it arrived, with its arrival time, so tests can check order and timing.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use authful_mcp_proxy::{auth::browser::Browser, config::Settings, proxy::RunError};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::unix::pipe,
    sync::Notify,
    task::JoinHandle,
};

/// How long the client waits for any answer: Claude Desktop's (and the TypeScript SDK's) limit.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// One message from the proxy.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The message.
    pub message: Value,
}

/// The client, the proxy it started, and everything the proxy said.
pub struct ListOnce {
    writer: Arc<tokio::sync::Mutex<pipe::Sender>>,
    /// The result the client answers the proxy's requests of a method with (else `{}`).
    answers: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    arrived: Arc<Notify>,
    started: Instant,
    next_id: u64,
    reader: JoinHandle<()>,
    proxy: JoinHandle<Result<(), RunError>>,
}

async fn write_line(writer: &tokio::sync::Mutex<pipe::Sender>, line: &[u8]) {
    let mut writer = writer.lock().await;
    writer.write_all(line).await.expect("the proxy reads stdin");
    writer
        .write_all(b"\n")
        .await
        .expect("the proxy reads stdin");
}

impl ListOnce {
    /// Starts the proxy's server loop on pipes, as a desktop client starts the command.
    pub fn start(settings: Settings, browser: Arc<dyn Browser>) -> Self {
        let super::Pipes {
            to_proxy,
            from_proxy,
            proxy,
        } = super::serve_on_pipes(settings, browser, std::future::pending());
        let writer = Arc::new(tokio::sync::Mutex::new(to_proxy));
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let started = Instant::now();
        let answers: Arc<Mutex<std::collections::HashMap<String, Value>>> = Arc::default();
        let reader = {
            let (writer, arrivals, arrived, answers) = (
                Arc::clone(&writer),
                Arc::clone(&arrivals),
                Arc::clone(&arrived),
                Arc::clone(&answers),
            );
            tokio::spawn(async move {
                let mut lines = BufReader::new(from_proxy).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let message: Value =
                        serde_json::from_str(&line).expect("every stdout line is JSON");
                    assert_eq!(message["jsonrpc"], "2.0", "{message}");
                    // The proxy's own requests (ping, roots) get a plain answer.
                    if let (Some(id), Some(method)) =
                        (message.get("id"), message["method"].as_str())
                    {
                        let answer = answers.lock().unwrap().get(method).cloned();
                        let result = match method {
                            _ if answer.is_some() => answer.unwrap_or_default(),
                            "roots/list" => json!({"roots": []}),
                            _ => json!({}),
                        };
                        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
                        write_line(&writer, answer.to_string().as_bytes()).await;
                    }
                    arrivals.lock().unwrap().push(Arrival { message });
                    arrived.notify_waiters();
                }
            })
        };
        Self {
            writer,
            answers,
            arrivals,
            arrived,
            started,
            next_id: 0,
            reader,
            proxy,
        }
    }

    /// Time since the client started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Writes one raw line to the proxy's stdin.
    pub async fn send_line(&self, line: &[u8]) {
        write_line(&self.writer, line).await;
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(line.to_string().as_bytes()).await;
        id
    }

    /// Sends a request and waits (up to [`REQUEST_LIMIT`]) for its answer: the whole response
    /// message, `result` or `error`.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params).await;
        self.answer_to(id).await
    }

    /// Waits (up to [`REQUEST_LIMIT`]) for the answer to request `id`.
    pub async fn answer_to(&self, id: Value) -> Value {
        let deadline = tokio::time::Instant::now() + REQUEST_LIMIT;
        loop {
            let waiting = self.arrived.notified();
            tokio::pin!(waiting);
            // Registered before looking, so an answer that arrives in between still wakes us.
            waiting.as_mut().enable();
            if let Some(answer) = self.find_answer(&id) {
                return answer;
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                panic!(
                    "no answer to request {id} within {REQUEST_LIMIT:?}, as a desktop client would give up"
                );
            }
        }
    }

    fn find_answer(&self, id: &Value) -> Option<Value> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.message.get("id") == Some(id) && a.message.get("method").is_none())
            .map(|a| a.message.clone())
    }

    /// `initialize` with `protocol_version` and a desktop client's capabilities, then
    /// `notifications/initialized`; returns the answer.
    pub async fn initialize(&mut self, protocol_version: &str) -> Value {
        self.initialize_as("list-once-desktop", protocol_version)
            .await
    }

    /// The same, as the client named `client` (its `clientInfo.name`).
    pub async fn initialize_as(&mut self, client: &str, protocol_version: &str) -> Value {
        let capabilities = json!({
            "roots": {"listChanged": true},
            "extensions": {
                "io.modelcontextprotocol/ui": {"mimeTypes": ["text/html;profile=mcp-app"]}
            }
        });
        self.initialize_with(client, protocol_version, capabilities)
            .await
    }

    /// The same, declaring `capabilities`.
    pub async fn initialize_with(
        &mut self,
        client: &str,
        protocol_version: &str,
        capabilities: Value,
    ) -> Value {
        let answer = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": protocol_version,
                    "capabilities": capabilities,
                    "clientInfo": {"name": client, "version": "1.0"},
                }),
            )
            .await;
        // A refused handshake ends the session: there is nobody to tell.
        if answer.get("result").is_some() {
            self.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .await;
        }
        answer
    }

    /// From now on, the proxy's requests of `method` are answered with `result`.
    pub fn answer_with(&self, method: &str, result: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(method.to_owned(), result);
    }

    /// The one page of a list that the client ever reads: its items (panics on an error).
    pub async fn list_once(&mut self, method: &str) -> Vec<Value> {
        let key = match method {
            "tools/list" => "tools",
            "prompts/list" => "prompts",
            "resources/list" => "resources",
            "resources/templates/list" => "resourceTemplates",
            other => panic!("not a list: {other}"),
        };
        let answer = self.request(method, json!({})).await;
        answer["result"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{method} failed: {answer}"))
            .clone()
    }

    /// Calls a tool; returns the whole response message.
    pub async fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// Everything the proxy sent so far, in order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Waits for the proxy to end on its own (after a refused `initialize`, say).
    pub async fn ended(self) -> Result<(), RunError> {
        self.reader.abort();
        tokio::time::timeout(Duration::from_secs(10), self.proxy)
            .await
            .expect("the proxy ends on its own")
            .expect("proxy task")
    }

    /// Closes stdin, as a desktop client does when it quits, and waits for the proxy to end.
    pub async fn stop(self) {
        // The reader holds the writer too (to answer the proxy's requests): stop it first.
        self.reader.abort();
        let _ = self.reader.await;
        drop(self.writer);
        let ended = tokio::time::timeout(Duration::from_secs(10), self.proxy)
            .await
            .expect("the proxy ends when stdin closes")
            .expect("proxy task");
        assert!(ended.is_ok(), "{ended:?}");
    }
}

/// The names of listed items.
pub fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}
