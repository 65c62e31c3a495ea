//! An identity provider that is hostile, compromised or simply broken: endpoints that are not
//! `https://` (or loopback), an authorization response from another issuer (RFC 9207), keys
//! rotated between two logins, an answer too large, a token endpoint that never answers, a
//! device code full of terminal escapes or a script for a URL, numbers near `u64::MAX`. The
//! login is refused before any browser opens where it should be, and goes on where it can;
//! nothing it says drives the terminal, and no number it sends panics the process.

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::{
    auth::TokenManager,
    clients,
    config::{Flow, Profile},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{
    self, BrowserMode, TestBrowser,
    idp::{DeviceFlowConfig, FakeIdp, IdpConfig, TokenFault},
};

fn manager(
    profile: Arc<Profile>,
    dir: &std::path::Path,
    browser: Arc<TestBrowser>,
) -> TokenManager {
    TokenManager::new(
        profile,
        dir,
        clients::identity_provider(),
        browser,
        Arc::default(),
    )
}

#[tokio::test]
async fn endpoints_that_are_not_https_are_refused_before_any_browser_opens() {
    let cases: [(&str, Value); 5] = [
        ("authorization_endpoint", json!("file:///etc/passwd")),
        ("authorization_endpoint", json!("myapp://authorize")),
        ("token_endpoint", json!("http://idp.example.com/token")),
        (
            "userinfo_endpoint",
            json!("http://idp.example.com/userinfo"),
        ),
        ("revocation_endpoint", json!("ftp://idp.example.com/revoke")),
    ];
    for (key, value) in cases {
        let idp = FakeIdp::start(IdpConfig::default()).await;
        idp.set_discovery(key, value.clone());
        let dir = tempfile::tempdir().unwrap();
        let browser = TestBrowser::new(BrowserMode::Complete);
        let tokens = manager(support::profile(&idp, None), dir.path(), browser.clone());
        let error = tokens.access_token().await.unwrap_err().to_string();
        assert!(
            error.contains("cannot be trusted with a login")
                && error.contains(key)
                && error.contains(value.as_str().unwrap()),
            "{key}: {error}"
        );
        assert_eq!(
            browser.opened(),
            0,
            "{key}: no browser for a hostile provider"
        );
        assert_eq!(idp.stats().authorize_requests, 0);
    }
}

#[tokio::test]
async fn a_key_set_off_loopback_over_http_is_never_fetched() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    idp.set_discovery("jwks_uri", json!("http://keys.example.com/jwks"));
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let tokens = manager(support::profile(&idp, None), dir.path(), browser.clone());
    let error = tokens.access_token().await.unwrap_err().to_string();
    // Refused with the discovery document, before any browser opens or any key is read.
    assert!(
        error.contains("jwks_uri 'http://keys.example.com/jwks' must use https://"),
        "{error}"
    );
    assert_eq!(browser.opened(), 0);
    assert_eq!(idp.stats().jwks_fetches, 0);
}

/// RFC 9207: an authorization response that names another issuer, or lacks the `iss` its
/// provider promises, does not complete the login, and nothing is stored.
#[tokio::test]
async fn the_authorization_response_must_come_from_the_profiles_issuer() {
    for (promised, iss, accepted) in [
        (false, Some("https://other-idp.example"), false),
        (true, None, false),
        (true, Some("https://other-idp.example"), false),
        (false, None, true),
        (true, Some("ISSUER"), true),
    ] {
        let idp = FakeIdp::start(IdpConfig::default()).await;
        if promised {
            idp.set_discovery(
                "authorization_response_iss_parameter_supported",
                json!(true),
            );
        }
        idp.set_response_iss(iss.map(|i| i.replace("ISSUER", &idp.issuer())));
        let dir = tempfile::tempdir().unwrap();
        let browser = TestBrowser::new(BrowserMode::Complete);
        let tokens = manager(support::profile(&idp, None), dir.path(), browser.clone());
        let outcome = tokens.access_token().await;
        let case = format!("promised {promised}, iss {iss:?}");
        if accepted {
            outcome.unwrap_or_else(|e| panic!("{case}: {e}"));
            continue;
        }
        let error = outcome.unwrap_err().to_string();
        assert!(error.starts_with("login refused: "), "{case}: {error}");
        assert!(
            error.contains("other-idp.example") || error.contains("promises an iss parameter"),
            "{case}: {error}"
        );
        assert_eq!(
            idp.stats().code_exchanges,
            0,
            "{case}: the code is never used"
        );
        assert!(!tokens.cache_path().exists(), "{case}");
        // The browser is told too (its page arrives just after the login has ended).
        support::eventually(5, "the refusal page", || {
            browser.pages().last().map(|p| p.0) == Some(400)
        })
        .await;
    }
}

