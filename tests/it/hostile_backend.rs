//! A backend is not an authority. Backends that name a rogue authorization server, switch
//! their metadata between runs, ask for ever-new scopes, claim another backend's resource or
//! point the proxy at another origin: credentials (a client secret, a refresh token, an access
//! token, the browser's sign-in) still go only where the configuration or the user's first
//! sign-in decided, and no person is asked to sign in on a backend's whim.

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::{
    auth::{LoggedOut, Revocation, TokenManager},
    clients,
    config::{Backend, Flow, Profile},
    secret::Secret,
};
use axum::{
    Router,
    http::{StatusCode, header},
    routing::{any, get},
};
use base64::Engine;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{
    sign_in::gateway_settings,
    support::{
        self, BrowserMode, TestBrowser,
        backend::{BackendConfig, ResourceMetadata, TestBackend},
        idp::{FakeIdp, IdpConfig, RequestKind},
        prefixed,
    },
};

const V: &str = "2025-11-25";

fn without_issuer(profile: Arc<Profile>) -> Arc<Profile> {
    let mut profile = (*profile).clone();
    profile.issuer_url = None;
    Arc::new(profile)
}

/// A backend of `idp` that publishes metadata naming `servers` (its issuer by default).
async fn naming(idp: &FakeIdp, servers: Option<Vec<String>>) -> TestBackend {
    let metadata = ResourceMetadata {
        authorization_servers: servers,
        ..ResourceMetadata::default()
    };
    TestBackend::start(
        BackendConfig::oidc("mcp", idp.issuer(), idp.jwks_uri()).with_resource_metadata(metadata),
    )
    .await
}

/// Every request a provider has seen at its OAuth endpoints and metadata.
fn contacted(idp: &FakeIdp) -> usize {
    let stats = idp.stats();
    stats.requests.len() + stats.metadata_requests.len()
}

/// A manager of `profile` for `backends` (all configured), as the proxy builds it.
fn manager(
    profile: Arc<Profile>,
    backends: &[Backend],
    dir: &std::path::Path,
    browser: Arc<TestBrowser>,
) -> Arc<TokenManager> {
    let own: Vec<&Backend> = backends.iter().collect();
    Arc::new(
        TokenManager::new(
            profile,
            dir,
            clients::identity_provider(),
            browser,
            Arc::default(),
        )
        .for_backends(&own, backends),
    )
}

/// The claims of a JWT, read without checking it.
fn claims(token: &Secret) -> Value {
    let payload = token.expose().split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Finding 1: a service account with a secret and no issuer_url. A backend's metadata names a
/// rogue server; the secret never reaches it (the configuration is refused by `validate`
/// too: see `validate::a_secret_without_an_issuer_is_refused`).
#[tokio::test]
async fn a_client_secret_never_goes_to_a_server_a_backend_names() {
    let real = FakeIdp::start(IdpConfig {
        client_credentials: true,
        client_secret: Some("s3cret".into()),
        ..IdpConfig::default()
    })
    .await;
    let rogue = FakeIdp::start(IdpConfig {
        client_credentials: true,
        ..IdpConfig::default()
    })
    .await;
    let backend = naming(&real, Some(vec![rogue.issuer()])).await;
    let mut profile = (*without_issuer(support::profile(&real, Some("s3cret")))).clone();
    profile.flow = Flow::ClientCredentials;
    profile.scopes = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let backends = [Backend::new(
        "mcp",
        Url::parse(&backend.url()).unwrap(),
        Some(Arc::new(profile.clone())),
        None,
    )];
    let tokens = manager(
        Arc::new(profile),
        &backends,
        dir.path(),
        TestBrowser::new(BrowserMode::Complete),
    );
    // What `status` does: a token without a person.
    let error = tokens
        .access("mcp")
        .unwrap()
        .token()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("names no issuer_url"), "{error}");
    assert_eq!(contacted(&rogue), 0, "the rogue server heard nothing");
    assert!(rogue.stats().last_client_auth.is_none());
}

