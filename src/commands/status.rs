//! `authful-mcp-proxy status [--json]`: a look at each backend — its profile, issuer, token
//! and scopes, and whether it answers with the token.
//!
//! It never opens a browser: its token managers are
//! [non-interactive](crate::auth::non_interactive_managers), so a token comes from the cache, a
//! refresh, or a service account's own credentials; a backend that refuses one makes them
//! renew it once, as in the proxy, but never ask a person.
//!
//! Whether a backend answers is checked the way the proxy connects to it: the same
//! [`backend::connect`] (rmcp's Streamable HTTP client over the proxy's HTTP layer, the same
//! headers and token, the same renewal on a `401`), with a handler that needs no stdio client
//! ([`BackendHandler::without_client`]). So what `status` says of a backend is what the proxy
//! would meet. The check is bounded, since a backend is a stranger: connecting, `initialize`
//! and closing the session again (its `DELETE`) get [`CHECK_TIMEOUT`] in all, and no more than
//! [`CHECK_MAX_ANSWER_BYTES`] of any one answer is read. What a backend says of itself, or
//! says when it refuses, is printed without control characters and cut to a few hundred
//! characters: it reaches the person's terminal.

use std::{sync::Arc, time::Duration};

use rmcp::{
    model::{ClientCapabilities, ClientConfig, Implementation},
    service::ClientInitializeError,
    transport::streamable_http_client::StreamableHttpError,
};
use serde::Serialize;
use serde_json::json;
use tokio::time::{Instant, timeout_at};

use crate::{
    auth::{
        self, Access, AuthError, Managers,
        browser::{Browser, SystemBrowser},
        cache::unix_now,
        resource::Challenge,
    },
    backend::{
        self, BackendHandler, ConnectError,
        authorized_http::{AnswerError, UNEXPLAINED_REFUSAL},
    },
    clients,
    config::{Backend, Settings},
    error_text::{self, chain, printable, untrusted},
    protocol,
};

use super::Outcome;

/// How long `status` gives one backend: connecting, its whole answer to `initialize`, and
/// ending the session it opened.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The most of any one of a backend's answers that `status` reads. An honest answer to
/// `initialize` is a few KiB; a backend that streams without end is cut off here, not read
/// into memory.
pub const CHECK_MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One backend's line of `status`; `--json` prints these as they are.
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

impl BackendStatus {
    /// The line of `backend` before anything is known of its token or its answer.
    fn of(backend: &Backend) -> Self {
        Self {
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
        }
    }
}

/// Shows every backend, as text or (`json`) JSON. Exit status: 0 every backend answers, 1
/// some does not.
pub async fn run(settings: Settings, json: bool) -> Outcome {
    let browser: Arc<dyn Browser> = Arc::new(SystemBrowser);
    let managers =
        auth::non_interactive_managers(&settings, &clients::identity_provider(), &browser);
    let mut lines = Vec::new();
    for backend in &settings.backends {
        lines.push(look(backend, &managers).await);
    }
    if json {
        let text = serde_json::to_string_pretty(&json!({ "backends": lines })).unwrap_or_default();
        println!("{text}");
    } else {
        lines.iter().for_each(print_text);
    }
    if lines.iter().all(|l| l.answers) {
        Outcome::Success
    } else {
        Outcome::Failed
    }
}

/// `backend`'s line: its token as the managers hold it, then — with a token, or without a
/// profile — whether it answers.
async fn look(backend: &Backend, managers: &Managers) -> BackendStatus {
    let mut line = BackendStatus::of(backend);
    let access = match auth::access(managers, backend) {
        Ok(access) => access,
        Err(e) => {
            line.check = format!("not checked: {}", printable(&e.to_string()));
            return line;
        }
    };
    if let (Some(profile), Some(access)) = (&backend.profile, &access) {
        line.profile = Some(profile.name.clone());
        line.flow = Some(profile.flow.as_str());
        let stored = access.manager().stored();
        line.issuer = stored
            .as_ref()
            .map(|t| t.issuer.clone())
            .or_else(|| profile.issuer_url.clone());
        let resource = access.resource();
        let held = stored.as_ref().and_then(|t| t.access(resource.as_deref()));
        // What the provider said it granted, and what a backend named as its resource, are a
        // stranger's words on the terminal.
        line.resource = resource.as_deref().map(printable);
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
        // A token first, outside the check's time: a refresh has its own limits, and a
        // backend is not worth asking without one.
        if let Err(e) = access.token().await {
            line.check = format!("not checked: {}", printable(&e.to_string()));
            return line;
        }
    }
    match check(backend, access).await {
        Ok(server) => {
            line.answers = true;
            line.check = format!("answers ({server})");
        }
        Err(why) => line.check = why,
    }
    line
}

