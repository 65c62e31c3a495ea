//! The binary as a desktop client runs it: env vars and flags, exit codes, the banner, log
//! format, the default token cache, cross-process refresh-token rotation, stdin EOF, and no
//! secret in the logs even with debug on.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;

use crate::support::{
    self, BrowserLog, BrowserMode,
    backend::{BackendConfig, TestBackend},
    binary,
    idp::{FakeIdp, IdpConfig},
};

#[tokio::test]
async fn missing_settings_exit_2_before_reading_stdin() {
    let home = tempfile::tempdir().unwrap();
    for (args, envs, expected) in [
        (
            Vec::<&str>::new(),
            vec![],
            vec!["MCP_BACKEND_URL", "first argument"],
        ),
        (
            vec![],
            vec![
                ("MCP_BACKEND_URL", "https://mcp.example.com/mcp"),
                ("OIDC_ISSUER_URL", "https://auth.example.com"),
                // Without a client id the proxy registers itself (RFC 7591); a secret needs one.
                ("OIDC_CLIENT_SECRET", "s3cret"),
            ],
            vec!["OIDC_CLIENT_ID", "--oidc-client-id"],
        ),
    ] {
        let mut child = binary::command(home.path())
            .args(&args)
            .envs(envs)
            .spawn()
            .unwrap();
        // stdin stays open and silent: the error must not wait for it.
        let code = binary::exit_code(&mut child, 10).await;
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
            .await
            .unwrap();
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
        for word in expected {
            assert!(stderr.contains(word), "{word} in {stderr}");
        }
    }
}

#[tokio::test]
async fn silent_and_debug_together_are_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let mut child = binary::command(home.path())
        .args(["--silent", "--debug"])
        .spawn()
        .unwrap();
    assert_eq!(binary::exit_code(&mut child, 10).await, Some(2));
}

fn env_for(idp: &FakeIdp, backend: &TestBackend) -> Vec<(&'static str, String)> {
    let mut envs = binary::drop_in_env(idp, backend);
    envs.extend([
        ("OIDC_CLIENT_SECRET", "very-secret-value".into()),
        ("MCP_PROXY_DEBUG", "true".into()),
    ]);
    envs
}

/// One run of the binary: connect, call `whoami`, close stdin, expect exit 0.
async fn run_once(
    home: &Path,
    envs: &[(&'static str, String)],
    args: &[&str],
) -> (Vec<String>, Arc<Mutex<BrowserLog>>) {
    let (mut child, lines, browser) = binary::spawn(home, args, envs, BrowserMode::Complete);
    let client = binary::connect(&mut child).await;
    let who = support::call_within(&client, Duration::from_secs(30), "whoami", json!({}))
        .await
        .unwrap();
    assert_eq!(who["structuredContent"]["sub"], "user-123");
    // Closing our side is stdin EOF for the proxy.
    client.cancel().await.unwrap();
    assert_eq!(binary::exit_code(&mut child, 10).await, Some(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = lines.lock().unwrap().clone();
    if std::env::var_os("SHOW_PROXY_STDERR").is_some() {
        eprintln!("{}", lines.join("\n"));
    }
    (lines, browser)
}

#[tokio::test]
async fn drop_in_run_logs_in_caches_rotates_and_never_logs_secrets() {
    let idp = FakeIdp::start(IdpConfig {
        client_secret: Some("very-secret-value".into()),
        ..IdpConfig::default()
    })
    .await;
    // Tokens with 30 s left are refreshed before every use, so each run rotates.
    idp.set_access_token_ttl(Duration::from_secs(30));
    let backend =
        TestBackend::start(BackendConfig::oidc("secured", idp.issuer(), idp.jwks_uri())).await;
    let home = tempfile::tempdir().unwrap();
    let envs = env_for(&idp, &backend);

    let (first, browser) = run_once(home.path(), &envs, &[]).await;
    assert_eq!(browser.lock().unwrap().urls.len(), 1, "one browser login");
    assert!(
        first.iter().any(|l| l.starts_with("authful-mcp-proxy ")),
        "banner: {first:?}"
    );
    assert!(
        first.iter().any(|l| l.contains(&backend.url())),
        "banner names the backend"
    );
    let log_line = regex_like_log_line();
    assert!(
        first.iter().any(|l| log_line(l) && l.contains("[debug]")),
        "{first:?}"
    );

    // The Python original's documented cache location, owner-only.
    let dir = home.path().join(".fastmcp/oauth-mcp-client-cache");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with("_tokens.json"))
        .expect("a token file");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("http_127_0_0_1_"), "{name}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    let after_first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();

    // A second process starts from the rotated refresh token the first one stored.
    // ... with the banner off and the log lines in a file instead of stderr.
    let log_file = home.path().join("proxy.log");
    let log_arg = log_file.to_str().unwrap();
    let (second, browser2) =
        run_once(home.path(), &envs, &["--no-banner", "--log-file", log_arg]).await;
    assert!(
        !second.iter().any(|l| l.starts_with("authful-mcp-proxy ")),
        "{second:?}"
    );
    assert!(
        !second.iter().any(|l| log_line(l)),
        "logs went to the file: {second:?}"
    );
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(logged.lines().any(&log_line), "{logged}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the log file is the user's alone");
    }
    let second: Vec<String> = second
        .into_iter()
        .chain(logged.lines().map(String::from))
        .collect();
    assert!(
        browser2.lock().unwrap().urls.is_empty(),
        "no browser: {second:?}"
    );
    assert_eq!(idp.stats().refresh_failures, 0, "no refresh-token reuse");
    let after_second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(after_first["refresh_token"], after_second["refresh_token"]);

    // Nothing secret in either run's stderr, debug logging included.
    let callback = browser.lock().unwrap().callbacks[0].clone();
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let mut secrets = vec!["very-secret-value".to_owned(), code];
    for tokens in [&after_first, &after_second] {
        secrets.push(tokens["access_token"].as_str().unwrap().to_owned());
        secrets.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    }
    for line in first.iter().chain(&second) {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "secret leaked in: {line}");
        }
        assert!(
            !line.contains("code="),
            "authorization code leaked in: {line}"
        );
    }
}

