//! `authful-mcp-proxy status [--json]`: a look at each backend — its profile, issuer, token
//! and scopes, and whether it answers with the token.
//!
//! It never opens a browser: a token comes from the cache, a refresh, or a service account's
//! own credentials. A backend gets [`CHECK_TIMEOUT`] to answer `initialize`, and
//! [`CHECK_MAX_ANSWER_BYTES`] of answer are read at most; what it names itself is shown
//! without control characters (a backend is a stranger to the terminal `status` prints on).

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    auth::{
        self, Access,
        browser::{Browser, SystemBrowser},
        cache::{AccessToken, unix_now},
        resource::Challenge,
    },
    clients,
    config::{Backend, Settings},
    error_text::{chain, printable, untrusted},
};

use super::Outcome;

/// How long `status` gives one backend: connecting, its whole answer to `initialize`, and
/// ending the session it opened.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The most of a backend's answer to `initialize` that `status` reads. An honest answer is a
/// few KiB; a backend that streams without end is cut off here, not read into memory.
pub const CHECK_MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// "valid for 59 min", "expired".
fn validity(access: &AccessToken) -> String {
    match access.seconds_left(unix_now()) {
        None => "valid (no expiry given)".into(),
        Some(left) if left <= 0 => "expired".into(),
        Some(left) if left < 120 => format!("valid for {left} s"),
        Some(left) => format!("valid for {} min", left / 60),
    }
}

/// One backend's line of `status`.
#[derive(Debug, Serialize)]
struct BackendStatus {
    backend: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'static str>,
    /// `none`, `valid`, `expired`, `refreshable` (expired, with a refresh token), `not needed`.
    token: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    answers: bool,
    check: String,
}

/// Shows every backend, as text or (`json`) JSON. Exit status: 0 every backend answers, 1
/// some does not.
pub async fn run(settings: Settings, json: bool) -> Outcome {
    // Managers that never ask a person to sign in: `status` only looks.
    let browser: Arc<dyn Browser> = Arc::new(SystemBrowser);
    let managers =
        auth::non_interactive_managers(&settings, &clients::identity_provider(), &browser);
    let http = clients::backend();
    let mut lines = Vec::new();
    for backend in &settings.backends {
        let mut line = BackendStatus {
            backend: backend.name.clone(),
            url: backend.url.to_string(),
            profile: None,
            issuer: None,
            flow: None,
            token: "not needed",
            expires_at: None,
            scopes: None,
            resource: None,
            answers: false,
            check: String::new(),
        };
        let manager = backend.profile.as_ref().and_then(|p| managers.get(&p.name));
        let mut token = None;
        if let (Some(profile), Some(manager)) = (&backend.profile, manager) {
            line.profile = Some(profile.name.clone());
            line.flow = Some(profile.flow.as_str());
            let stored = manager.stored();
            line.issuer = stored
                .as_ref()
                .map(|t| t.issuer.clone())
                .or_else(|| profile.issuer_url.clone());
            let access = manager.access(&backend.name);
            let resource = access.as_ref().ok().and_then(Access::resource);
            line.resource = resource.clone();
            let held = stored.as_ref().and_then(|t| t.access(resource.as_deref()));
            // What the provider said it granted, and what a backend named as its resource,
            // are a stranger's words on the terminal.
            line.resource = line.resource.as_deref().map(printable);
            line.token = match (
                &held,
                stored.as_ref().and_then(|t| t.refresh_token.as_ref()),
            ) {
                (None, _) => "none",
                (Some(a), _) if a.seconds_left(unix_now()).is_none_or(|s| s > 0) => "valid",
                (Some(_), Some(_)) => "refreshable",
                (Some(_), None) => "expired",
            };
            if let Some(held) = &held {
                line.expires_at = held.expires_at;
                line.scopes = held.scope.as_deref().map(printable);
            }
            let checked = match &access {
                Ok(access) => access.token().await,
                Err(e) => Err(e.clone()),
            };
            match checked {
                Ok(t) => token = Some(t),
                Err(e) => line.check = format!("not checked: {}", printable(&e.to_string())),
            }
        }
        if backend.profile.is_none() || token.is_some() {
            match check(&http, backend, token.as_ref().map(|t| t.expose())).await {
                Ok(server) => {
                    line.answers = true;
                    line.check = format!("answers ({server})");
                }
                Err(e) => line.check = e,
            }
        }
        lines.push(line);
    }
    let all_answer = lines.iter().all(|l| l.answers);
    if json {
        let text = serde_json::to_string_pretty(&json!({ "backends": lines })).unwrap_or_default();
        println!("{text}");
    } else {
        for line in &lines {
            println!("{}  {}", line.backend, line.url);
            if let Some(profile) = &line.profile {
                println!(
                    "  profile  {profile} ({} flow), issuer {}",
                    line.flow.unwrap_or_default(),
                    line.issuer.as_deref().unwrap_or("not known yet")
                );
                let detail = match (line.token, line.expires_at) {
                    ("valid", Some(_)) => {
                        let access = AccessToken {
                            token: crate::secret::Secret::new(""),
                            expires_at: line.expires_at,
                            scope: None,
                        };
                        validity(&access)
                    }
                    (state, _) => state.to_owned(),
                };
                println!("  token    {detail}");
                if let Some(scopes) = &line.scopes {
                    println!("  scopes   {scopes}");
                }
                if let Some(resource) = &line.resource {
                    println!("  resource {resource}");
                }
            }
            println!("  backend  {}", line.check);
        }
    }
    if all_answer {
        Outcome::Success
    } else {
        Outcome::Failed
    }
}

