//! `status` against backends gone hostile, as a person runs it in a terminal (the real
//! binary): a backend that answers `initialize` with a stream without end costs `status` at
//! most 1 MiB of reading and ends its check with a line that says so, in a fraction of its
//! 15 s; what a backend calls itself, or says when it refuses, reaches the terminal without
//! control characters (no escape sequence retitles, clears or recolours it) and cut to a few
//! hundred characters.
//!
//! The binary's peak memory is read from `/proc` while it runs (Linux only).

use std::{
    convert::Infallible,
    io::Read,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::post,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{self, binary};

/// What one `status` run did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The highest peak resident memory seen while it ran, in KiB (Linux only).
    peak_kib: Option<u64>,
    took: Duration,
}

/// The process's peak resident memory so far (`VmHWM`, in KiB), once it runs the binary: until
/// `exec`, the child is a copy of this test process, whose memory is not the binary's. (That is
/// also why `wait4`'s `ru_maxrss` will not do: Linux counts the memory of the copy in it.)
#[cfg(target_os = "linux")]
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    // The command name, cut at 15 bytes.
    if !field("Name:")?.starts_with("authful-mcp-pro") {
        return None;
    }
    field("VmHWM:")?.trim_end_matches("kB").trim().parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn peak_kib(_pid: u32) -> Option<u64> {
    None
}

/// Runs `authful-mcp-proxy --config CONFIG status` to its end, killing it after 60 s; its
/// memory is sampled every 2 ms meanwhile. Each sample is read before the child is reaped, so
/// it is this child's, never a later process's with its id.
async fn status(home: &Path, config: &Path) -> Run {
    let mut child = Command::new(binary::BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .arg("--config")
        .arg(config)
        .arg("status")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        let mut peak: Option<u64> = None;
        let exit = loop {
            if let Some(now) = peak_kib(child.id()) {
                peak = Some(peak.map_or(now, |p| p.max(now)));
            }
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("status did not end within 60 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = started.elapsed();
        // Its output is a few lines: the pipes held it while it ran.
        let (mut stdout, mut stderr) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        Run {
            code: exit.code(),
            stdout,
            stderr,
            peak_kib: peak,
            took,
        }
    });
    run.await.unwrap()
}

/// A configuration of backends without sign-in, by name and URL.
fn config(dir: &Path, backends: &[(&str, String)]) -> std::path::PathBuf {
    let mut yaml = String::from("backends:\n");
    for (name, url) in backends {
        yaml.push_str(&format!("  {name}:\n    url: {url}\n"));
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The lines `status` printed for `backend`: its heading and the indented ones after it.
fn section<'a>(stdout: &'a str, backend: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{backend}  ")))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with("  "))
        .map(|(_, l)| l)
        .collect()
}

/// A backend whose answer to `initialize` is an SSE stream that never completes an event:
/// 64 KiB every 2 ms, as fast as a reader takes it (some 30 MB/s; `response.text()` grew the
/// process past 3 GB). `status` stops reading after 1 MiB, says so, and stays small; the
/// backend sends no more than that and what the sockets buffer.
#[tokio::test]
async fn status_reads_an_endless_answer_no_further_than_its_limit() {
    static CHUNK: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&sent);
    let router = Router::new().route(
        "/mcp",
        post(move || {
            let sent = Arc::clone(&counted);
            async move {
                let head = futures::stream::once(async {
                    Ok::<_, Infallible>(Bytes::from_static(
                        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"serverInfo\":{\"name\":\"",
                    ))
                });
                let tail = futures::stream::unfold(sent, |sent| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    sent.fetch_add(CHUNK.len(), Ordering::SeqCst);
                    Some((Ok(Bytes::from_static(&CHUNK)), sent))
                });
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(futures::StreamExt::chain(head, tail)),
                )
            }
        }),
    );
    let stop = CancellationToken::new();
    let addr = support::serve_http(router, &stop).await;
    let home = tempfile::tempdir().unwrap();
    let config = config(home.path(), &[("endless", format!("http://{addr}/mcp"))]);

    let run = status(home.path(), &config).await;
    stop.cancel();
    let sent = sent.load(Ordering::SeqCst);
    eprintln!(
        "status took {:?}, peaked at {:?} KiB; the backend sent {sent} bytes",
        run.took, run.peak_kib
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let lines = section(&run.stdout, "endless");
    assert!(
        lines.iter().any(|l| l.starts_with("  backend  ")
            && l.contains("more than 1024 KiB")
            && !l.contains("answers (")),
        "{}",
        run.stdout
    );
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    assert!(sent < 16 << 20, "the backend sent {sent} bytes");
    if let Some(peak) = run.peak_kib {
        // About 30 MiB in practice (a debug build); 300 MiB and more when the answer was read
        // whole for its 15 s.
        assert!(peak < 100 * 1024, "status peaked at {peak} KiB");
    }
}

/// A backend that answers each request with `result` under the request's id — as JSON, or
/// with `sse` as an SSE event — and each notification with `202 Accepted`, as MCP has it.
fn answering(result: serde_json::Value, sse: bool) -> axum::routing::MethodRouter {
    post(
        move |axum::Json(message): axum::Json<serde_json::Value>| async move {
            let Some(id) = message.get("id") else {
                return StatusCode::ACCEPTED.into_response();
            };
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
            if sse {
                let event = format!("event: message\ndata: {answer}\n\n");
                ([(header::CONTENT_TYPE, "text/event-stream")], event).into_response()
            } else {
                axum::Json(answer).into_response()
            }
        },
    )
}

/// What a backend calls itself (as JSON or as an SSE event) and what it says when it refuses
/// (`WWW-Authenticate`) are a stranger's words on the person's terminal: printed without
/// ESC, BEL or other control characters, and a refusal's description is cut.
#[tokio::test]
async fn status_prints_a_backends_words_without_terminal_escapes() {
    const NAME: &str = "evil\u{1b}]0;pwned\u{7}\u{1b}[2Jserver\u{202e}";
    let result = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "serverInfo": {"name": NAME, "version": "1"}
    });
    let description = "a".repeat(5000);
    let router = Router::new()
        .route("/json", answering(result.clone(), false))
        .route("/sse", answering(result, true))
        .route(
            "/refusing",
            post(move || async move {
                (
                    StatusCode::UNAUTHORIZED,
                    [(
                        header::WWW_AUTHENTICATE,
                        format!(
                            "Bearer error=\"invalid_token\", error_description=\"{description}\""
                        ),
                    )],
                )
            }),
        );
    let stop = CancellationToken::new();
    let addr = support::serve_http(router, &stop).await;
    let home = tempfile::tempdir().unwrap();
    let config = config(
        home.path(),
        &[
            ("json", format!("http://{addr}/json")),
            ("sse", format!("http://{addr}/sse")),
            ("refusing", format!("http://{addr}/refusing")),
        ],
    );

    let run = status(home.path(), &config).await;
    stop.cancel();
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let controls: Vec<char> = run
        .stdout
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
        .collect();
    assert!(controls.is_empty(), "{controls:?} in {:?}", run.stdout);
    for backend in ["json", "sse"] {
        assert!(
            section(&run.stdout, backend)
                .contains(&"  backend  answers (evil]0;pwned[2Jserver, MCP 2025-06-18)"),
            "{}",
            run.stdout
        );
    }
    let refused = section(&run.stdout, "refusing");
    let line = refused
        .iter()
        .find(|l| l.starts_with("  backend  refuses: HTTP 401: invalid_token: aaa"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.chars().count() < 400, "{line}");
}
