//! Redirects never carry a request elsewhere: a backend may move within its own origin with a
//! 307/308, nothing more, and an identity provider may not redirect at all. What the proxy
//! would have sent (static headers, the bearer token, the session, the JSON-RPC body, the
//! authorization code and PKCE verifier) never reaches the other server, and the error says
//! what happened.

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::{
    auth::TokenManager,
    clients,
    config::{Backend, Gateway, Settings},
};
use serde_json::json;
use url::Url;

use crate::support::{
    self, BrowserMode, TestBrowser,
    desktop::{ListOnce, names},
    idp::{FakeIdp, IdpConfig},
    redirector::{Redirector, Thief},
    scripted::{Script, ScriptedBackend},
};

const API_KEY: &str = "static-api-key-1234";

fn with_key(name: &str, url: &str, prefix: Option<&str>) -> Backend {
    let mut backend = Backend::new(name, Url::parse(url).unwrap(), None, prefix);
    backend.headers = vec![("X-Api-Key".into(), API_KEY.into())];
    backend.request_timeout = Some(Duration::from_secs(5));
    backend
}

#[tokio::test]
async fn a_backend_that_redirects_elsewhere_gets_nothing_through_and_is_named() {
    let thief = Thief::start().await;
    for (status, to) in [
        (307, thief.url("/mcp")),
        (308, thief.url("/mcp")),
        (302, thief.url("/mcp")),
    ] {
        let redirector = Redirector::start(status, to).await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = support::settings(&redirector.url("/mcp"), None, dir.path());
        settings.backends = vec![with_key("default", &redirector.url("/mcp"), None)];
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let init = client.initialize("2025-11-25").await;
        let message = init["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains(&format!("redirected (HTTP {status})"))
                && message.contains("another origin")
                && message.contains(&thief.url("/mcp")),
            "{init}"
        );
        assert!(
            client.ended().await.is_err(),
            "a refused handshake is a start-up error"
        );
    }
    assert!(thief.seen().is_empty(), "{:?}", thief.seen());
}

#[tokio::test]
async fn a_same_origin_307_is_followed_and_other_redirects_are_refused_in_the_gateway() {
    let thief = Thief::start().await;
    let redirector = Redirector::start(307, thief.url("/mcp")).await;
    let moved = ScriptedBackend::start(Script::tools("moved", 2, 10, 0)).await;
    let dir = tempfile::tempdir().unwrap();
    // The scripted backend answers `/moved` with a same-origin 307 to `/mcp`.
    let moved_url = moved.url().replace("/mcp", "/moved");
    let settings = Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::Gateway,
        backends: vec![
            with_key("away", &redirector.url("/mcp"), Some("away")),
            with_key("moved", &moved_url, Some("moved")),
        ],
        gateway: Gateway {
            startup_timeout: Duration::from_secs(2),
            ..Gateway::default()
        },
    };
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    assert!(
        tools.contains(&"moved_tool_0".to_owned()),
        "the same-origin 307 is followed: {tools:?}"
    );
    let called = client.call("moved_tool_1", json!({})).await;
    assert_eq!(
        called["result"]["content"][0]["text"]
            .as_str()
            .map(|t| t.starts_with("moved ran tool_1")),
        Some(true),
        "{called}"
    );
    let away = client.call("away_anything", json!({})).await;
    let message = away["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("backend 'away'") && message.contains("another origin"),
        "{away}"
    );
    client.stop().await;
    assert!(thief.seen().is_empty(), "{:?}", thief.seen());
}

fn manager(idp_issuer: String, idp: &FakeIdp, dir: &std::path::Path) -> TokenManager {
    let mut profile = (*support::profile(idp, None)).clone();
    profile.issuer_url = Some(idp_issuer);
    TokenManager::new(
        Arc::new(profile),
        dir,
        clients::identity_provider(),
        TestBrowser::new(BrowserMode::Complete),
        Arc::default(),
    )
}

#[tokio::test]
async fn a_token_endpoint_that_redirects_gets_no_code_and_no_verifier_elsewhere() {
    let thief = Thief::start().await;
    let idp = FakeIdp::start(IdpConfig::default()).await;
    idp.redirect_token_requests(Some(thief.url("/token")));
    let dir = tempfile::tempdir().unwrap();
    let tokens = manager(idp.issuer(), &idp, dir.path());
    let error = tokens.access_token().await.unwrap_err().to_string();
    assert!(
        error.contains("answered HTTP 307, a redirect to")
            && error.contains(&thief.url("/token"))
            && error.contains("follow no redirects"),
        "{error}"
    );
    assert!(thief.seen().is_empty(), "{:?}", thief.seen());
    assert!(!tokens.cache_path().exists());
}

#[tokio::test]
async fn discovery_follows_no_redirect() {
    let thief = Thief::start().await;
    let idp = FakeIdp::start(IdpConfig::default()).await;
    // An issuer URL whose discovery document has "moved" elsewhere.
    let redirector = Redirector::start(301, thief.url("/.well-known/openid-configuration")).await;
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let mut profile = (*support::profile(&idp, None)).clone();
    profile.issuer_url = Some(redirector.url(""));
    let tokens = TokenManager::new(
        Arc::new(profile),
        dir.path(),
        clients::identity_provider(),
        browser.clone(),
        Arc::default(),
    );
    let error = tokens.access_token().await.unwrap_err().to_string();
    assert!(
        error.contains("OIDC discovery failed") && error.contains("answered HTTP 301"),
        "{error}"
    );
    assert!(thief.seen().is_empty());
    assert_eq!(browser.opened(), 0);
}