/// Finding 2: `logout` revokes the refresh token at the server that issued it, not at the one
/// a backend names by the time the user logs out.
#[tokio::test]
async fn logout_revokes_where_the_tokens_came_from() {
    let real = FakeIdp::start(IdpConfig::default()).await;
    let rogue = FakeIdp::start(IdpConfig::default()).await;
    let backend = naming(&real, None).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&real, None));
    let settings = support::settings(&backend.url(), Some(profile.clone()), dir.path());
    let h = support::start(settings.clone(), TestBrowser::new(BrowserMode::Complete), V).await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();

    backend.set_authorization_servers(&[&rogue.issuer()]);
    let tokens = manager(
        profile,
        &settings.backends,
        dir.path(),
        TestBrowser::new(BrowserMode::Complete),
    );
    let outcome = tokens.log_out().await.unwrap();
    assert_eq!(outcome, LoggedOut::Forgotten(Revocation::Revoked));
    assert_eq!(real.stats().revocations.len(), 1, "revoked where issued");
    assert_eq!(
        contacted(&rogue),
        0,
        "the rogue /revoke got no refresh token"
    );
}

/// Finding 3, while the client is idle: a backend that pushes `list_changed` and demands a
/// new scope each time it is listed gets no sign-in at all (it used to get one per push).
#[tokio::test]
async fn a_backend_cannot_make_the_proxy_sign_in_while_the_client_is_idle() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("mcp", idp.issuer(), idp.jwks_uri())).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let backends = vec![prefixed("mcp", &backend.url(), Some(&profile))];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(gateway_settings(backends, dir.path()), browser.clone(), V).await;
    h.call(
        "mcp_add_tool",
        json!({"name": "t", "later_ms": 150, "times": 5, "new_scope_each_time": true}),
    )
    .await
    .unwrap();
    support::eventually(15, "five refused re-lists", || {
        backend.stats().insufficient_scope >= 5
    })
    .await;
    // Let a sign-in that would follow the last refusal begin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(browser.opened(), 1, "only the first sign-in");
    assert_eq!(idp.stats().authorize_requests, 1);
    h.stop().await.unwrap();
}

/// Finding 3, for the client's own requests: a backend that wants a new scope at each call
/// gets at most one sign-in per `login_timeout`; the next one is refused with words that say
/// why and when.
#[tokio::test]
async fn ever_new_scopes_get_one_sign_in_per_login_timeout() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    backend.set_required_scopes(&["scope-1"]);
    h.call("whoami", json!({})).await.unwrap();
    assert_eq!(browser.opened(), 2, "one step-up");
    for n in 2..5 {
        backend.set_required_scopes(&[&format!("scope-{n}")]);
        let error = h.call("whoami", json!({})).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!("scope-{n}")) && error.contains("ago"),
            "{error}"
        );
    }
    assert_eq!(browser.opened(), 2, "no sign-in per call");
    // What marks the client's requests for the proxy never reaches the backend (which sees
    // the rest of `_meta`).
    let keys = backend.stats().meta_keys;
    assert!(
        keys.iter().any(|k| k == "progressToken") && keys.iter().all(|k| !k.contains("authful")),
        "{keys:?}"
    );
    h.stop().await.unwrap();
}

/// A backend that publishes the scopes it knows (`scopes_supported`) and then asks for
/// another is not humoured: the proxy never asks the provider for it.
#[tokio::test]
async fn a_scope_outside_the_published_ones_is_never_asked_for() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let metadata = ResourceMetadata {
        scopes_supported: Some(vec!["mcp:tools".into()]),
        ..ResourceMetadata::default()
    };
    let backend = TestBackend::start(
        BackendConfig::oidc("mcp", idp.issuer(), idp.jwks_uri()).with_resource_metadata(metadata),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    backend.set_required_scopes(&["payroll:write"]);
    let error = h.call("whoami", json!({})).await.unwrap_err().to_string();
    assert!(
        error.contains("payroll:write is not among the scopes its metadata publishes"),
        "{error}"
    );
    assert_eq!(browser.opened(), 1);
    assert!(
        idp.stats()
            .authorize_scopes
            .iter()
            .all(|s| !s.contains("payroll")),
        "{:?}",
        idp.stats().authorize_scopes
    );
    h.stop().await.unwrap();
}

