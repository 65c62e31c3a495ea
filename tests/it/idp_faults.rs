//! Identity provider faults, each with a bounded outcome: a provider that is briefly down is
//! retried and costs no new login, one that stays down fails the request but keeps the tokens,
//! an unreachable issuer is named, and a provider clock a few minutes off changes nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use authful_mcp_proxy::{
    auth::cache::TokenCache,
    config::{Backend, Settings},
};
use serde_json::json;
use url::Url;

use crate::support::{
    self, BrowserMode, Harness, TestBrowser,
    backend::{BackendConfig, TestBackend},
    idp::{FakeIdp, IdpConfig, TokenFault},
    oidc_backend, prefixed,
};

const V: &str = "2025-11-25";

/// The drop-in (one backend, the profile of `idp`), started on pipes; the login happens on
/// the first request.
async fn start_drop_in(
    idp: &FakeIdp,
    backend: &TestBackend,
    dir: &tempfile::TempDir,
    browser: Arc<TestBrowser>,
) -> Result<Harness, String> {
    let profile = support::profile(idp, None);
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    support::try_start(settings, browser, V).await
}

#[tokio::test]
async fn a_briefly_unavailable_token_endpoint_is_retried_without_a_new_login() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    // 30 s tokens are inside the refresh margin: every request refreshes first.
    idp.set_access_token_ttl(Duration::from_secs(30));
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = start_drop_in(&idp, &backend, &dir, browser.clone())
        .await
        .unwrap();
    h.call("whoami", json!({})).await.unwrap();

    for faults in [
        [
            TokenFault::TemporarilyUnavailable,
            TokenFault::TemporarilyUnavailable,
        ],
        [
            TokenFault::HtmlServerError,
            TokenFault::TemporarilyUnavailable,
        ],
    ] {
        let refreshes = idp.stats().refreshes;
        idp.fail_token_requests(&faults);
        let who = h
            .call("whoami", json!({}))
            .await
            .expect("the third try succeeds");
        assert_eq!(who["structuredContent"]["sub"], "user-123");
        assert_eq!(idp.stats().refreshes, refreshes + 1);
    }
    h.stop().await.unwrap();
    assert_eq!(browser.opened(), 1, "no new login for a provider hiccup");
    assert_eq!(idp.stats().code_exchanges, 1);
}

#[tokio::test]
async fn a_token_endpoint_that_stays_down_fails_the_request_but_keeps_the_tokens() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    idp.set_access_token_ttl(Duration::from_secs(30));
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = start_drop_in(&idp, &backend, &dir, browser.clone())
        .await
        .unwrap();
    h.call("whoami", json!({})).await.unwrap();
    let cache = TokenCache::new(dir.path(), &support::profile(&idp, None), &[]);
    let before = cache.load().unwrap();

    idp.fail_token_requests(&[TokenFault::HtmlServerError; 3]);
    let started = Instant::now();
    let error = h
        .call("whoami", json!({}))
        .await
        .expect_err("the provider is down")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("backend 'default'"), "{error}");
    assert!(error.contains("token request failed"), "{error}");
    assert!(!error.contains("<html>"), "{error}");
    for secret in [
        before.access_token.as_ref().unwrap().expose(),
        before.refresh_token.as_ref().unwrap().expose(),
    ] {
        assert!(
            !error.contains(secret),
            "a token leaked into the client's error: {error}"
        );
    }
    let kept = cache.load().expect("the tokens are kept");
    assert_eq!(kept.refresh_token, before.refresh_token);

    // Back up: the kept refresh token works, still no browser.
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["sub"], "user-123");
    h.stop().await.unwrap();
    assert_eq!(browser.opened(), 1);
    assert_eq!(idp.stats().refresh_failures, 0, "{:?}", idp.stats());
}

#[tokio::test]
async fn a_provider_clock_minutes_off_changes_nothing() {
    for offset in [-240, 240] {
        let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
        idp.set_clock_offset(offset);
        let browser = TestBrowser::new(BrowserMode::Complete);
        let h = start_drop_in(&idp, &backend, &dir, browser.clone())
            .await
            .unwrap();
        let who = h.call("whoami", json!({})).await.unwrap();
        assert_eq!(
            who["structuredContent"]["sub"], "user-123",
            "offset {offset}"
        );
        h.stop().await.unwrap();
        // The cached expiry follows `expires_in`, not the provider's clock: no early refresh.
        let tokens = TokenCache::new(dir.path(), &support::profile(&idp, None), &[])
            .load()
            .unwrap();
        let left = tokens.expires_at.unwrap() - authful_mcp_proxy::auth::cache::unix_now();
        assert!(
            (3500..=3600).contains(&left),
            "offset {offset}: {left} s left"
        );
        assert_eq!(browser.opened(), 1);
    }
}