/// A provider that rotates its signing key between two logins: the second login reads the key
/// set once more and succeeds, instead of failing until the proxy restarts.
#[tokio::test]
async fn a_rotated_signing_key_is_read_again_once() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    // Tokens that are due for renewal at once: the next request needs the provider again.
    idp.set_access_token_ttl(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let tokens = manager(support::profile(&idp, None), dir.path(), browser.clone());
    let first = tokens.access_token().await.unwrap();
    assert_eq!((idp.stats().discoveries, idp.stats().jwks_fetches), (1, 1));

    // The provider rotates its key and forgets the refresh token: the next login's ID token is
    // signed by a key the proxy has not seen.
    idp.rotate_signing_key();
    idp.revoke_refresh_tokens();
    let second = tokens
        .access_token()
        .await
        .expect("a new login with the new key");
    assert_ne!(second, first);
    assert_eq!(browser.opened(), 2);
    let stats = idp.stats();
    assert_eq!(stats.jwks_fetches, 2, "the key set is read once more");
    assert_eq!(
        stats.discoveries, 1,
        "the key set was enough; no new discovery"
    );
}

#[tokio::test]
async fn a_discovery_document_over_a_mebibyte_is_refused() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    idp.set_discovery("padding", json!("x".repeat(2 * 1024 * 1024)));
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let tokens = manager(support::profile(&idp, None), dir.path(), browser.clone());
    let error = tokens.access_token().await.unwrap_err().to_string();
    assert!(error.contains("answered more than 1024 KiB"), "{error}");
    assert_eq!(browser.opened(), 0);
}

/// A token endpoint that takes the request and never answers: the login fails after the 30-s
/// limit with a message naming the provider, and the next attempt is not blocked by locks the
/// stalled one held.
#[tokio::test]
async fn a_stalled_token_endpoint_fails_within_thirty_seconds_and_frees_its_locks() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    idp.fail_token_requests(&[TokenFault::Stall]);
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let tokens = manager(support::profile(&idp, None), dir.path(), browser.clone());
    let started = std::time::Instant::now();
    let error = tokens.access_token().await.unwrap_err().to_string();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(45),
        "{took:?}"
    );
    assert!(
        error.contains(&format!("{}/token: no answer within 30 s", idp.issuer())),
        "{error}"
    );
    // The provider answers again: the next request logs in at once.
    let started = std::time::Instant::now();
    tokens.access_token().await.expect("a login");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Serves `answer` at `/` on loopback (an endpoint a provider's discovery document names).
async fn answering(answer: Value, stop: &CancellationToken) -> String {
    let router = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        async move { axum::Json(answer) }
    });
    format!("http://{}/", support::serve_http(router, stop).await)
}

/// A device-flow profile of `idp`, whose sign-in may take `login_timeout`.
fn device_profile(idp: &FakeIdp, login_timeout: Duration) -> Arc<Profile> {
    let mut profile = (*support::profile(idp, None)).clone();
    profile.flow = Flow::Device;
    profile.login_timeout = login_timeout;
    Arc::new(profile)
}

