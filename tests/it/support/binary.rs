//! The proxy binary as a child process, started the way a desktop client starts it.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use super::{BrowserLog, BrowserMode};

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
