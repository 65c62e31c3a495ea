//! Backend faults, each with a bounded outcome: an error that names the backend and says what
//! happened, then recovery — never a hang. Driven through the real proxy loop over OS pipes, in
//! the drop-in and in the gateway, with a fault-injecting proxy in front of a real
//! test backend.

use std::time::{Duration, Instant};

use authful_mcp_proxy::config::{Backend, Settings};
use serde_json::json;
use url::Url;

use crate::support::{
    self, BrowserMode, Harness, TestBrowser,
    backend::{BackendConfig, TestBackend},
    call_within,
    faults::{Fault, FaultProxy},
};

/// The two ways the proxy serves a backend.
#[derive(Debug, Clone, Copy)]
enum Mode {
    DropIn,
    Gateway,
}

impl Mode {
    /// The name a client calls the backend's `tool` by.
    fn tool(self, tool: &str) -> String {
        match self {
            Mode::DropIn => tool.to_owned(),
            Mode::Gateway => format!("b_{tool}"),
        }
    }
}

fn settings(mode: Mode, url: &str, timeout: Option<Duration>, cache: &std::path::Path) -> Settings {
    let prefix = matches!(mode, Mode::Gateway).then_some("b");
    let mut backend = Backend::new("b", Url::parse(url).unwrap(), None, prefix);
    backend.request_timeout = timeout;
    let mut settings = Settings {
        cache_dir: cache.to_path_buf(),
        mode: match mode {
            Mode::DropIn => authful_mcp_proxy::config::Mode::DropIn,
            Mode::Gateway => authful_mcp_proxy::config::Mode::Gateway,
        },
        backends: vec![backend],
        gateway: Default::default(),
    };
    settings.gateway.startup_timeout = Duration::from_secs(2);
    settings
}

async fn start(mode: Mode, url: &str, timeout: Option<Duration>) -> (Harness, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let harness = support::start(
        settings(mode, url, timeout, cache.path()),
        TestBrowser::new(BrowserMode::Complete),
        "2025-06-18",
    )
    .await;
    (harness, cache)
}

async fn echo_works(h: &Harness, mode: Mode) {
    let answer = call_within(
        &h.client,
        Duration::from_secs(10),
        &mode.tool("echo"),
        json!({"text": "hi"}),
    )
    .await
    .expect("the backend works again");
    assert_eq!(support::first_text(&answer), "hi");
}

async fn http_faults(mode: Mode) {
    let backend = TestBackend::start(BackendConfig::open("b")).await;
    let faulty = FaultProxy::start(&backend.url()).await;
    let (h, _cache) = start(mode, &faulty.url(), Some(Duration::from_secs(10))).await;
    echo_works(&h, mode).await;
    for (fault, says) in [
        (Fault::Status(503), "HTTP 503"),
        (Fault::Status(500), "HTTP 500"),
        (Fault::Status(502), "HTTP 502"),
        (Fault::Status(413), "HTTP 413"),
        (Fault::NotJson, "not JSON-RPC"),
        (Fault::Truncated, "connection closed"),
        (Fault::SseDropped, "connection closed"),
    ] {
        faulty.arm("tools/call", fault.clone(), 1);
        let started = Instant::now();
        let error = call_within(
            &h.client,
            Duration::from_secs(10),
            &mode.tool("echo"),
            json!({"text": "x"}),
        )
        .await
        .expect_err("the fault reaches the client as an error");
        assert!(error.contains("backend 'b'"), "{fault:?}: {error}");
        assert!(
            error.contains(says),
            "{fault:?}: expected '{says}' in: {error}"
        );
        assert!(
            !error.contains("<html>"),
            "{fault:?}: the body leaked into: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{fault:?} took {:?}",
            started.elapsed()
        );
        echo_works(&h, mode).await;
    }
    h.stop().await.unwrap();
    backend.shutdown();
}

#[tokio::test]
async fn drop_in_reports_http_faults_by_backend_and_recovers() {
    http_faults(Mode::DropIn).await;
}

#[tokio::test]
async fn gateway_reports_http_faults_by_backend_and_recovers() {
    http_faults(Mode::Gateway).await;
}

async fn silent_backend(mode: Mode) {
    let backend = TestBackend::start(BackendConfig::open("b")).await;
    let faulty = FaultProxy::start(&backend.url()).await;
    let (h, _cache) = start(mode, &faulty.url(), Some(Duration::from_secs(1))).await;

    // Stops answering: the request ends after the timeout, and the backend is told to cancel.
    faulty.arm("tools/call", Fault::Hang, 1);
    let started = Instant::now();
    let error = call_within(
        &h.client,
        Duration::from_secs(10),
        &mode.tool("echo"),
        json!({"text": "x"}),
    )
    .await
    .expect_err("a silent backend times out");
    let took = started.elapsed();
    assert!(
        error.contains("backend 'b' did not answer within 1 s"),
        "{error}"
    );
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&took),
        "{took:?}"
    );
    support::eventually(5, "notifications/cancelled at the backend", || {
        faulty.seen("notifications/cancelled") >= 1
    })
    .await;

    // A slow answer without progress times out too; with progress it may take much longer.
    let error = call_within(
        &h.client,
        Duration::from_secs(10),
        &mode.tool("slow"),
        json!({"seconds": 3}),
    )
    .await
    .expect_err("no progress, no patience");
    assert!(error.contains("did not answer within 1 s"), "{error}");
    let started = Instant::now();
    let done = call_within(
        &h.client,
        Duration::from_secs(15),
        &mode.tool("progress"),
        json!({"steps": 8, "interval_ms": 400}),
    )
    .await
    .expect("progress notifications extend the timeout");
    assert_eq!(support::first_text(&done), "done 8");
    assert!(started.elapsed() > Duration::from_millis(3000));
    echo_works(&h, mode).await;
    h.stop().await.unwrap();
    backend.shutdown();
}

