//! Login and token lifecycle through the real proxy loop: a fake OIDC provider, a
//! token-validating backend, and a test browser that completes the redirect dance.

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::auth::cache::{StoredTokens, TokenCache};
use serde_json::json;

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
    first_text,
    idp::{AuthorizeBehavior, FakeIdp, IdpConfig},
    oidc_backend, prefixed,
};

const V: &str = "2025-11-25";

fn cached(dir: &std::path::Path, idp: &FakeIdp) -> Option<StoredTokens> {
    TokenCache::new(dir, &support::profile(idp, None), &[]).load()
}

#[tokio::test]
async fn first_login_then_cache_reuse_without_browser() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::Complete);

    let h = support::start(
        support::settings(&backend.url(), Some(profile.clone()), dir.path()),
        browser.clone(),
        V,
    )
    .await;
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["sub"], "user-123");
    assert_eq!(browser.opened(), 1);
    let (status, page) = browser.pages().pop().unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("return to your app"), "{page}");
    h.stop().await.unwrap();

    let tokens = cached(dir.path(), &idp).expect("tokens cached");
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.expires_at.is_some());

    // A second run uses the cache: no browser, no new code exchange.
    let again = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        again.clone(),
        V,
    )
    .await;
    assert_eq!(
        first_text(&h.call("echo", json!({"text": "hi"})).await.unwrap()),
        "hi"
    );
    h.stop().await.unwrap();
    assert_eq!(again.opened(), 0);
    assert_eq!(idp.stats().code_exchanges, 1);
}

#[tokio::test]
async fn near_expiry_token_is_refreshed_and_rotation_persisted() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    // 30 s left is inside the 60 s margin: every token is refreshed before use.
    idp.set_access_token_ttl(Duration::from_secs(30));
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(
        support::settings(&backend.url(), Some(profile.clone()), dir.path()),
        browser.clone(),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    let before = cached(dir.path(), &idp).unwrap();
    h.call("whoami", json!({})).await.unwrap();
    let after = cached(dir.path(), &idp).unwrap();
    h.stop().await.unwrap();

    assert!(idp.stats().refreshes >= 1, "{:?}", idp.stats());
    assert_ne!(
        before.refresh_token, after.refresh_token,
        "rotated refresh token stored"
    );
    assert_eq!(browser.opened(), 1);

    // A new run (as a new process would) starts from the rotated token; reuse would have been
    // detected by the provider and forced a browser login.
    let next = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        next.clone(),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();
    assert_eq!(next.opened(), 0);
    assert_eq!(idp.stats().refresh_failures, 0);
}

#[tokio::test]
async fn refused_refresh_falls_back_to_browser_login() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    idp.set_access_token_ttl(Duration::from_secs(30));
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        browser.clone(),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    idp.revoke_refresh_tokens();
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["sub"], "user-123");
    h.stop().await.unwrap();
    assert_eq!(browser.opened(), 2);
    assert_eq!(idp.stats().refresh_failures, 1);
}

#[tokio::test]
async fn backend_401_renews_once_and_retries_the_request() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        browser.clone(),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    backend.revoke_seen_tokens();
    let refreshes = idp.stats().refreshes;
    // The client sees a normal result: the proxy renewed the token and retried.
    let echoed = h
        .call("echo", json!({"text": "after revoke"}))
        .await
        .unwrap();
    assert_eq!(first_text(&echoed), "after revoke");
    assert_eq!(idp.stats().refreshes, refreshes + 1);
    assert!(backend.stats().unauthorized >= 1);
    h.stop().await.unwrap();
    assert_eq!(browser.opened(), 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_renewal() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        browser.clone(),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    backend.revoke_seen_tokens();
    let refreshes = idp.stats().refreshes;
    let calls = (0..6).map(|i| h.call("echo", json!({"text": format!("n{i}")})));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(idp.stats().refreshes, refreshes + 1, "one refresh for all");
    h.stop().await.unwrap();
}

#[tokio::test]
async fn confidential_client_authenticates_as_the_provider_allows() {
    for (methods, expected) in [
        (vec!["client_secret_basic", "client_secret_post"], "basic"),
        (vec!["client_secret_post"], "post"),
    ] {
        let (idp, backend, dir) = oidc_backend(IdpConfig {
            client_secret: Some("s3cr3t:&=".into()),
            token_auth_methods: methods.into_iter().map(String::from).collect(),
            ..IdpConfig::default()
        })
        .await;
        let profile = support::profile(&idp, Some("s3cr3t:&="));
        let browser = TestBrowser::new(BrowserMode::Complete);
        let h = support::start(
            support::settings(&backend.url(), Some(profile), dir.path()),
            browser,
            V,
        )
        .await;
        h.call("whoami", json!({})).await.unwrap();
        h.stop().await.unwrap();
        assert_eq!(idp.stats().last_client_auth.as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn foreign_state_is_rejected_without_ending_the_login() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::ForeignStateFirst);
    let h = support::start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        browser.clone(),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();
    let pages = browser.pages();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].0, 400);
    assert!(pages[0].1.contains("still waiting"), "{}", pages[0].1);
    assert_eq!(pages[1].0, 200);
}

#[tokio::test]
async fn access_denied_fails_initialize_with_a_clear_message() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    idp.set_authorize_behavior(AuthorizeBehavior::Deny);
    let profile = support::profile(&idp, None);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let err = support::try_start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        browser.clone(),
        V,
    )
    .await
    .err()
    .expect("initialize fails");
    assert!(err.contains("access_denied"), "{err}");
    assert!(err.contains("login refused"), "{err}");
    support::eventually(5, "the browser's page", || !browser.pages().is_empty()).await;
    let (_, page) = browser.pages().pop().unwrap();
    assert!(page.contains("Login failed"), "{page}");
}