/// The scopes one backend stepped up for stay with its resource: another backend of the
/// profile keeps receiving tokens with the configured scopes (its refresh narrows the grant).
#[tokio::test]
async fn scopes_a_backend_asked_for_stay_with_its_resource() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let a = naming(&idp, None).await;
    let b = naming(&idp, None).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let backends = vec![
        prefixed("a", &a.url(), Some(&profile)),
        prefixed("b", &b.url(), Some(&profile)),
    ];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(gateway_settings(backends, dir.path()), browser.clone(), V).await;
    h.call("a_whoami", json!({})).await.unwrap();
    h.call("b_whoami", json!({})).await.unwrap();
    a.set_required_scopes(&["mcp:admin"]);
    h.call("a_whoami", json!({})).await.unwrap();
    assert_eq!(browser.opened(), 2, "one step-up sign-in");
    // b's token is renewed after the step-up (it refuses the one it has).
    b.revoke_seen_tokens();
    let who = h.call("b_whoami", json!({})).await.unwrap();
    let scope = b.stats().last_scope.unwrap_or_default();
    assert!(
        !scope.split(' ').any(|s| s == "mcp:admin") && scope.contains("openid"),
        "b got {scope}; {who}"
    );
    let refreshes = idp.stats();
    let last = refreshes.of(RequestKind::RefreshToken);
    let last = last.last().expect("b's token came from a refresh");
    assert_eq!(last.resources, [b.resource()]);
    assert!(
        !last.scope.clone().unwrap_or_default().contains("mcp:admin"),
        "{last:?}"
    );
    assert_eq!(browser.opened(), 2);
    h.stop().await.unwrap();
}

/// A `403` that says something other than `insufficient_scope` is an answer, not a reason to
/// sign in again: rmcp reports every `403` with a challenge as a scope problem.
#[tokio::test]
async fn only_insufficient_scope_makes_the_proxy_sign_in_again() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let stop = CancellationToken::new();
    let forbidding = Router::new().route(
        "/mcp",
        any(|| async {
            (
                StatusCode::FORBIDDEN,
                [(
                    header::WWW_AUTHENTICATE,
                    r#"Bearer error="access_denied", scope="admin""#,
                )],
                "no",
            )
        }),
    );
    let addr = support::serve_http(forbidding, &stop).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &format!("http://{addr}/mcp"),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let _ = support::try_start(settings, browser.clone(), V).await;
    assert_eq!(browser.opened(), 1, "the first sign-in, and no other");
    assert!(
        idp.stats()
            .authorize_scopes
            .iter()
            .all(|s| !s.contains("admin")),
        "{:?}",
        idp.stats().authorize_scopes
    );
    stop.cancel();
}

/// After a step-up, a backend that still refuses a token holding the scope is blamed, not the
/// provider (which granted it).
#[tokio::test]
async fn a_backend_that_refuses_a_token_holding_the_scope_is_blamed() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    backend.set_required_scopes(&["mcp:admin"]);
    backend.refuse_scopes_anyway();
    let error = h.call("whoami", json!({})).await.unwrap_err().to_string();
    assert!(
        error.contains("refuses a token") && error.contains("holds the scopes mcp:admin"),
        "{error}"
    );
    assert!(!error.contains("did not grant"), "{error}");
    assert_eq!(browser.opened(), 2);
    h.stop().await.unwrap();
}

/// Serves, on one origin, the metadata of backends at `/mcp`, `/mcp2` and `/mcp/x`, each
/// claiming `/mcp`'s resource: the last two are not `/mcp`.
async fn claims_of_mcp(idp: &FakeIdp, stop: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let document = json!({
        "resource": format!("{origin}/mcp"),
        "authorization_servers": [idp.issuer()],
    });
    let router = Router::new().route(
        "/.well-known/oauth-protected-resource/{*path}",
        get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let signal = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await;
    });
    origin
}

