//! Several proxy processes sharing one token cache, as when Claude Desktop, Cursor and a
//! terminal each start a gateway for the same identity provider: one browser login for all of
//! them, and a process that dies holding the login never blocks the others.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rmcp::ServiceExt;
use serde_json::json;
use tokio::process::Child;

use crate::support::{
    self, BrowserLog, BrowserMode, TestClient,
    backend::{BackendConfig, TestBackend},
    binary,
    idp::{FakeIdp, IdpConfig},
};

fn proxy(home: &Path, args: &[&str]) -> Child {
    binary::command(home).args(args).spawn().unwrap()
}

/// The authorization URLs a process prints; the logins are completed when `complete`.
fn watch_logins(child: &mut Child, complete: bool) -> Arc<Mutex<BrowserLog>> {
    let mode = if complete {
        BrowserMode::Complete
    } else {
        BrowserMode::Ignore
    };
    binary::watch_stderr(child, mode).1
}

/// Connects as an MCP client over the child's stdio, calls `tool`, returns the subject.
async fn whoami(child: &mut Child, tool: &str) -> String {
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = TestClient::new("2025-06-18")
        .serve((stdout, stdin))
        .await
        .expect("initialize");
    let params = serde_json::from_value(json!({"name": tool, "arguments": {}})).unwrap();
    let who = tokio::time::timeout(Duration::from_secs(40), client.call_tool(params))
        .await
        .expect("whoami answers")
        .expect("whoami succeeds");
    let sub = serde_json::to_value(who).unwrap()["structuredContent"]["sub"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    client.cancel().await.unwrap();
    sub
}

fn gateway_config(dir: &Path, idp: &FakeIdp, backend: &TestBackend) -> std::path::PathBuf {
    let path = dir.join("gateway.yaml");
    let yaml = format!(
        "oidc_profiles:\n  corp:\n    issuer_url: {}\n    client_id: {}\n    redirect_url: \
         http://localhost:{}/auth/callback\nbackends:\n  corp:\n    url: {}\n    oidc_profile: \
         corp\ngateway:\n  startup_timeout: 30\n",
        idp.issuer(),
        idp.client_id(),
        support::free_port(),
        backend.url(),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn concurrent_gateways_log_in_once(processes: usize) {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("corp", idp.issuer(), idp.jwks_uri())).await;
    let home = tempfile::tempdir().unwrap();
    let config = gateway_config(home.path(), &idp, &backend);
    let config = config.to_str().unwrap();
    let mut children: Vec<Child> = (0..processes)
        .map(|_| proxy(home.path(), &["--config", config, "--no-banner"]))
        .collect();
    let logins: Vec<_> = children.iter_mut().map(|c| watch_logins(c, true)).collect();
    let subs =
        futures::future::join_all(children.iter_mut().map(|c| whoami(c, "corp_whoami"))).await;
    assert!(subs.iter().all(|s| s == "user-123"), "{subs:?}");
    let opened: usize = logins.iter().map(|l| l.lock().unwrap().urls.len()).sum();
    assert_eq!(
        opened, 1,
        "{processes} processes opened {opened} browser logins"
    );
    assert_eq!(idp.stats().code_exchanges, 1, "{:?}", idp.stats());
    for child in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the proxy exits when stdin closes")
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }
    backend.shutdown();
    idp.shutdown();
}

#[tokio::test]
async fn two_gateways_on_an_empty_cache_share_one_browser_login() {
    concurrent_gateways_log_in_once(2).await;
}

#[tokio::test]
async fn three_gateways_on_an_empty_cache_share_one_browser_login() {
    concurrent_gateways_log_in_once(3).await;
}

#[tokio::test]
async fn a_process_that_dies_during_its_login_does_not_block_the_next() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("corp", idp.issuer(), idp.jwks_uri())).await;
    let home = tempfile::tempdir().unwrap();
    let config = gateway_config(home.path(), &idp, &backend);
    let config = config.to_str().unwrap();

    // The first process starts a login nobody finishes, holding the profile's lock...
    let mut first = proxy(home.path(), &["--config", config, "--no-banner"]);
    let first_logins = watch_logins(&mut first, false);
    let (stdout, stdin) = (first.stdout.take().unwrap(), first.stdin.take().unwrap());
    // The gateway starts its logins when the client initializes; the answer may wait.
    let client = tokio::spawn(TestClient::new("2025-06-18").serve((stdout, stdin)));
    support::eventually(20, "the first login to start", || {
        !first_logins.lock().unwrap().urls.is_empty()
    })
    .await;
    // ...and is killed (SIGKILL: no clean-up of its own).
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    client.abort();

    // The next one logs in at once instead of waiting out the first one's login timeout.
    let started = Instant::now();
    let mut second = proxy(home.path(), &["--config", config, "--no-banner"]);
    let second_logins = watch_logins(&mut second, true);
    assert_eq!(whoami(&mut second, "corp_whoami").await, "user-123");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(second_logins.lock().unwrap().urls.len(), 1);
    backend.shutdown();
    idp.shutdown();
}