/// `line` as text: a heading, then the profile and token (for a backend with a profile) and
/// the check, indented.
fn print_text(line: &BackendStatus) {
    println!("{}  {}", line.backend, line.url);
    if let Some(profile) = &line.profile {
        println!(
            "  profile  {profile} ({} flow), issuer {}",
            line.flow.unwrap_or_default(),
            line.issuer.as_deref().unwrap_or("not known yet")
        );
        let detail = match (line.token, line.expires_at) {
            ("valid", Some(at)) => validity(at),
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

/// "valid for 59 min", "expired", for a token that expires at `expires_at` (Unix seconds).
fn validity(expires_at: u64) -> String {
    let left = i64::try_from(expires_at)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(unix_now()).unwrap_or(0));
    match left {
        left if left <= 0 => "expired".into(),
        left if left < 120 => format!("valid for {left} s"),
        left => format!("valid for {} min", left / 60),
    }
}

/// Connects to `backend` as the proxy does, with `access` to its tokens, and ends the session
/// again: `Ok(server name)` when it answers, else why not, in `status`'s words. Within
/// [`CHECK_TIMEOUT`] in all, and [`CHECK_MAX_ANSWER_BYTES`] of any answer read at most.
async fn check(backend: &Backend, access: Option<Access>) -> Result<String, String> {
    check_within(backend, access, CHECK_TIMEOUT, CHECK_MAX_ANSWER_BYTES).await
}

/// [`check`] with its limits.
async fn check_within(
    backend: &Backend,
    access: Option<Access>,
    limit: Duration,
    max_bytes: usize,
) -> Result<String, String> {
    // One deadline over the whole exchange — connecting, the answer to `initialize`, and the
    // session's end — so that nothing a backend does keeps `status` longer.
    let deadline = Instant::now() + limit;
    let handler = BackendHandler::without_client(&backend.name, introduction());
    let connecting =
        backend::connect_bounded(backend, clients::backend(), access, handler, max_bytes);
    let (mut link, connection) = match timeout_at(deadline, connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return Err(failure(&e)),
        Err(_) => {
            return Err(format!(
                "no answer to initialize within {}; the backend is stalled or too slow",
                seconds(limit)
            ));
        }
    };
    let info = connection.info();
    let name = info
        .as_ref()
        .and_then(|info| info.server_info.as_ref().map(|s| untrusted(&s.name)))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "an MCP server".into());
    // The revision it answered in: which of MCP's two ways to start a session it takes.
    let revision = info
        .map(|info| format!(", MCP {}", untrusted(info.protocol_version.as_str())))
        .unwrap_or_default();
    // Best effort: the backend answered, which is what status reports; a close (the session's
    // DELETE) that does not end in time is abandoned at the same deadline.
    let _ = timeout_at(deadline, link.close()).await;
    Ok(format!("{name}{revision}"))
}

/// How `status` introduces itself to a backend: by its own name, asking for no capability a
/// client would have to serve.
fn introduction() -> ClientConfig {
    protocol::introduction(&ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("authful-mcp-proxy status", env!("CARGO_PKG_VERSION")),
    ))
}

/// "15 s", or "0.5 s" for the short limits of tests.
fn seconds(limit: Duration) -> String {
    format!("{} s", limit.as_secs_f64())
}

/// Why a backend did not answer, as `status` prints it: what it refused with (its challenge
/// described), or what went wrong on the way. The backend's own words are cut and stripped of
/// control characters.
fn failure(error: &ConnectError) -> String {
    match error {
        ConnectError::Answer {
            error: AnswerError::TooLarge { limit },
            ..
        } => format!(
            "no usable answer: more than {} KiB in answer to initialize without a JSON-RPC \
             response (status reads no more); the backend does not behave like an MCP server",
            limit / 1024
        ),
        ConnectError::Answer {
            error: AnswerError::BrokeOff(why),
            ..
        } => format!(
            "no usable answer: the answer to initialize broke off: {}",
            untrusted(why)
        ),
        ConnectError::HandshakeTimeout { limit, .. } => format!(
            "no answer to initialize within {} (its request_timeout); the backend is stalled \
             or too slow",
            seconds(*limit)
        ),
        ConnectError::Login { source, .. } => refused_token(source),
        ConnectError::InvalidHeader { .. } => format!("not checked: {error}"),
        ConnectError::Handshake { reason, cause, .. } => handshake_failure(cause, reason),
        ConnectError::HttpSse { error, .. } => format!("no usable answer: {error}"),
    }
}