/// Asks `backend` to start an MCP session with `token`, and ends the session it opens:
/// `Ok(server name)` when it answers, or what it said. Within [`CHECK_TIMEOUT`] in all, and
/// [`CHECK_MAX_ANSWER_BYTES`] read at most.
async fn check(
    http: &reqwest::Client,
    backend: &Backend,
    token: Option<&str>,
) -> Result<String, String> {
    check_within(http, backend, token, CHECK_TIMEOUT, CHECK_MAX_ANSWER_BYTES).await
}

/// [`check`] with its limits.
async fn check_within(
    http: &reqwest::Client,
    backend: &Backend,
    token: Option<&str>,
    limit: Duration,
    max_bytes: usize,
) -> Result<String, String> {
    // One deadline over the whole exchange — connecting, the answer's body read to its first
    // response, and the session's end — so that nothing a backend does keeps `status` longer.
    let deadline = tokio::time::Instant::now() + limit;
    let (name, session) = match tokio::time::timeout_at(
        deadline,
        initialize(http, backend, token, max_bytes),
    )
    .await
    {
        Ok(answer) => answer?,
        Err(_) => {
            return Err(format!(
                "no answer to initialize within {}; the backend is stalled or too slow",
                seconds(limit)
            ));
        }
    };
    if let Some(session) = session {
        let mut close = http
            .delete(backend.url.clone())
            .header("mcp-session-id", session);
        if let Some(token) = token {
            close = close.bearer_auth(token);
        }
        // Best effort: the backend answered, which is what status reports; a close that does
        // not end in time is abandoned at the same deadline.
        let _ = tokio::time::timeout_at(deadline, close.send()).await;
    }
    Ok(name)
}

/// "15 s", or "0.5 s" for the short limits of tests.
fn seconds(limit: Duration) -> String {
    format!("{} s", limit.as_secs_f64())
}

/// Sends `initialize` and reads the answer: the server's name (stripped for a terminal) and
/// the session it opened, or why it did not answer.
async fn initialize(
    http: &reqwest::Client,
    backend: &Backend,
    token: Option<&str>,
    max_bytes: usize,
) -> Result<(String, Option<String>), String> {
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE,
            "capabilities": {},
            "clientInfo": {"name": "authful-mcp-proxy status", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    // The backends' client: it follows a redirect only within the backend's origin, so the
    // token and headers go nowhere else.
    let mut request = http
        .post(backend.url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/json, text/event-stream",
        )
        .json(&initialize);
    for (name, value) in &backend.headers {
        request = request.header(name.as_str(), value.expose());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("unreachable: {}", chain(&e)))?;
    let status = response.status();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(Challenge::parse);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        let why = challenge
            .as_ref()
            .and_then(Challenge::describe)
            .map(|d| format!(": {}", untrusted(&d)))
            .unwrap_or_default();
        return Err(format!("refuses: HTTP {}{why}", status.as_u16()));
    }
    let name = match first_response(response, max_bytes).await? {
        Some(message) if message.get("error").is_some() => {
            let error = &message["error"];
            return Err(format!(
                "refuses initialize: JSON-RPC error {}: {}",
                error["code"].as_i64().unwrap_or_default(),
                untrusted(error["message"].as_str().unwrap_or("no message"))
            ));
        }
        Some(message) => message["result"]["serverInfo"]["name"]
            .as_str()
            .map(untrusted)
            .filter(|name| !name.is_empty()),
        None => None,
    };
    Ok((name.unwrap_or_else(|| "an MCP server".into()), session))
}

