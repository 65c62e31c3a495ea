//! What the binary's debug log says about the MCP messages it relays. `--debug` gives each
//! request's shape — method, id, backend, time, counts and sizes — and never what a message
//! says: not a tool's arguments or result, a notification's data, or an error's message.
//! `--log-content` (or `MCP_PROXY_LOG_CONTENT`) adds the whole messages and implies `--debug`.
//! No token or secret in either.
//!
//! The real binary with `--log-file`, so that the filter under test is the one `--debug` sets
//! up, not one a test installs.

use std::{path::Path, time::Duration};

use rmcp::model::ReadResourceRequestParams;
use serde_json::{Value, json};

use crate::{
    secrets::cached_tokens,
    support::{
        self, BrowserMode, Client,
        backend::{BackendConfig, TestBackend},
        binary,
        idp::{FakeIdp, IdpConfig},
    },
};

const SECRET: &str = "client-secret-of-the-debug-log-tests";
/// In `echo`'s arguments and so in its result.
const ECHOED: &str = "echoed-7c1f-in-arguments-and-result";
/// In `add`'s arguments only: the backend ignores the extra argument.
const ARGUMENT_ONLY: &str = "argument-only-52ad";
/// `add`'s sum, 987654321000 + 12: in its result only.
const SUM: &str = "987654321012";
/// The data of the log notification the `log` tool sends.
const NOTIFIED: &str = "notification-data-90be";
/// In the URI of a resource that does not exist, which the backend's error message and data
/// repeat.
const MISSING: &str = "missing-resource-3e6d";

/// What one session of the binary left behind.
struct Session {
    /// The log file's lines.
    log: Vec<String>,
    /// Everything else it printed (stderr).
    stderr: Vec<String>,
    /// The client secret, the tokens it held and the authorization code of its login.
    secrets: Vec<String>,
}

impl Session {
    /// Whether any line of the log or stderr contains `text`.
    fn mentions(&self, text: &str) -> bool {
        self.log
            .iter()
            .chain(&self.stderr)
            .any(|l| l.contains(text))
    }

    /// The one log line that contains all of `parts`.
    fn line_with(&self, parts: &[&str]) -> &str {
        let found: Vec<&String> = self
            .log
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one line with {parts:?} expected in:\n{}",
            self.log.join("\n")
        );
        found[0]
    }

    fn assert_no_secret(&self) {
        assert!(
            self.secrets.len() >= 3,
            "too few secrets: {:?}",
            self.secrets
        );
        for line in self.log.iter().chain(&self.stderr) {
            for secret in &self.secrets {
                assert!(!line.contains(secret.as_str()), "a secret in: {line}");
            }
        }
    }
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<Value, String> {
    support::call_within(client, Duration::from_secs(30), tool, args).await
}

/// The answer of a request to the proxy, failing the test after 30 s without one.
async fn within<T>(request: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("an answer within 30 s")
}