/// A device authorization whose code carries terminal escapes and bidirectional controls
/// reaches the person without them; one whose "complete" URL is a script is refused before
/// anyone is told anything.
#[tokio::test]
async fn a_device_authorization_cannot_drive_the_terminal_or_offer_a_script() {
    let idp = FakeIdp::start(IdpConfig {
        device_flow: Some(DeviceFlowConfig::default()),
        ..IdpConfig::default()
    })
    .await;
    let stop = CancellationToken::new();
    let device = |complete: Value| {
        json!({
            "device_code": "dc",
            "user_code": "AB\u{1b}]0;pwned\u{7}CD\u{1b}[2J\u{202e}",
            "verification_uri": format!("{}/device", idp.issuer()),
            "verification_uri_complete": complete,
            "expires_in": 600,
            "interval": 1,
        })
    };
    let dir = tempfile::tempdir().unwrap();

    let endpoint = answering(device(json!("javascript:alert(document.cookie)")), &stop).await;
    idp.set_discovery("device_authorization_endpoint", json!(endpoint));
    let tokens = manager(
        device_profile(&idp, Duration::from_secs(5)),
        dir.path(),
        TestBrowser::new(BrowserMode::Ignore),
    );
    let mut notices = tokens.notices().subscribe();
    let error = tokens.access_token().await.unwrap_err().to_string();
    assert!(
        error.contains("verification_uri_complete") && error.contains("refused"),
        "{error}"
    );
    assert!(notices.try_recv().is_err(), "nobody was told to open it");

    let endpoint = answering(device(Value::Null), &stop).await;
    idp.set_discovery("device_authorization_endpoint", json!(endpoint));
    let tokens = manager(
        device_profile(&idp, Duration::from_secs(5)),
        dir.path(),
        TestBrowser::new(BrowserMode::Ignore),
    );
    let mut notices = tokens.notices().subscribe();
    let _ = tokens.access_token().await;
    let notice = notices.try_recv().expect("the person was told the code");
    assert!(
        !notice.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{notice:?}"
    );
    assert!(notice.contains("AB]0;pwnedCD[2J"), "{notice:?}");
    stop.cancel();
}

/// A provider's numbers are clamped, with checked arithmetic: a device `interval` of
/// `u64::MAX` (which used to panic the process) waits for the code's lifetime and ends there.
#[tokio::test]
async fn a_device_interval_of_u64_max_does_not_panic() {
    let idp = FakeIdp::start(IdpConfig {
        device_flow: Some(DeviceFlowConfig::default()),
        ..IdpConfig::default()
    })
    .await;
    let stop = CancellationToken::new();
    let endpoint = answering(
        json!({
            "device_code": "dc",
            "user_code": "ABCD",
            "verification_uri": format!("{}/device", idp.issuer()),
            "expires_in": u64::MAX,
            "interval": u64::MAX,
        }),
        &stop,
    )
    .await;
    idp.set_discovery("device_authorization_endpoint", json!(endpoint));
    let dir = tempfile::tempdir().unwrap();
    let tokens = manager(
        device_profile(&idp, Duration::from_secs(2)),
        dir.path(),
        TestBrowser::new(BrowserMode::Ignore),
    );
    let mut notices = tokens.notices().subscribe();
    let error = tokens.access_token().await.unwrap_err().to_string();
    assert!(error.contains("sign-in timed out after 2 s"), "{error}");
    let notice = notices.try_recv().unwrap();
    assert!(notice.contains("waiting 2 seconds"), "{notice}");
    stop.cancel();
}

/// A token response that claims to last `u64::MAX` seconds is kept as long-lived, not wrapped
/// into the past (which would renew it at every request, or panic).
#[tokio::test]
async fn an_endless_token_lifetime_is_clamped() {
    let idp = FakeIdp::start(IdpConfig {
        client_credentials: true,
        client_secret: Some("s3cret".into()),
        ..IdpConfig::default()
    })
    .await;
    let stop = CancellationToken::new();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    let token_endpoint = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            axum::Json(json!({
                "access_token": "endless",
                "token_type": "Bearer",
                "expires_in": u64::MAX,
            }))
        }
    });
    let endpoint = format!(
        "http://{}/token",
        support::serve_http(token_endpoint, &stop).await
    );
    idp.set_discovery("token_endpoint", json!(endpoint));
    let mut profile = (*support::profile(&idp, Some("s3cret"))).clone();
    profile.flow = Flow::ClientCredentials;
    profile.scopes = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let tokens = manager(
        Arc::new(profile),
        dir.path(),
        TestBrowser::new(BrowserMode::Ignore),
    );
    for _ in 0..3 {
        assert_eq!(tokens.access_token().await.unwrap().expose(), "endless");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    stop.cancel();
}