/// Finding 4: `…/mcp2` publishing `resource: …/mcp` (a string prefix, not a path segment),
/// and `…/mcp/x` claiming the resource of the configured backend `…/mcp`: neither receives a
/// token minted for `…/mcp`.
#[tokio::test]
async fn a_backend_cannot_claim_the_resource_of_another() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let stop = CancellationToken::new();
    let origin = claims_of_mcp(&idp, &stop).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let backends: Vec<Backend> = [("good", "/mcp"), ("sibling", "/mcp2"), ("child", "/mcp/x")]
        .iter()
        .map(|(name, path)| {
            Backend::new(
                name,
                Url::parse(&format!("{origin}{path}")).unwrap(),
                Some(profile.clone()),
                Some(name),
            )
        })
        .collect();
    let tokens = manager(
        profile,
        &backends,
        dir.path(),
        TestBrowser::new(BrowserMode::Complete),
    );
    let mcp = format!("{origin}/mcp");
    for hostile in ["sibling", "child"] {
        let access = tokens.access(hostile).unwrap();
        let token = access.token().await.unwrap();
        assert_ne!(claims(&token)["aud"], json!(mcp), "{hostile}");
        assert_eq!(access.resource(), None, "{hostile}");
    }
    let good = tokens.access("good").unwrap().token().await.unwrap();
    assert_eq!(claims(&good)["aud"], json!(mcp), "the owner gets its own");
    stop.cancel();
}

/// Finding 5: the backends of a profile without `issuer_url` name different servers: an
/// error that names each, and no sign-in anywhere.
#[tokio::test]
async fn backends_of_an_issuer_less_profile_must_agree() {
    let real = FakeIdp::start(IdpConfig::default()).await;
    let rogue = FakeIdp::start(IdpConfig::default()).await;
    let good = naming(&real, None).await;
    let bad = naming(&rogue, None).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&real, None));
    let backends = [
        prefixed("bad", &bad.url(), Some(&profile)),
        prefixed("good", &good.url(), Some(&profile)),
    ];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let tokens = manager(profile, &backends, dir.path(), browser.clone());
    let error = tokens
        .access("good")
        .unwrap()
        .token()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("'bad' names {}", rogue.issuer()))
            && error.contains(&format!("'good' names {}", real.issuer())),
        "{error}"
    );
    assert_eq!(browser.opened(), 0);
    assert_eq!(contacted(&rogue), 0);
    assert_eq!(contacted(&real), 0);
}

/// Where the server of an issuer-less profile comes from is said where the person signs in:
/// they decide whether to trust it.
#[tokio::test]
async fn the_sign_in_prompt_says_which_backend_named_the_server() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend = naming(&idp, None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut profile = (*without_issuer(support::profile(&idp, None))).clone();
    profile.open_browser = false;
    let profile = Arc::new(profile);
    let backends = [prefixed("wiki", &backend.url(), Some(&profile))];
    let tokens = manager(
        profile,
        &backends,
        dir.path(),
        TestBrowser::new(BrowserMode::Ignore),
    );
    let mut notices = tokens.notices().subscribe();
    let access = tokens.access("wiki").unwrap();
    let sign_in = tokio::spawn(async move { access.token().await });
    let notice = tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        notice.contains(&idp.issuer()) && notice.contains("backend 'wiki' names"),
        "{notice}"
    );
    let url = notice.split("): ").last().unwrap().to_owned();
    support::complete_login(&url, BrowserMode::Complete, Arc::default()).await;
    sign_in.await.unwrap().unwrap();
}

/// Finding 6: two drop-ins without an issuer, of one client id, on servers of different
/// providers, sharing a cache directory: neither reads (nor overwrites) the other's tokens.
#[tokio::test]
async fn issuer_less_profiles_of_different_servers_never_share_tokens() {
    let first = FakeIdp::start(IdpConfig::default()).await;
    let second = FakeIdp::start(IdpConfig::default()).await;
    assert_eq!(first.client_id(), second.client_id());
    let one = naming(&first, None).await;
    let two = naming(&second, None).await;
    let dir = tempfile::tempdir().unwrap();
    for (idp, backend) in [(&first, &one), (&second, &two)] {
        let profile = without_issuer(support::profile(idp, None));
        let settings = support::settings(&backend.url(), Some(profile), dir.path());
        let browser = TestBrowser::new(BrowserMode::Complete);
        let h = support::start(settings, browser.clone(), V).await;
        h.call("whoami", json!({})).await.unwrap();
        assert_eq!(
            browser.opened(),
            1,
            "{}: a sign-in of its own",
            backend.url()
        );
        assert_eq!(backend.stats().unauthorized, 0, "never a foreign token");
        h.stop().await.unwrap();
    }
    assert_eq!(first.stats().authorize_requests, 1);
    assert_eq!(second.stats().authorize_requests, 1);
    // The first one's tokens are still there for it.
    let profile = without_issuer(support::profile(&first, None));
    let settings = support::settings(&one.url(), Some(profile), dir.path());
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    assert_eq!(browser.opened(), 0);
    h.stop().await.unwrap();
}