/// A token refused on the way: after a renewal (`401`), or for scopes no sign-in may add
/// (`403`). The same errors make the proxy's requests fail.
fn refused_token(error: &AuthError) -> String {
    match error {
        AuthError::Refused { reason, .. } if reason == UNEXPLAINED_REFUSAL => {
            "refuses: HTTP 401, a renewed token too".to_owned()
        }
        AuthError::Refused {
            reason, culprit, ..
        } => format!(
            "refuses: HTTP 401: {}, a renewed token too{}",
            untrusted(reason),
            culprit
                .map(|c| format!("; most likely {c} is wrong for it"))
                .unwrap_or_default()
        ),
        AuthError::NoSignIn { said, .. } => format!(
            "refuses: HTTP 401{} (no sign-in configured)",
            said.as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ),
        AuthError::StepUpRefused { .. }
        | AuthError::ScopeNotGranted { .. }
        | AuthError::ScopeRefusedByBackend { .. } => {
            format!("refuses: HTTP 403: {}", printable(&error.to_string()))
        }
        other => format!(
            "refuses the token, and no other could be had: {}",
            printable(&other.to_string())
        ),
    }
}

/// A handshake that failed in rmcp or below: a refusal by HTTP status (with the challenge of
/// a `401` or `403` described), a host that cannot be reached, a JSON-RPC error, or else the
/// HTTP layer's `reason`.
fn handshake_failure(error: &ClientInitializeError, reason: &str) -> String {
    if let Some(http) = error_text::find::<StreamableHttpError<reqwest::Error>>(error) {
        if let Some((status, challenge)) = refusal(http) {
            let why = challenge
                .as_ref()
                .and_then(Challenge::describe)
                .map(|d| format!(": {}", untrusted(&d)))
                .unwrap_or_default();
            return format!("refuses: HTTP {status}{why}");
        }
        if let StreamableHttpError::Client(e) = http
            && (e.is_connect() || e.is_timeout() || e.is_request())
        {
            return format!("unreachable: {}", printable(&chain(e)));
        }
    }
    if let Some(ClientInitializeError::JsonRpcError(e)) =
        error_text::find::<ClientInitializeError>(error)
    {
        return format!(
            "refuses initialize: JSON-RPC error {}: {}",
            e.code.0,
            untrusted(&e.message)
        );
    }
    format!("no usable answer: {}", untrusted(reason))
}