#[tokio::test]
async fn drop_in_times_out_a_silent_backend_unless_it_reports_progress() {
    silent_backend(Mode::DropIn).await;
}

#[tokio::test]
async fn gateway_times_out_a_silent_backend_unless_it_reports_progress() {
    silent_backend(Mode::Gateway).await;
}

async fn dying_backend(mode: Mode) {
    let backend = TestBackend::start(BackendConfig::open("b")).await;
    let server = FaultProxy::start(&backend.url()).await;
    let port = server.port();
    let (h, _cache) = start(mode, &server.url(), None).await;
    echo_works(&h, mode).await;

    // A request in flight when the backend dies is answered, although no timeout is set.
    let slow_tool = mode.tool("slow");
    let slow = h.call(&slow_tool, json!({"seconds": 30}));
    let crash = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.kill();
        backend.kill();
    };
    let (answer, ()) =
        tokio::time::timeout(Duration::from_secs(15), async { tokio::join!(slow, crash) })
            .await
            .expect("the request in flight is answered when its backend dies");
    let error = answer
        .expect_err("no answer from a dead backend")
        .to_string();
    assert!(error.contains("backend 'b'"), "{error}");

    // While it is down: a prompt error that says so.
    let error = call_within(
        &h.client,
        Duration::from_secs(15),
        &mode.tool("echo"),
        json!({"text": "x"}),
    )
    .await
    .expect_err("the backend is down");
    assert!(error.contains("backend 'b'"), "{error}");

    // Restarted on the same port, its sessions forgotten: the proxy finds it again.
    let restarted = TestBackend::start(BackendConfig::open("b")).await;
    let _server = FaultProxy::start_on(&restarted.url(), port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call_within(
            &h.client,
            Duration::from_secs(15),
            &mode.tool("echo"),
            json!({"text": "back"}),
        )
        .await
        {
            Ok(answer) => {
                assert_eq!(support::first_text(&answer), "back");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    h.stop().await.unwrap();
    restarted.shutdown();
}

#[tokio::test]
async fn drop_in_answers_requests_in_flight_when_the_backend_dies_and_recovers_after_a_restart() {
    dying_backend(Mode::DropIn).await;
}

#[tokio::test]
async fn gateway_answers_requests_in_flight_when_the_backend_dies_and_recovers_after_a_restart() {
    dying_backend(Mode::Gateway).await;
}

/// A TCP listener that accepts connections and never says a word: TLS and HTTP both stall.
async fn mute_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test]
async fn unreachable_backends_are_named_with_the_reason_in_the_gateway() {
    let plain = TestBackend::start(BackendConfig::open("plain")).await;
    let closed = support::free_port();
    let cases = [
        (
            "refused",
            format!("http://127.0.0.1:{closed}/mcp"),
            "connection refused",
        ),
        ("nodns", "http://no-such-host.invalid/mcp".to_owned(), "dns"),
        // TLS to a plain-HTTP server: the handshake fails.
        (
            "tls",
            format!("https://127.0.0.1:{}/mcp", plain.port()),
            "tls",
        ),
    ];
    for (name, url, says) in cases {
        let cache = tempfile::tempdir().unwrap();
        let mut settings = settings(
            Mode::Gateway,
            &url,
            Some(Duration::from_secs(5)),
            cache.path(),
        );
        settings.backends[0].name = name.to_owned();
        let started = Instant::now();
        let h = support::start(
            settings,
            TestBrowser::new(BrowserMode::Complete),
            "2025-06-18",
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: initialize took {:?}",
            started.elapsed()
        );
        let error = call_within(
            &h.client,
            Duration::from_secs(10),
            "b_echo",
            json!({"text": "x"}),
        )
        .await
        .expect_err("an unreachable backend fails the call");
        let lower = error.to_lowercase();
        assert!(error.contains(&format!("backend '{name}'")), "{error}");
        assert!(
            lower.contains(says),
            "{name}: expected '{says}' in: {error}"
        );
        h.stop().await.unwrap();
    }
    plain.shutdown();
}

#[tokio::test]
async fn a_backend_that_accepts_and_never_answers_is_bounded_by_the_request_timeout() {
    let (port, mute) = mute_listener().await;
    for mode in [Mode::DropIn, Mode::Gateway] {
        let cache = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let settings = settings(mode, &url, Some(Duration::from_secs(1)), cache.path());
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            support::try_start(
                settings,
                TestBrowser::new(BrowserMode::Complete),
                "2025-06-18",
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{mode:?}: initialize hangs on a mute backend"));
        match (mode, outcome) {
            (Mode::DropIn, Err(error)) => {
                assert!(error.contains("backend 'b'"), "{error}");
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{:?}",
                    started.elapsed()
                );
            }
            (Mode::Gateway, Ok(h)) => {
                let error = call_within(
                    &h.client,
                    Duration::from_secs(10),
                    "b_echo",
                    json!({"text": "x"}),
                )
                .await
                .expect_err("a mute backend fails the call");
                assert!(error.contains("backend 'b'"), "{error}");
                h.stop().await.unwrap();
            }
            (mode, outcome) => panic!("{mode:?}: unexpected {:?}", outcome.map(|_| "a session")),
        }
    }
    mute.abort();
}
