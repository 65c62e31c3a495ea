//! A warm token cache, made the way a user makes one: one real browser login.
//!
//! Startup is measured with the tokens already on disk, as on every start but the first. To
//! get there the bench runs the peer once with its stderr piped, and plays the browser: both
//! our proxy ("... in your browser: URL") and the Python original ("Opening browser for OIDC
//! authorization: URL") print the authorization URL. The bench follows it to the identity
//! provider (the FakeIdp approves at once and redirects to the peer's loopback callback) and
//! then delivers that callback. The peer exchanges the code and writes the cache in its own
//! format (ours: `~/.fastmcp/oauth-mcp-client-cache/*_tokens.json`; the Python original: a
//! `diskcache` store under `~/.mcp-auth/authful-mcp-proxy-0.3.0/`), which is why a real login
//! is simpler and truer than writing either format by hand.
//!
//! The Python original opens the browser *before* its callback server listens, so delivering
//! the callback is retried until it connects.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{ChildStderr, Command},
    task::JoinHandle,
};

use crate::rpc::{Stderr, StdioPeer};

/// What each peer prints before the authorization URL.
pub const OURS_MARKER: &str = "in your browser: ";
/// The Python original's log line before the URL.
pub const PYTHON_MARKER: &str = "Opening browser for OIDC authorization: ";

/// Runs `cmd` once through `initialize` and one call of `tool`, completing the login it asks
/// for; its stderr goes to `log`.
pub async fn warm_cache(
    cmd: Command,
    label: &str,
    log: &Path,
    marker: &'static str,
    tool: &str,
    arguments: &Value,
) -> Result<(), String> {
    let mut peer = StdioPeer::spawn(cmd, label, Stderr::Piped(log.to_path_buf()))?;
    let stderr = peer
        .take_stderr()
        .ok_or_else(|| format!("{label}: no stderr pipe"))?;
    let watcher = watch(stderr, log.to_path_buf(), marker);
    let outcome = async {
        peer.initialize().await?;
        peer.call(tool, arguments).await
    }
    .await;
    peer.close().await;
    // The watcher ends with the peer's stderr; a helper that inherited it must not hang us.
    let logins = match tokio::time::timeout(Duration::from_secs(5), watcher).await {
        Ok(Ok(logins)) => logins,
        Ok(Err(e)) => Err(format!("the stderr watcher failed: {e}")),
        Err(_) => Err("its stderr stayed open after it exited".to_owned()),
    };
    outcome?;
    match logins {
        Ok(0) => Err(format!(
            "{label}: the call succeeded without a login; is a token cache left over? (log: {})",
            log.display()
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{label}: the login failed: {e}")),
    }
}

/// Copies `stderr` to `log` and completes every login whose URL follows `marker`; returns how
/// many were completed.
fn watch(
    stderr: ChildStderr,
    log: PathBuf,
    marker: &'static str,
) -> JoinHandle<Result<u32, String>> {
    tokio::spawn(async move {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .await
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut logins = 0;
        let mut result = Ok(());
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = file.write_all(format!("{line}\n").as_bytes()).await;
            if let Some(url) = line.split(marker).nth(1) {
                match complete_login(url.trim()).await {
                    Ok(()) => logins += 1,
                    Err(e) => result = Err(e),
                }
            }
        }
        result.map(|()| logins)
    })
}

/// Follows the authorization URL to the provider and delivers its redirect to the callback.
async fn complete_login(url: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let approval = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("authorization request: {e}"))?;
    let callback = approval
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("the provider did not redirect ({})", approval.status()))?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http.get(&callback).send().await {
            Ok(page) if page.status().is_success() => return Ok(()),
            Ok(page) => return Err(format!("the callback answered {}", page.status())),
            Err(e) if e.is_connect() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("callback: {e}")),
        }
    }
}

/// The access token in our proxy's token cache under `home`, for peers that take a static
/// bearer token (mcp-remote's `--header`).
pub fn cached_access_token(home: &Path) -> Result<String, String> {
    let dir = home.join(".fastmcp/oauth-mcp-client-cache");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with("_tokens.json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let tokens: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(token) = tokens["access_token"].as_str() {
            return Ok(token.to_owned());
        }
    }
    Err(format!("no token file in {}", dir.display()))
}
