//! The proxy binary as a child process, started the way a desktop client starts it.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::ServiceExt;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    task::AbortHandle,
};

use super::{
    BrowserLog, BrowserMode, Client, TestClient, backend::TestBackend, free_port, idp::FakeIdp,
};

/// The binary under test. Cargo names it for integration tests only; the demo example, which
/// shares this support code, never starts it.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_authful-mcp-proxy") {
    Some(path) => path,
    None => "authful-mcp-proxy",
};

/// Lines a process wrote to stderr, as they arrive.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// The binary with a clean environment (only `PATH`, `HOME` and what the test adds), piped
/// stdio, and no real browser: tests read the printed URL and log in themselves.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("BROWSER", "/nonexistent/browser")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Collects the child's stderr lines and the authorization URLs it prints; each login is
/// completed in `mode` unless that is [`BrowserMode::Ignore`].
pub fn watch_stderr(child: &mut Child, mode: BrowserMode) -> (Lines, Arc<Mutex<BrowserLog>>) {
    let lines = Lines::default();
    let browser = Arc::new(Mutex::new(BrowserLog::default()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let (seen, logins) = (Arc::clone(&lines), Arc::clone(&browser));
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(url) = line.split("in your browser: ").nth(1) {
                logins.lock().unwrap().urls.push(url.to_owned());
                if mode != BrowserMode::Ignore {
                    tokio::spawn(super::complete_login_owned(
                        url.to_owned(),
                        mode,
                        Arc::clone(&logins),
                    ));
                }
            }
            seen.lock().unwrap().push(line);
        }
    });
    (lines, browser)
}

/// Starts the binary with `args` and `envs`; its stderr lines are collected, and each login it
/// prints is completed in `mode` (see [`watch_stderr`]).
pub fn spawn(
    home: &Path,
    args: &[&str],
    envs: &[(&str, String)],
    mode: BrowserMode,
) -> (Child, Lines, Arc<Mutex<BrowserLog>>) {
    let mut child = command(home)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .spawn()
        .unwrap();
    let (lines, browser) = watch_stderr(&mut child, mode);
    (child, lines, browser)
}

/// The drop-in's environment as a desktop client's configuration sets it: the backend, the
/// provider, the client id, and a callback on a free port of `localhost`.
pub fn drop_in_env(idp: &FakeIdp, backend: &TestBackend) -> Vec<(&'static str, String)> {
    vec![
        ("MCP_BACKEND_URL", backend.url()),
        ("OIDC_ISSUER_URL", idp.issuer()),
        ("OIDC_CLIENT_ID", idp.client_id()),
        (
            "OIDC_REDIRECT_URL",
            format!("http://localhost:{}/auth/callback", free_port()),
        ),
    ]
}

/// Connects as an MCP client over the child's stdio.
pub async fn connect(child: &mut Child) -> Client {
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    TestClient::new("2025-06-18")
        .serve((stdout, stdin))
        .await
        .expect("initialize")
}

/// Connects as an MCP client over the child's stdio without waiting for the answer to
/// `initialize`, which waits for a login nobody completes; returns once the child has printed
/// the login's URL. Abort the client with the handle.
pub async fn connect_until_login(
    child: &mut Child,
    logins: &Arc<Mutex<BrowserLog>>,
) -> AbortHandle {
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = tokio::spawn(TestClient::new("2025-06-18").serve((stdout, stdin)));
    super::eventually(20, "the login to start", || {
        !logins.lock().unwrap().urls.is_empty()
    })
    .await;
    client.abort_handle()
}

/// The child's exit code, failing the test unless it exits within `seconds`; `None` when a
/// signal ended it.
pub async fn exit_code(child: &mut Child, seconds: u64) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(seconds), child.wait())
        .await
        .expect("the proxy exits in time")
        .unwrap()
        .code()
}
