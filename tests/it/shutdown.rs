//! How the binary stops. SIGTERM (what a desktop client sends when it quits), SIGINT (Ctrl-C in
//! a terminal) and stdin EOF each end every backend session with an HTTP `DELETE` and exit 0
//! within a bounded time, in the drop-in and in the gateway; a login still waiting for its
//! browser does not hold the exit up. `proxy::serve` itself stops when its shutdown future
//! fires, a call in flight included.
#![cfg(unix)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::process::Child;

use crate::support::{
    self, BrowserMode, Client, TestBrowser, TestClient,
    backend::{BackendConfig, TestBackend},
    binary::{self, Lines},
    idp::{FakeIdp, IdpConfig},
};

/// How long a stopped proxy may take to exit: its close deadline (1.5 s) and the runtime's
/// 200 ms, with room for a loaded machine. Well under the 5 s rmcp would otherwise allow one
/// `DELETE`.
const EXIT_WITHIN: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug)]
enum Stop {
    Sigterm,
    Sigint,
    StdinEof,
}

async fn call(client: &Client, tool: &str, args: Value) -> Value {
    support::call_within(client, Duration::from_secs(30), tool, args)
        .await
        .expect("the call succeeds")
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = child.id().expect("the proxy is running") as libc::pid_t;
    // SAFETY: kill(2) reads no memory of ours; the pid is our own child's, not yet reaped.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal})");
}

/// Stops the proxy `how`, keeping stdin open for a signal (so that only the signal can end
/// the session); returns the exit code (`None`: killed by the signal) and how long it took.
async fn stop(child: &mut Child, client: Client, how: Stop) -> (Option<i32>, Duration) {
    let started = Instant::now();
    let client = match how {
        Stop::Sigterm => {
            signal(child, libc::SIGTERM);
            Some(client)
        }
        Stop::Sigint => {
            signal(child, libc::SIGINT);
            Some(client)
        }
        Stop::StdinEof => {
            client.cancel().await.unwrap();
            None
        }
    };
    let code = binary::exit_code(child, 15).await;
    let took = started.elapsed();
    drop(client);
    (code, took)
}

/// The stderr lines, once the child has exited and they have all been read.
async fn stderr_of(lines: &Lines) -> String {
    tokio::time::sleep(Duration::from_millis(200)).await;
    lines.lock().unwrap().join("\n")
}

fn assert_stopped(how: Stop, (code, took): (Option<i32>, Duration), stderr: &str) {
    assert_eq!(code, Some(0), "{how:?}: exit code; stderr:\n{stderr}");
    assert!(took < EXIT_WITHIN, "{how:?}: exited after {took:?}");
    let logged = match how {
        Stop::Sigterm => Some("SIGTERM received"),
        Stop::Sigint => Some("SIGINT received"),
        Stop::StdinEof => None,
    };
    if let Some(logged) = logged {
        assert!(stderr.contains(logged), "{how:?}: '{logged}' in:\n{stderr}");
    }
}

/// The drop-in as a desktop client runs it: one backend behind an OIDC login, from env vars.
async fn drop_in(how: Stop) {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("corp", idp.issuer(), idp.jwks_uri())).await;
    let home = tempfile::tempdir().unwrap();
    let (mut child, lines, _) = binary::spawn(
        home.path(),
        &["--debug", "--no-banner"],
        &binary::drop_in_env(&idp, &backend),
        BrowserMode::Complete,
    );
    let client = binary::connect(&mut child).await;
    let who = call(&client, "whoami", json!({})).await;
    assert_eq!(who["structuredContent"]["sub"], "user-123");
    let sessions = backend.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(backend.stats().deleted_sessions.is_empty());

    let stopped = stop(&mut child, client, how).await;
    let stderr = stderr_of(&lines).await;
    assert_eq!(
        backend.stats().deleted_sessions,
        sessions,
        "{how:?}: the backend session ends with a DELETE; stderr:\n{stderr}"
    );
    assert_stopped(how, stopped, &stderr);
    backend.shutdown();
    idp.shutdown();
}