/// The HTTP status a backend refused with, and its challenge (`WWW-Authenticate`) if it sent
/// one; `None` for an error that is no refusal.
fn refusal(error: &StreamableHttpError<reqwest::Error>) -> Option<(u16, Option<Challenge>)> {
    match error {
        StreamableHttpError::AuthRequired(e) => {
            Some((401, Challenge::parse(&e.www_authenticate_header)))
        }
        StreamableHttpError::InsufficientScope(e) => {
            Some((403, Challenge::parse(&e.www_authenticate_header)))
        }
        StreamableHttpError::HttpStatus(e) => Some((e.status, None)),
        // rmcp's words for any other status: "HTTP 404 Not Found: <the start of the body>".
        StreamableHttpError::UnexpectedServerResponse(text) => text
            .strip_prefix("HTTP ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .map(|status| (status, None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
        time::Instant,
    };

    use axum::{
        Json, Router,
        body::{Body, Bytes},
        http::{HeaderMap, StatusCode, header},
        response::{IntoResponse, Response},
        routing::post,
    };
    use serde_json::Value;
    use tokio_util::sync::CancellationToken;
    use url::Url;

    use super::*;

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

    /// A backend at `/mcp` that answers each request with what `answer` makes of its id, and
    /// each notification with `202 Accepted`, as MCP has it.
    fn backend<R: IntoResponse>(
        answer: impl Fn(Value) -> R + Clone + Send + Sync + 'static,
    ) -> Router {
        Router::new().route(
            "/mcp",
            post(move |Json(message): Json<Value>| async move {
                match message.get("id") {
                    Some(id) => answer(id.clone()).into_response(),
                    None => StatusCode::ACCEPTED.into_response(),
                }
            }),
        )
    }

    /// The result of an `initialize` from a server named `name`.
    fn initialized(name: &str) -> Value {
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "serverInfo": {"name": name, "version": "1"}
        })
    }

    /// An SSE answer: `first`, then `then` every `pause`, without end.
    fn endless_sse(first: String, then: &'static [u8], pause: Duration) -> Response {
        let head = futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(first)) });
        let tail = futures::stream::unfold((), move |()| async move {
            tokio::time::sleep(pause).await;
            Some((Ok(Bytes::from_static(then)), ()))
        });
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(futures::StreamExt::chain(head, tail)),
        )
            .into_response()
    }

    async fn check_at(url: Url, limit: Duration, max_bytes: usize) -> Result<String, String> {
        let backend = Backend::new("hostile", url, None, None);
        check_within(&backend, None, limit, max_bytes).await
    }

    #[tokio::test]
    async fn an_event_that_never_ends_is_given_up_at_the_time_limit() {
        let router = backend(|_| endless_sse("data: {".into(), b"a", Duration::from_millis(20)));
        let (url, stop) = serve(router).await;
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
    async fn an_event_without_end_is_cut_at_the_size_limit() {
        static KIB: [u8; 1024] = [b'a'; 1024];
        let router = backend(|_| endless_sse("data: {".into(), &KIB, Duration::ZERO));
        let (url, stop) = serve(router).await;
        let error = check_at(url, Duration::from_secs(10), 64 * 1024)
            .await
            .expect_err("too large");
        assert!(error.contains("more than 64 KiB"), "{error}");
        stop.cancel();
    }

    /// Messages that are each small but never include the answer count together.
    #[tokio::test]
    async fn many_small_messages_are_cut_at_the_size_limit() {
        const LOG: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\
                             \"params\":{\"level\":\"info\",\"data\":\"still here\"}}\n\n";
        let router = backend(|_| endless_sse(String::new(), LOG, Duration::ZERO));
        let (url, stop) = serve(router).await;
        let error = check_at(url, Duration::from_secs(10), 64 * 1024)
            .await
            .expect_err("too large");
        assert!(error.contains("more than 64 KiB"), "{error}");
        stop.cancel();
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_response() {
        let router = backend(|id| {
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": initialized("tickets")});
            endless_sse(
                format!("data: {answer}\n\n"),
                b": still here\n",
                Duration::from_millis(20),
            )
        });
        let (url, stop) = serve(router).await;
        let started = Instant::now();
        let name = check_at(url, Duration::from_secs(10), CHECK_MAX_ANSWER_BYTES).await;
        assert_eq!(name.as_deref(), Ok("tickets, MCP 2025-06-18"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        stop.cancel();
    }

    /// The session the check opened is ended with a `DELETE` carrying its id.
    #[tokio::test]
    async fn the_session_is_ended_with_a_delete() {
        let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
        let router = backend(|id| {
            (
                [("mcp-session-id", "session-7")],
                Json(json!({"jsonrpc": "2.0", "id": id, "result": initialized("tickets")})),
            )
        })
        .route(
            "/mcp",
            axum::routing::delete({
                let deleted = Arc::clone(&deleted);
                move |headers: HeaderMap| async move {
                    let session = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
                    deleted
                        .lock()
                        .unwrap()
                        .push(session.unwrap_or("none").to_owned());
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let (url, stop) = serve(router).await;
        let name = check_at(url, Duration::from_secs(10), CHECK_MAX_ANSWER_BYTES).await;
        assert_eq!(name.as_deref(), Ok("tickets, MCP 2025-06-18"));
        assert_eq!(*deleted.lock().unwrap(), ["session-7"]);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_server_name_and_an_error_are_stripped_for_the_terminal() {
        let named = backend(|id| {
            Json(json!({"jsonrpc": "2.0", "id": id,
                "result": initialized("evil\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}name")}))
        });
        let (url, stop) = serve(named).await;
        let name = check_at(url, Duration::from_secs(10), CHECK_MAX_ANSWER_BYTES).await;
        assert_eq!(name.as_deref(), Ok("evil]0;pwned[2Jname, MCP 2025-06-18"));
        stop.cancel();

        let refusing = backend(|id| {
            Json(json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32602, "message": format!("bad\u{1b}[2J{}", "x".repeat(5000))
            }}))
        });
        let (url, stop) = serve(refusing).await;
        let error = check_at(url, Duration::from_secs(10), CHECK_MAX_ANSWER_BYTES)
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

    /// A refusal by HTTP status says which, with the challenge of a `401` or `403` described;
    /// a port nobody listens on is unreachable.
    #[tokio::test]
    async fn refusals_name_their_status_and_challenge() {
        let router = Router::new()
            .route(
                "/mcp",
                post(|| async {
                    (
                        StatusCode::FORBIDDEN,
                        [(
                            header::WWW_AUTHENTICATE,
                            "Bearer error=\"insufficient_scope\", error_description=\"needs \
                             tickets:read\"",
                        )],
                    )
                }),
            )
            .route("/gone", post(|| async { StatusCode::NOT_FOUND }));
        let (url, stop) = serve(router).await;
        let forbidden = check_at(url.clone(), Duration::from_secs(10), 1024).await;
        assert_eq!(
            forbidden,
            Err("refuses: HTTP 403: insufficient_scope: needs tickets:read".into())
        );
        let gone = check_at(url.join("/gone").unwrap(), Duration::from_secs(10), 1024).await;
        assert_eq!(gone, Err("refuses: HTTP 404".into()));
        stop.cancel();

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/mcp", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let error = check_at(url, Duration::from_secs(10), 1024)
            .await
            .expect_err("nobody listens");
        assert!(error.starts_with("unreachable: "), "{error}");
    }
}
