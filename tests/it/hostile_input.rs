//! Broken and hostile input on stdin: every line that cannot be used gets the JSON-RPC 2.0 error
//! it calls for, with the request's id where there is one, and the proxy keeps serving — in
//! the gateway and in the transparent single-backend mode, over real OS pipes.

use std::time::Duration;

use authful_mcp_proxy::{
    config::{Backend, Settings},
    proxy,
    stdio::MAX_MESSAGE_BYTES,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use url::Url;

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
};

type Reader = Lines<BufReader<tokio::net::unix::pipe::Receiver>>;

/// The real proxy loop on two pipes, driven line by line.
struct Raw {
    to_proxy: tokio::net::unix::pipe::Sender,
    from_proxy: Reader,
    proxy: tokio::task::JoinHandle<Result<(), proxy::RunError>>,
}

impl Raw {
    fn start(settings: Settings) -> Self {
        let browser = TestBrowser::new(BrowserMode::Complete);
        let pipes = support::serve_on_pipes(settings, browser, std::future::pending());
        Self {
            to_proxy: pipes.to_proxy,
            from_proxy: BufReader::new(pipes.from_proxy).lines(),
            proxy: pipes.proxy,
        }
    }

    async fn send(&mut self, line: &[u8]) {
        self.to_proxy.write_all(line).await.unwrap();
        self.to_proxy.write_all(b"\n").await.unwrap();
    }

    /// The next message from the proxy that is not a notification.
    async fn answer(&mut self) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.from_proxy.next_line())
                .await
                .expect("the proxy answers")
                .unwrap()
                .expect("stdout stays open");
            let message: Value = serde_json::from_str(&line).expect("every stdout line is JSON");
            assert_eq!(message["jsonrpc"], "2.0", "{message}");
            if message.get("id").is_some() {
                return message;
            }
        }
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(line.to_string().as_bytes()).await;
        let answer = self.answer().await;
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    async fn initialize(&mut self) {
        let init = self
            .request(
                1,
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "hostile", "version": "1"},
                }),
            )
            .await;
        assert!(init["result"]["serverInfo"].is_object(), "{init}");
        self.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
    }

    async fn stop(self) {
        drop(self.to_proxy);
        let ended = tokio::time::timeout(Duration::from_secs(10), self.proxy)
            .await
            .expect("the proxy ends when stdin closes")
            .unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    }
}

fn error_of(answer: &Value) -> (i64, String) {
    let error = &answer["error"];
    (
        error["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("an error: {answer}")),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Sends every kind of bad line, checking each answer, then proves the session still works.
async fn hostile_session(settings: Settings, tool: &str) {
    let mut raw = Raw::start(settings);

    // Before initialize, too: garbage is answered, and the handshake still works afterwards.
    raw.send(b"this is not json").await;
    let answer = raw.answer().await;
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(error_of(&answer).0, -32700, "{answer}");
    raw.initialize().await;

    let cases: Vec<(&[u8], Value, i64)> = vec![
        (b"{\"jsonrpc\":\"2.0\",\"id\":", Value::Null, -32700),
        (b"\xff\xfe not utf-8", Value::Null, -32700),
        (b"[1, 2, 3]", Value::Null, -32600),
        (
            br#"[{"jsonrpc":"2.0","id":70,"method":"ping"}]"#,
            Value::Null,
            -32600,
        ),
        (b"42", Value::Null, -32600),
        (
            br#"{"jsonrpc":"1.0","id":71,"method":"ping"}"#,
            json!(71),
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
            Value::Null,
            -32600,
        ),
        (br#"{"jsonrpc":"2.0","id":72}"#, json!(72), -32600),
        (
            br#"{"jsonrpc":"2.0","id":"t","method":"tools/call","params":{"arguments":{}}}"#,
            json!("t"),
            -32602,
        ),
        // JSON-RPC params must be structured (object or array): not even a request.
        (
            br#"{"jsonrpc":"2.0","id":73,"method":"tools/call","params":"x"}"#,
            json!(73),
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":74,"method":"resources/read","params":{}}"#,
            json!(74),
            -32602,
        ),
        (
            br#"{"jsonrpc":"2.0","id":75,"method":"prompts/get","params":{"name":5}}"#,
            json!(75),
            -32602,
        ),
        (
            br#"{"jsonrpc":"2.0","id":76,"method":"no/such/method","params":{}}"#,
            json!(76),
            -32601,
        ),
    ];
    for (line, id, code) in cases {
        raw.send(line).await;
        let answer = raw.answer().await;
        let shown = String::from_utf8_lossy(line);
        assert_eq!(answer["id"], id, "{shown} -> {answer}");
        assert_eq!(error_of(&answer).0, code, "{shown} -> {answer}");
    }
    // Notifications are never answered, not even broken ones: the next answer is the ping's.
    raw.send(br#"{"jsonrpc":"2.0","method":"notifications/whatever","params":{"x":1}}"#)
        .await;
    raw.send(b"").await;
    raw.send(b"   \r").await;
    let pong = raw.request(80, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");

    // Over the limit: answered with the id, never buffered whole; the next request works.
    let mut huge = br#"{"jsonrpc":"2.0","id":81,"method":"tools/call","params":{"name":"echo","arguments":{"text":""#.to_vec();
    huge.resize(MAX_MESSAGE_BYTES + 10, b'a');
    huge.extend_from_slice(br#""}}}"#);
    raw.send(&huge).await;
    let answer = raw.answer().await;
    assert_eq!(answer["id"], 81, "{answer}");
    let (code, message) = error_of(&answer);
    assert_eq!(code, -32600);
    assert!(
        message.contains(&MAX_MESSAGE_BYTES.to_string()),
        "{message}"
    );

    // A big message under the limit goes through (3 MiB: the test backend takes up to 4).
    let text = "b".repeat(3 << 20);
    let echoed = raw
        .request(
            82,
            "tools/call",
            json!({"name": tool, "arguments": {"text": text}}),
        )
        .await;
    let echoed_len = echoed["result"]["content"][0]["text"]
        .as_str()
        .map(str::len);
    assert_eq!(
        echoed_len,
        Some(text.len()),
        "{}",
        &echoed.to_string()[..300.min(echoed.to_string().len())]
    );
    let listed = raw.request(83, "tools/list", json!({})).await;
    assert!(
        listed["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{listed}"
    );
    raw.stop().await;
}

fn settings(backend: &TestBackend, prefix: Option<&str>) -> (Settings, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let settings = Settings {
        cache_dir: cache.path().to_path_buf(),
        mode: if prefix.is_some() {
            authful_mcp_proxy::config::Mode::Gateway
        } else {
            authful_mcp_proxy::config::Mode::DropIn
        },
        backends: vec![Backend::new(
            "open",
            Url::parse(&backend.url()).unwrap(),
            None,
            prefix,
        )],
        gateway: Default::default(),
    };
    (settings, cache)
}

#[tokio::test]
async fn gateway_answers_every_bad_line_and_keeps_serving() {
    let backend = TestBackend::start(BackendConfig::open("open")).await;
    let (settings, _cache) = settings(&backend, Some("open"));
    hostile_session(settings, "open_echo").await;
    backend.shutdown();
}

#[tokio::test]
async fn single_backend_mode_answers_every_bad_line_and_keeps_serving() {
    let backend = TestBackend::start(BackendConfig::open("open")).await;
    let (settings, _cache) = settings(&backend, None);
    assert_eq!(settings.mode, authful_mcp_proxy::config::Mode::DropIn);
    hostile_session(settings, "echo").await;
    backend.shutdown();
}