/// The first JSON-RPC response (a message with `result` or `error`) in the answer to
/// `initialize`: a JSON body, or the `data` of an event of an SSE stream, where reading stops
/// at the first such event. `Ok(None)` when the answer ends without one; an error when it
/// goes on past `max_bytes` or breaks off.
async fn first_response(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Option<Value>, String> {
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
    let mut events = SseEvents::default();
    let mut body = Vec::new();
    let mut read = 0;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "no usable answer: the answer to initialize broke off: {}",
                    chain(&e)
                ));
            }
        };
        read += chunk.len();
        if read > max_bytes {
            return Err(format!(
                "no usable answer: more than {} KiB in answer to initialize without a JSON-RPC \
                 response (status reads no more); the backend does not behave like an MCP server",
                max_bytes / 1024
            ));
        }
        if is_sse {
            if let Some(message) = events.feed(&chunk) {
                return Ok(Some(message));
            }
        } else {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(if is_sse {
        events.finish()
    } else {
        serde_json::from_slice(&body).ok().and_then(response_in)
    })
}

/// The JSON-RPC response in `message` (or the first in a batch), if it holds one.
fn response_in(message: Value) -> Option<Value> {
    match message {
        Value::Array(batch) => batch.into_iter().find_map(response_in),
        Value::Object(ref object)
            if object.contains_key("result") || object.contains_key("error") =>
        {
            Some(message)
        }
        _ => None,
    }
}