/// `2026-01-01T10:00:00.000Z [module] [level] message`
fn regex_like_log_line() -> impl Fn(&str) -> bool {
    |line: &str| {
        let b = line.as_bytes();
        line.len() > 30
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && b[23] == b'Z'
            && line[24..].starts_with(" [")
            && line.contains("] [")
    }
}

#[tokio::test]
async fn stdin_closed_before_initialize_exits_0_promptly() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "backends:\n  a:\n    url: http://127.0.0.1:9/mcp\n  b:\n    url: http://127.0.0.1:9/mcp\n",
    )
    .unwrap();
    let drop_in = [
        "http://127.0.0.1:9/mcp",
        "--oidc-issuer-url",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "x",
    ];
    for args in [drop_in.to_vec(), vec!["--config", config.to_str().unwrap()]] {
        let mut child = binary::command(home.path())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert_eq!(binary::exit_code(&mut child, 5).await, Some(0), "{args:?}");
    }
}

/// A symbolic link planted where the log file should be is not written through.
#[cfg(unix)]
#[tokio::test]
async fn a_log_file_that_is_a_symlink_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let victim = home.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let log = home.path().join("proxy.log");
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let output = binary::command(home.path())
        .args([
            "--log-file",
            log.to_str().unwrap(),
            "https://mcp.example.com/mcp",
        ])
        .args([
            "--oidc-issuer-url",
            "https://auth.example.com",
            "--oidc-client-id",
            "c",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot open log file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
}

/// Node's `child_process` (so every Electron client) gives a child socket pairs, not pipes, as
/// stdin and stdout; the proxy reads and writes them on its event loop and still sees the
/// client's EOF. (Pipes are what every other test here uses; `/dev/null` is the test above.)
#[cfg(unix)]
#[tokio::test]
async fn socket_pairs_as_stdin_and_stdout_serve_a_session() {
    use std::os::{fd::OwnedFd, unix::net::UnixStream};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let backend = TestBackend::start(BackendConfig::open("socket")).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("one.yaml");
    let yaml = format!(
        "backends:\n  b:\n    url: {}\n    prefix: \"\"\n",
        backend.url()
    );
    std::fs::write(&config, yaml).unwrap();
    let (to_proxy, proxy_stdin) = UnixStream::pair().unwrap();
    let (from_proxy, proxy_stdout) = UnixStream::pair().unwrap();
    let mut child = binary::command(home.path())
        .args(["--config", config.to_str().unwrap()])
        .stdin(OwnedFd::from(proxy_stdin))
        .stdout(OwnedFd::from(proxy_stdout))
        .spawn()
        .unwrap();
    let (_lines, _) = binary::watch_stderr(&mut child, BrowserMode::Ignore);
    for socket in [&to_proxy, &from_proxy] {
        socket.set_nonblocking(true).unwrap();
    }
    let mut to_proxy = tokio::net::UnixStream::from_std(to_proxy).unwrap();
    let mut answers = BufReader::new(tokio::net::UnixStream::from_std(from_proxy).unwrap()).lines();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "electron-like", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "over a socket"}}}),
    ];
    for request in requests {
        to_proxy
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
    }
    let mut echoed = None;
    while echoed.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(10), answers.next_line())
            .await
            .expect("an answer within 10 s")
            .unwrap()
            .expect("the proxy keeps its stdout open");
        let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
        if answer["id"] == 2 {
            echoed = Some(answer["result"]["content"][0]["text"].clone());
        }
    }
    assert_eq!(echoed, Some(json!("over a socket")));
    // The client closes its end: the proxy ends the session and exits 0.
    to_proxy.shutdown().await.unwrap();
    assert_eq!(binary::exit_code(&mut child, 5).await, Some(0));
    let rest = tokio::time::timeout(Duration::from_secs(5), answers.next_line()).await;
    assert!(
        matches!(rest, Ok(Ok(None))),
        "stdout ends with the session: {rest:?}"
    );
}

/// A value of the wrong kind from the drop-in's env vars or flags names where it came from.
#[tokio::test]
async fn a_wrong_flow_names_the_env_var_or_flag_that_set_it() {
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("MCP_BACKEND_URL", "https://mcp.example.com/mcp"),
        ("OIDC_CLIENT_ID", "cid"),
    ];
    for (args, extra, named) in [
        (
            vec!["status"],
            Some(("OIDC_FLOW", "web")),
            "(from OIDC_FLOW)",
        ),
        (
            vec!["status", "--oidc-flow", "web"],
            None,
            "(from --oidc-flow)",
        ),
    ] {
        let output = binary::command(home.path())
            .args(&args)
            .envs(env.iter().copied().chain(extra))
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("unknown variant") && stderr.contains(named),
            "{stderr}"
        );
        assert!(stderr.contains("device"), "the possible values: {stderr}");
    }
}