/// The server an issuer-less profile first signed in at is pinned: when its backend later
/// names another (its metadata switched between runs), the proxy sends nothing there and
/// says so, naming both — like a changed SSH host key.
#[tokio::test]
async fn a_backend_that_later_names_another_server_is_an_error_naming_both() {
    let real = FakeIdp::start(IdpConfig::default()).await;
    let rogue = FakeIdp::start(IdpConfig::default()).await;
    let backend = naming(&real, None).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&real, None));
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let h = support::start(settings.clone(), TestBrowser::new(BrowserMode::Complete), V).await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();

    backend.set_authorization_servers(&[&rogue.issuer()]);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    // The tokens in hand still serve: nothing asked the backend where to sign in.
    h.call("whoami", json!({})).await.unwrap();
    // The backend refuses them and points at its metadata, which names the rogue server.
    backend.revoke_seen_tokens();
    for _ in 0..2 {
        let error = h.call("whoami", json!({})).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "now names the authorization server {}",
                rogue.issuer()
            )) && error.contains(&format!("signed in at {}", real.issuer()))
                && error.contains("logout"),
            "{error}"
        );
    }
    assert_eq!(browser.opened(), 0);
    assert_eq!(
        contacted(&rogue),
        0,
        "no credential went to the rogue server"
    );
    h.stop().await.unwrap();
}

/// Serves `/mcp` answering every request `401` with a challenge that names metadata at
/// `hint`; its own well-known addresses have none. Returns its URL.
async fn pointing_elsewhere(hint: String, stop: &CancellationToken) -> String {
    let challenge = format!(r#"Bearer error="invalid_token", resource_metadata="{hint}""#);
    let router = Router::new()
        .route(
            "/mcp",
            any(move || {
                let challenge = challenge.clone();
                async move {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, challenge)],
                        "",
                    )
                }
            }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND });
    format!("http://{}/mcp", support::serve_http(router, stop).await)
}

/// Finding 8: a `401` whose `resource_metadata` names another origin (a server of someone
/// else's, an internal address) makes the proxy fetch nothing there — neither after a token
/// was refused nor when it asks without a token where to sign in.
#[tokio::test]
async fn a_metadata_hint_on_another_origin_is_never_fetched() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let stop = CancellationToken::new();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    let elsewhere = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            StatusCode::NOT_FOUND
        }
    });
    let other = support::serve_http(elsewhere, &stop).await;
    let hint = format!("http://{other}/.well-known/oauth-protected-resource");
    let url = pointing_elsewhere(hint, &stop).await;
    let dir = tempfile::tempdir().unwrap();
    for profile in [
        support::profile(&idp, None),
        without_issuer(support::profile(&idp, None)),
    ] {
        let settings = support::settings(&url, Some(profile), dir.path());
        let _ = support::try_start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    stop.cancel();
}

/// A metadata read that failed (a server error) is not taken for "publishes none": the next
/// request reads it again, and signs in where it says.
#[tokio::test]
async fn a_failed_metadata_read_is_tried_again() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend = naming(&idp, None).await;
    backend.set_metadata_status(Some(StatusCode::SERVICE_UNAVAILABLE));
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&idp, None));
    let backends = [prefixed("mcp", &backend.url(), Some(&profile))];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let tokens = manager(profile, &backends, dir.path(), browser.clone());
    let error = tokens
        .access("mcp")
        .unwrap()
        .token()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("could not be read") && error.contains("try again"),
        "{error}"
    );
    backend.set_metadata_status(None);
    let token = tokens.access("mcp").unwrap().token().await.unwrap();
    assert_eq!(claims(&token)["aud"], json!(backend.resource()));
    assert_eq!(browser.opened(), 1);
}