fn gateway_config(dir: &Path, backends: &[&TestBackend]) -> std::path::PathBuf {
    let path = dir.join("gateway.yaml");
    let mut yaml = String::from("backends:\n");
    for (name, backend) in ["alpha", "beta"].iter().zip(backends) {
        yaml.push_str(&format!("  {name}:\n    url: {}\n", backend.url()));
    }
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The gateway over two backends: each gets its DELETE.
async fn gateway(how: Stop) {
    let alpha = TestBackend::start(BackendConfig::open("alpha")).await;
    let beta = TestBackend::start(BackendConfig::open("beta")).await;
    let home = tempfile::tempdir().unwrap();
    let config = gateway_config(home.path(), &[&alpha, &beta]);
    let args = [
        "--debug",
        "--no-banner",
        "--config",
        config.to_str().unwrap(),
    ];
    let (mut child, lines, _) = binary::spawn(home.path(), &args, &[], BrowserMode::Ignore);
    let client = binary::connect(&mut child).await;
    for (tool, backend) in [("alpha_echo", &alpha), ("beta_echo", &beta)] {
        let echoed = call(&client, tool, json!({"text": tool})).await;
        assert_eq!(echoed["content"][0]["text"], tool);
        assert_eq!(backend.sessions().len(), 1, "{tool}");
    }
    let sessions = [alpha.sessions(), beta.sessions()];

    let stopped = stop(&mut child, client, how).await;
    let stderr = stderr_of(&lines).await;
    for (backend, sessions) in [&alpha, &beta].iter().zip(sessions) {
        assert_eq!(
            backend.stats().deleted_sessions,
            sessions,
            "{how:?}: every backend session ends with a DELETE; stderr:\n{stderr}"
        );
    }
    assert_stopped(how, stopped, &stderr);
    alpha.shutdown();
    beta.shutdown();
}

#[tokio::test]
async fn sigterm_ends_the_drop_in_backend_session_with_a_delete_and_exits_0() {
    drop_in(Stop::Sigterm).await;
}

#[tokio::test]
async fn sigint_ends_the_drop_in_backend_session_with_a_delete_and_exits_0() {
    drop_in(Stop::Sigint).await;
}

#[tokio::test]
async fn stdin_eof_ends_the_drop_in_backend_session_with_a_delete_and_exits_0() {
    drop_in(Stop::StdinEof).await;
}

#[tokio::test]
async fn sigterm_ends_both_gateway_backend_sessions_with_a_delete_and_exits_0() {
    gateway(Stop::Sigterm).await;
}

#[tokio::test]
async fn sigint_ends_both_gateway_backend_sessions_with_a_delete_and_exits_0() {
    gateway(Stop::Sigint).await;
}

#[tokio::test]
async fn stdin_eof_ends_both_gateway_backend_sessions_with_a_delete_and_exits_0() {
    gateway(Stop::StdinEof).await;
}

/// A login nobody completes, and `initialize` still waiting for it (`startup_timeout`, 5 s):
/// SIGTERM abandons both and the proxy exits 0 at once.
#[tokio::test]
async fn sigterm_during_a_pending_login_exits_0_without_waiting_for_it() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("corp", idp.issuer(), idp.jwks_uri())).await;
    let home = tempfile::tempdir().unwrap();
    let (mut child, lines, logins) = binary::spawn(
        home.path(),
        &["--debug", "--no-banner"],
        &binary::drop_in_env(&idp, &backend),
        BrowserMode::Ignore,
    );
    // `initialize` is answered only after the startup timeout: the client waits for it aside.
    let client = binary::connect_until_login(&mut child, &logins).await;

    let started = Instant::now();
    signal(&child, libc::SIGTERM);
    let code = binary::exit_code(&mut child, 15).await;
    let took = started.elapsed();
    client.abort();
    let stderr = stderr_of(&lines).await;
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(took < EXIT_WITHIN, "exited after {took:?}");
    assert_eq!(backend.stats().sessions_created, 0);
    backend.shutdown();
    idp.shutdown();
}

/// The library's contract, for whoever embeds it: `serve` returns `Ok` soon after its shutdown
/// future fires, with the client still connected and a 30 s call in flight, and the backend
/// session has ended with a DELETE.
#[tokio::test]
async fn serve_stops_when_its_shutdown_future_fires_a_call_in_flight_included() {
    let backend = TestBackend::start(BackendConfig::open("plain")).await;
    let home = tempfile::tempdir().unwrap();
    let settings = support::settings(&backend.url(), None, home.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let support::Pipes {
        to_proxy,
        from_proxy,
        proxy,
    } = support::serve_on_pipes(settings, TestBrowser::new(BrowserMode::Ignore), async {
        let _ = stop_rx.await;
    });
    let client = TestClient::new("2025-06-18")
        .serve((from_proxy, to_proxy))
        .await
        .expect("initialize");
    call(&client, "echo", json!({"text": "hi"})).await;
    let sessions = backend.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let params = serde_json::from_value(json!({"name": "slow", "arguments": {}})).unwrap();
    let peer = client.peer().clone();
    let slow = tokio::spawn(async move { peer.call_tool(params).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    stop_tx.send(()).unwrap();
    let served = tokio::time::timeout(Duration::from_secs(15), proxy)
        .await
        .expect("serve returns")
        .expect("serve task");
    let took = started.elapsed();
    assert!(served.is_ok(), "{served:?}");
    assert!(took < EXIT_WITHIN, "returned after {took:?}");
    assert_eq!(backend.stats().deleted_sessions, sessions);
    // The call in flight did not get an answer from the backend.
    let slow = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the call ends with the session")
        .unwrap();
    assert!(slow.is_err(), "{slow:?}");
    drop(client);
    backend.shutdown();
}