/// The events of an SSE stream fed in pieces, as the WHATWG rules cut them: lines end with
/// LF, CR or CRLF; `data` fields accumulate; a blank line ends an event; comments and other
/// fields are skipped. What it holds is bounded by what the caller feeds it.
#[derive(Default)]
struct SseEvents {
    line: Vec<u8>,
    data: String,
    /// The last byte fed was a CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl SseEvents {
    /// Feeds `bytes`; the first JSON-RPC response an event completes in them, if any.
    fn feed(&mut self, bytes: &[u8]) -> Option<Value> {
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(message) = self.end_line(&line) {
                        return Some(message);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        None
    }

    /// At the end of the stream: an event left without its blank line still counts.
    fn finish(mut self) -> Option<Value> {
        let line = std::mem::take(&mut self.line);
        self.end_line(&line).or_else(|| self.dispatch())
    }

    fn end_line(&mut self, line: &[u8]) -> Option<Value> {
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &[][..]),
        };
        if field == b"data" {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            self.data.push_str(&String::from_utf8_lossy(value));
            self.data.push('\n');
        }
        None
    }

    fn dispatch(&mut self) -> Option<Value> {
        let data = std::mem::take(&mut self.data);
        serde_json::from_str(data.strip_suffix('\n').unwrap_or(&data))
            .ok()
            .and_then(response_in)
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Instant};

    use axum::{
        Router,
        body::{Body, Bytes},
        http::header,
        routing::post,
    };
    use tokio_util::sync::CancellationToken;
    use url::Url;

    use super::*;

    const RESPONSE: &str =
        r#"{"jsonrpc":"2.0","id":1,"result":{"serverInfo":{"name":"tickets","version":"1"}}}"#;

    /// Every way of feeding `stream` to an [`SseEvents`]: whole, and a byte at a time.
    fn events_of(stream: &str) -> [Option<Value>; 2] {
        let mut whole = SseEvents::default();
        let whole = whole.feed(stream.as_bytes()).or_else(|| whole.finish());
        let mut bytes = SseEvents::default();
        let bytes = stream
            .as_bytes()
            .iter()
            .find_map(|b| bytes.feed(&[*b]))
            .or_else(|| bytes.finish());
        [whole, bytes]
    }

    #[test]
    fn sse_events_are_cut_as_the_standard_says() {
        let notification = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        let streams = [
            format!("data: {RESPONSE}\n\n"),
            format!("data:{RESPONSE}\r\n\r\n"),
            format!("data: {RESPONSE}\r\r"),
            // A notification first, comments, other fields, data over two lines (joined by a
            // newline, here between two JSON members), no final blank line.
            format!(
                ": hello\nevent: message\nid: 7\ndata: {notification}\n\nretry: 10\n\
                 data: {}\ndata: {}",
                &RESPONSE[..24],
                &RESPONSE[24..]
            ),
        ];
        for stream in &streams {
            for event in events_of(stream) {
                assert_eq!(
                    event.as_ref().map(|m| &m["result"]["serverInfo"]["name"]),
                    Some(&json!("tickets")),
                    "{stream:?}"
                );
            }
        }
        for stream in [
            format!("data: {notification}\n\n"),
            ": only a comment\n\n".into(),
        ] {
            assert_eq!(events_of(&stream), [None, None], "{stream:?}");
        }
    }

    /// Serves `router` on a fresh loopback port until the token is cancelled.
    async fn serve(router: Router) -> (Url, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/mcp", listener.local_addr().unwrap())).unwrap();
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await;
        });
        (url, stop)
    }

    /// An SSE answer: `first`, then `then` every `pause`, without end.
    fn endless_sse(first: &'static str, then: &'static [u8], pause: Duration) -> Router {
        Router::new().route(
            "/mcp",
            post(move || async move {
                let head = futures::stream::once(async move {
                    Ok::<_, Infallible>(Bytes::from_static(first.as_bytes()))
                });
                let tail = futures::stream::unfold((), move |()| async move {
                    tokio::time::sleep(pause).await;
                    Some((Ok(Bytes::from_static(then)), ()))
                });
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(futures::StreamExt::chain(head, tail)),
                )
            }),
        )
    }

    async fn check_at(url: Url, limit: Duration, max_bytes: usize) -> Result<String, String> {
        let backend = Backend::new("hostile", url, None, None);
        check_within(&clients::backend(), &backend, None, limit, max_bytes).await
    }

    #[tokio::test]
    async fn an_event_that_never_ends_is_given_up_at_the_time_limit() {
        let (url, stop) = serve(endless_sse("data: {", b"a", Duration::from_millis(20))).await;
        let started = Instant::now();
        let outcome = check_at(url, Duration::from_millis(300), CHECK_MAX_ANSWER_BYTES).await;
        let error = outcome.expect_err("no answer");
        assert!(
            error.contains("no answer to initialize within 0.3 s"),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn an_answer_without_end_is_cut_at_the_size_limit() {
        static KIB: [u8; 1024] = [b'a'; 1024];
        let (url, stop) = serve(endless_sse("data: {", &KIB, Duration::ZERO)).await;
        let error = check_at(url, Duration::from_secs(10), 64 * 1024)
            .await
            .expect_err("too large");
        assert!(error.contains("more than 64 KiB"), "{error}");
        stop.cancel();
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_response() {
        const FIRST: &str = concat!(
            "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"serverInfo\":",
            "{\"name\":\"tickets\",\"version\":\"1\"}}}\n\n"
        );
        let (url, stop) = serve(endless_sse(
            FIRST,
            b": still here\n",
            Duration::from_millis(20),
        ))
        .await;
        let started = Instant::now();
        let name = check_at(url, Duration::from_secs(10), CHECK_MAX_ANSWER_BYTES).await;
        assert_eq!(name.as_deref(), Ok("tickets"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_server_name_and_an_error_are_stripped_for_the_terminal() {
        let router = Router::new()
            .route(
                "/mcp",
                post(|| async {
                    axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {
                        "serverInfo": {"name": "evil\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}name"}
                    }}))
                }),
            )
            .route(
                "/error",
                post(|| async {
                    axum::Json(json!({"jsonrpc": "2.0", "id": 1, "error": {
                        "code": -32602, "message": format!("bad\u{1b}[2J{}", "x".repeat(5000))
                    }}))
                }),
            );
        let (url, stop) = serve(router).await;
        let name = check_at(url.clone(), Duration::from_secs(10), CHECK_MAX_ANSWER_BYTES).await;
        assert_eq!(name.as_deref(), Ok("evil]0;pwned[2Jname"));
        let error = check_at(
            url.join("/error").unwrap(),
            Duration::from_secs(10),
            1 << 20,
        )
        .await
        .expect_err("a JSON-RPC error");
        assert!(
            error.starts_with("refuses initialize: JSON-RPC error -32602: bad[2Jxxx"),
            "{error}"
        );
        assert!(
            error.chars().count() < 400 && error.chars().all(|c| !c.is_control()),
            "{error}"
        );
        stop.cancel();
    }
}