#[tokio::test]
async fn an_unreachable_issuer_is_named_and_the_gateway_keeps_serving() {
    let open = TestBackend::start(BackendConfig::open("open")).await;
    let (idp, secured, dir) = oidc_backend(IdpConfig::default()).await;
    let mut profile = (*support::profile(&idp, None)).clone();
    profile.issuer_url = Some(format!("http://127.0.0.1:{}", support::free_port()));
    let profile = std::sync::Arc::new(profile);
    let mut settings = Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::Gateway,
        backends: vec![
            prefixed("open", &open.url(), None),
            prefixed("secured", &secured.url(), Some(&profile)),
        ],
        gateway: Default::default(),
    };
    settings.gateway.startup_timeout = Duration::from_secs(3);
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let error = h
        .call("secured_whoami", json!({}))
        .await
        .expect_err("no provider, no token")
        .to_string();
    assert!(error.contains("backend 'secured'"), "{error}");
    assert!(error.contains("OIDC discovery failed"), "{error}");
    let echo = h
        .call("open_echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(support::first_text(&echo), "still here");
    h.stop().await.unwrap();
}

#[tokio::test]
async fn an_id_token_that_does_not_validate_fails_the_login() {
    use support::idp::IdTokenFault;
    for fault in [
        IdTokenFault::ForeignSignature,
        IdTokenFault::WrongNonce,
        IdTokenFault::WrongAudience,
        IdTokenFault::WrongIssuer,
    ] {
        let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
        idp.set_id_token_fault(Some(fault));
        let error = start_drop_in(
            &idp,
            &backend,
            &dir,
            TestBrowser::new(BrowserMode::Complete),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{fault:?}: the login must fail"));
        assert!(error.contains("ID token rejected"), "{fault:?}: {error}");
        let cache = TokenCache::new(dir.path(), &support::profile(&idp, None), &[]);
        assert!(
            cache.load().is_none(),
            "{fault:?}: tokens of a bad login were stored"
        );
    }
}

#[tokio::test]
async fn a_login_abandoned_in_the_browser_times_out_and_the_next_request_starts_a_new_one() {
    use support::idp::AuthorizeBehavior;
    let (idp, secured, dir) = oidc_backend(IdpConfig::default()).await;
    idp.set_authorize_behavior(AuthorizeBehavior::Hang);
    let mut profile = (*support::profile(&idp, None)).clone();
    profile.login_timeout = Duration::from_secs(1);
    let mut settings = Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::Gateway,
        backends: vec![Backend::new(
            "secured",
            Url::parse(&secured.url()).unwrap(),
            Some(std::sync::Arc::new(profile)),
            Some("secured"),
        )],
        gateway: Default::default(),
    };
    settings.gateway.startup_timeout = Duration::from_secs(3);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    support::eventually(10, "the first login to time out", || browser.opened() == 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let error = h
        .call("secured_whoami", json!({}))
        .await
        .expect_err("nobody logged in")
        .to_string();
    assert!(error.contains("login timed out"), "{error}");

    // The user is back: the next request opens a new login, which completes.
    idp.set_authorize_behavior(AuthorizeBehavior::Approve);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match h.call("secured_whoami", json!({})).await {
            Ok(who) => {
                assert_eq!(who["structuredContent"]["sub"], "user-123");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no second login: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(browser.opened(), 2);
    h.stop().await.unwrap();
}

/// A server that issues no ID token (plain OAuth) needs no key set that answers: its keys are
/// read only for an ID token, so the sign-in works with a `jwks_uri` that answers 404.
#[tokio::test]
async fn a_provider_that_issues_no_id_token_needs_no_key_set_that_answers() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    // The backend checks its tokens with the real keys; the discovery document names a key
    // set that answers 404.
    idp.set_discovery("jwks_uri", json!(format!("{}/no-such-keys", idp.issuer())));
    idp.set_id_token_fault(Some(support::idp::IdTokenFault::Omitted));
    let h = start_drop_in(
        &idp,
        &backend,
        &dir,
        TestBrowser::new(BrowserMode::Complete),
    )
    .await
    .expect("signed in without the keys");
    let who = h.call("whoami", json!({})).await.unwrap();
    assert!(!support::first_text(&who).is_empty());
    h.stop().await.unwrap();
}

#[tokio::test]
async fn a_broken_key_set_is_told_apart_from_a_wrong_issuer() {
    let (idp, backend, dir) = oidc_backend(IdpConfig::default()).await;
    idp.set_jwks_broken(true);
    let error = start_drop_in(
        &idp,
        &backend,
        &dir,
        TestBrowser::new(BrowserMode::Complete),
    )
    .await
    .err()
    .expect("no keys, no login");
    assert!(error.contains(&format!("at {}", idp.jwks_uri())), "{error}");
    assert!(error.contains("the issuer URL is right"), "{error}");
}