#[tokio::test]
async fn login_timeout_fails_the_pending_request() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    let mut profile = (*support::profile(&idp, None)).clone();
    profile.login_timeout = Duration::from_millis(500);
    let browser = TestBrowser::new(BrowserMode::Ignore);
    let err = support::try_start(
        support::settings(&backend.url(), Some(Arc::new(profile)), dir.path()),
        browser,
        V,
    )
    .await
    .err()
    .expect("initialize fails");
    assert!(err.contains("login timed out"), "{err}");
}

#[tokio::test]
async fn callback_port_in_use_is_reported_with_the_fix() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    let profile = support::profile(&idp, None);
    let port = profile.redirect_url.port().unwrap();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let err = support::try_start(
        support::settings(&backend.url(), Some(profile), dir.path()),
        browser.clone(),
        V,
    )
    .await
    .err()
    .expect("initialize fails");
    assert!(
        err.contains(&format!("port {port} is already in use")),
        "{err}"
    );
    assert!(err.contains("OIDC_REDIRECT_URL"), "{err}");
    assert_eq!(
        browser.opened(),
        0,
        "no browser for a login that cannot complete"
    );
}

/// A `localhost` redirect URL whose port another program holds on `[::1]` only: a browser
/// trying `::1` first would give that program the code. The login stops before a browser
/// opens, and no authorization request reaches the provider, so no code exists to go astray.
#[tokio::test]
async fn a_localhost_login_does_not_start_while_the_port_is_held_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback address");
        return;
    }
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    // A port held on [::1] and free on 127.0.0.1 (the proxy's own IPv4 bind must succeed, so
    // that it is the IPv6 holder that stops the login).
    let (_holder, port) = (0..20)
        .find_map(|_| {
            let holder = std::net::TcpListener::bind("[::1]:0").unwrap();
            let port = holder.local_addr().unwrap().port();
            let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
            free.then_some((holder, port))
        })
        .expect("a port held on [::1] and free on 127.0.0.1");
    let mut profile = (*support::profile(&idp, None)).clone();
    profile.redirect_url =
        url::Url::parse(&format!("http://localhost:{port}/auth/callback")).unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let err = support::try_start(
        support::settings(&backend.url(), Some(Arc::new(profile)), dir.path()),
        browser.clone(),
        V,
    )
    .await
    .err()
    .expect("initialize fails");
    assert!(
        err.contains(&format!("port {port} is already in use"))
            && err.contains(&format!("[::1]:{port}")),
        "{err}"
    );
    assert_eq!(
        browser.opened(),
        0,
        "no browser for a login that cannot complete"
    );
    assert_eq!(idp.stats().authorize_requests, 0, "no code was issued");
}

#[tokio::test]
async fn processes_sharing_a_cache_never_reuse_a_rotated_refresh_token() {
    use authful_mcp_proxy::{auth::TokenManager, clients};
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    idp.set_access_token_ttl(Duration::from_secs(30));
    let profile = support::profile(&idp, None);
    let h = support::start(
        support::settings(&backend.url(), Some(profile.clone()), dir.path()),
        TestBrowser::new(BrowserMode::Complete),
        V,
    )
    .await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();
    let refreshes = idp.stats().refreshes;

    // Three "processes" (separate managers, separate file handles) wake up at once with a
    // token that needs refreshing: they must take turns, each using the newest refresh token.
    let browser = TestBrowser::new(BrowserMode::Ignore);
    let managers: Vec<TokenManager> = (0..3)
        .map(|_| {
            TokenManager::new(
                profile.clone(),
                dir.path(),
                clients::identity_provider(),
                browser.clone(),
                Arc::default(),
            )
        })
        .collect();
    let tokens = futures::future::join_all(managers.iter().map(|m| m.access_token())).await;
    for token in tokens {
        token.expect("a refreshed token, no login");
    }
    assert_eq!(
        idp.stats().refresh_failures,
        0,
        "no refresh token was used twice"
    );
    assert_eq!(idp.stats().refreshes, refreshes + 3);
    assert_eq!(browser.opened(), 0);
}

/// A backend that rejects even fresh tokens (it wants another audience), for a profile
/// without refresh tokens: one browser login, not one per request or per reconnect, and an
/// error that says what is wrong.
#[tokio::test]
async fn a_backend_that_rejects_fresh_tokens_opens_no_browser_storm() {
    use authful_mcp_proxy::config::{Gateway, Settings};

    let idp = FakeIdp::start(IdpConfig {
        refresh_tokens: false,
        ..IdpConfig::default()
    })
    .await;
    let picky = TestBackend::start(
        BackendConfig::oidc("picky", idp.issuer(), idp.jwks_uri()).with_audience("another-api"),
    )
    .await;
    let open = TestBackend::start(BackendConfig::open("open")).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let settings = Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::Gateway,
        backends: vec![
            prefixed("open", &open.url(), None),
            prefixed("picky", &picky.url(), Some(&profile)),
        ],
        gateway: Gateway {
            startup_timeout: Duration::from_secs(2),
            ..Gateway::default()
        },
    };
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    // Reconnects (with backoff) and calls, for a while.
    for _ in 0..4 {
        let error = h
            .call("picky_echo", json!({"text": "x"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("rejects the tokens of") && error.contains("audience"),
            "{error}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(
        browser.opened(),
        1,
        "one login, however often the server says 401"
    );
    assert!(picky.stats().unauthorized >= 2, "{:?}", picky.stats());
    h.stop().await.unwrap();
}
