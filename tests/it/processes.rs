//! Several proxy processes sharing one token cache, as when Claude Desktop, Cursor and a
//! terminal each start a gateway for the same identity provider: one browser login for all of
//! them, and a process that dies holding the login never blocks the others.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::process::Child;

use crate::support::{
    self, BrowserLog, BrowserMode,
    backend::{BackendConfig, TestBackend},
    binary,
    idp::{FakeIdp, IdpConfig},
};

/// A gateway on `config`; the logins it prints are completed when `complete`.
fn proxy(home: &Path, config: &str, complete: bool) -> (Child, Arc<Mutex<BrowserLog>>) {
    let mode = if complete {
        BrowserMode::Complete
    } else {
        BrowserMode::Ignore
    };
    let args = ["--config", config, "--no-banner"];
    let (child, _, logins) = binary::spawn(home, &args, &[], mode);
    (child, logins)
}

/// Connects as an MCP client over the child's stdio, calls `tool`, returns the subject.
async fn whoami(child: &mut Child, tool: &str) -> String {
    let client = binary::connect(child).await;
    let who = support::call_within(&client, Duration::from_secs(40), tool, json!({}))
        .await
        .expect("whoami succeeds");
    let sub = who["structuredContent"]["sub"]
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
    let (mut children, logins): (Vec<Child>, Vec<_>) = (0..processes)
        .map(|_| proxy(home.path(), config, true))
        .unzip();
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
        assert_eq!(binary::exit_code(child, 10).await, Some(0));
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
    let (mut first, first_logins) = proxy(home.path(), config, false);
    // The gateway starts its logins when the client initializes; the answer may wait.
    let client = binary::connect_until_login(&mut first, &first_logins).await;
    // ...and is killed (SIGKILL: no clean-up of its own).
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    client.abort();

    // The next one logs in at once instead of waiting out the first one's login timeout.
    let started = Instant::now();
    let (mut second, second_logins) = proxy(home.path(), config, true);
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