/// A login, then: `echo`, `add` with an extra argument, `log` (a notification to the client),
/// and `resources/read` of a resource that does not exist (an error).
async fn session(args: &[&str], envs: &[(&'static str, String)]) -> Session {
    let idp = FakeIdp::start(IdpConfig {
        client_secret: Some(SECRET.into()),
        ..IdpConfig::default()
    })
    .await;
    let backend =
        TestBackend::start(BackendConfig::oidc("secured", idp.issuer(), idp.jwks_uri())).await;
    let home = tempfile::tempdir().unwrap();
    let log_file = home.path().join("proxy.log");
    let mut all_args = vec!["--log-file", log_file.to_str().unwrap()];
    all_args.extend(args);
    let mut all_envs = binary::drop_in_env(&idp, &backend);
    all_envs.push(("OIDC_CLIENT_SECRET", SECRET.to_owned()));
    all_envs.extend(envs.iter().cloned());
    let (mut child, stderr, browser) =
        binary::spawn(home.path(), &all_args, &all_envs, BrowserMode::Complete);
    let client = binary::connect(&mut child).await;

    // The backend hands out its tools in pages, which the proxy reads.
    within(client.list_tools(None)).await.expect("tools/list");
    let echoed = call(&client, "echo", json!({"text": ECHOED})).await;
    assert_eq!(support::first_text(&echoed.expect("echo")), ECHOED);
    let added = call(
        &client,
        "add",
        json!({"a": 987_654_321_000_i64, "b": 12, "note": ARGUMENT_ONLY}),
    )
    .await;
    assert_eq!(support::first_text(&added.expect("add")), SUM);
    let logged = call(
        &client,
        "log",
        json!({"level": "warning", "message": NOTIFIED}),
    )
    .await;
    assert_eq!(support::first_text(&logged.expect("log")), "logged");
    let events = std::sync::Arc::clone(&client.service().events);
    support::eventually(10, "the log notification", || {
        !events.lock().unwrap().logs.is_empty()
    })
    .await;
    let params: ReadResourceRequestParams =
        serde_json::from_value(json!({"uri": format!("mem://nowhere/{MISSING}")})).unwrap();
    let missing = within(client.read_resource(params)).await;
    assert!(
        missing.is_err_and(|e| e.to_string().contains(MISSING)),
        "the backend's error names the resource"
    );

    client.cancel().await.unwrap();
    assert_eq!(binary::exit_code(&mut child, 10).await, Some(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stderr = stderr.lock().unwrap().clone();
    let log = read_lines(&log_file);
    if std::env::var_os("SHOW_PROXY_STDERR").is_some() {
        eprintln!("{}\n{}", stderr.join("\n"), log.join("\n"));
    }
    Session {
        log,
        stderr,
        secrets: secrets(home.path(), &browser.lock().unwrap().callbacks),
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn secrets(home: &Path, callbacks: &[String]) -> Vec<String> {
    let codes = callbacks.iter().filter_map(|callback| {
        let url = url::Url::parse(callback).ok()?;
        let code = url.query_pairs().find(|(k, _)| k == "code")?.1;
        Some(code.into_owned())
    });
    std::iter::once(SECRET.to_owned())
        .chain(cached_tokens(home))
        .chain(codes)
        .collect()
}

#[tokio::test]
async fn debug_logs_the_shape_of_each_request_and_nothing_it_says() {
    let run = session(&["--debug"], &[]).await;
    assert!(run.log.len() > 10, "debug logs expected: {:?}", run.log);
    for content in [ECHOED, ARGUMENT_ONLY, SUM, NOTIFIED, MISSING] {
        assert!(
            !run.mentions(content),
            "{content} logged:\n{}",
            run.log.join("\n")
        );
    }
    // Method, tool name, backend, time, and the result's shape.
    let echo = run.line_with(&["tools/call 'echo' #", " to backend 'default': answered in "]);
    assert!(
        echo.ends_with(&format!(
            "1 content item (text {} B), isError false",
            ECHOED.len()
        )),
        "{echo}"
    );
    let add = run.line_with(&["tools/call 'add' #"]);
    assert!(add.contains(", structuredContent 1 key"), "{add}");
    // An error: its code and the size of its message and data.
    let read = run.line_with(&["resources/read #", " to backend 'default': "]);
    assert!(read.contains("error -32002 (message "), "{read}");
    // The notification, by its method.
    run.line_with(&["notifications/message from backend 'default' to the client"]);
    // A page of a list, counted.
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("tools/list #") && l.contains(" tools, next cursor")),
        "{:?}",
        run.log
    );
    run.assert_no_secret();
}

#[tokio::test]
async fn log_content_logs_whole_messages_and_implies_debug() {
    for (args, envs) in [
        (&["--log-content"][..], vec![]),
        (&[], vec![("MCP_PROXY_LOG_CONTENT", "yes".to_owned())]),
    ] {
        let run = session(args, &envs).await;
        // Results and requests, whole; the shape lines still there.
        for content in [SUM, ARGUMENT_ONLY, NOTIFIED] {
            assert!(
                run.mentions(content),
                "{args:?} {envs:?}: {content} not logged:\n{}",
                run.log.join("\n")
            );
        }
        run.line_with(&["tools/call 'add' #", "answered in "]);
        run.assert_no_secret();
    }
}

#[tokio::test]
async fn log_content_and_silent_together_are_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let mut child = binary::command(home.path())
        .args(["--silent", "--log-content"])
        .spawn()
        .unwrap();
    assert_eq!(binary::exit_code(&mut child, 10).await, Some(2));
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    // Refused for the conflict, not as an unknown flag.
    assert!(
        stderr.contains("'--silent' cannot be used with '--log-content'"),
        "{stderr}"
    );
}
