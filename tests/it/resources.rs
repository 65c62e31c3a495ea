//! Backends that say how they are protected, through the real proxy loop: an issuer found
//! through a backend's metadata (RFC 9728), tokens bound to each backend's resource (RFC 8707)
//! from one login, `resource: false` for providers that refuse the parameter, a provider with
//! only OAuth metadata (RFC 8414), scope step-up on `403 insufficient_scope` (never a loop),
//! and what a refusal of fresh tokens is blamed on.

use std::sync::Arc;

use authful_mcp_proxy::config::{Profile, Resource};
use serde_json::{Value, json};

use crate::{
    sign_in::gateway_settings,
    support::{
        self, BrowserMode, TestBrowser,
        backend::{BackendConfig, MetadataLocation, ResourceMetadata, TestBackend},
        first_text,
        idp::{FakeIdp, IdpConfig, MetadataDocs, RequestKind},
        logs, prefixed,
    },
};

const V: &str = "2025-11-25";

/// A backend of `idp` that publishes protected resource metadata naming it.
async fn published(name: &str, idp: &FakeIdp, metadata: ResourceMetadata) -> TestBackend {
    TestBackend::start(
        BackendConfig::oidc(name, idp.issuer(), idp.jwks_uri()).with_resource_metadata(metadata),
    )
    .await
}

fn without_issuer(profile: Arc<Profile>) -> Arc<Profile> {
    let mut profile = (*profile).clone();
    profile.issuer_url = None;
    Arc::new(profile)
}

/// A profile with no issuer at all: the backend's metadata names it, the login asks for the
/// backend's resource, and the token's audience is that resource.
#[tokio::test]
async fn the_backend_names_the_issuer_and_the_resource() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend = published("mcp", &idp, ResourceMetadata::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&idp, None));
    let browser = TestBrowser::new(BrowserMode::Complete);
    let settings = support::settings(&backend.url(), Some(profile.clone()), dir.path());
    let h = support::start(settings, browser.clone(), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    assert_eq!(browser.opened(), 1);
    let stats = idp.stats();
    assert_eq!(
        stats.resources(RequestKind::Authorize),
        [vec![backend.resource()]]
    );
    assert_eq!(
        stats.resources(RequestKind::AuthorizationCode),
        [vec![backend.resource()]]
    );
    h.stop().await.unwrap();

    // The next start knows the issuer and the resource from its cache: no metadata request.
    let fetched = backend.stats().resource_metadata_fetches;
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let again = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, again.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    assert_eq!(again.opened(), 0);
    assert_eq!(backend.stats().resource_metadata_fetches, fetched);
    h.stop().await.unwrap();
}

/// Metadata at the root of the backend's host, named in no challenge: the proxy looks there
/// on its own (RFC 9728's well-known URL), and binds the backend's tokens to it.
#[tokio::test]
async fn metadata_at_the_root_is_found_without_a_challenge_naming_it() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let metadata = ResourceMetadata {
        location: MetadataLocation::Root,
        advertise: false,
        ..ResourceMetadata::default()
    };
    let backend = published("mcp", &idp, metadata).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&idp, None));
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    h.stop().await.unwrap();
}

/// Metadata at no well-known address, named only in the backend's challenge: a profile
/// without an issuer finds it there (asking the backend without a token).
#[tokio::test]
async fn metadata_named_only_in_the_challenge_is_found() {
    signs_in_with_metadata_named_only_in_a_challenge(false).await;
}

/// A profile without an issuer signs in with metadata at no well-known address, named only in
/// the backend's challenge (`challenge_posts_only`: only to a POST).
async fn signs_in_with_metadata_named_only_in_a_challenge(challenge_posts_only: bool) {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let metadata = ResourceMetadata {
        location: MetadataLocation::Elsewhere,
        challenge_posts_only,
        ..ResourceMetadata::default()
    };
    let backend = published("mcp", &idp, metadata).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = without_issuer(support::profile(&idp, None));
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    h.stop().await.unwrap();
}

/// The same, from a backend that challenges only MCP's POSTs (a GET without a token is `404`,
/// as on some servers): the proxy asks with a POST.
#[tokio::test]
async fn metadata_named_only_in_the_challenge_to_a_post_is_found() {
    signs_in_with_metadata_named_only_in_a_challenge(true).await;
}

/// Two backends of one profile, each bound to its own resource: one login asks for both, the
/// second backend's token comes through the refresh token, and no backend is ever shown a
/// token meant for the other.
#[tokio::test]
async fn one_login_serves_backends_bound_to_different_resources() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let a = published("a", &idp, ResourceMetadata::default()).await;
    let b = published("b", &idp, ResourceMetadata::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let backends = vec![
        prefixed("a", &a.url(), Some(&profile)),
        prefixed("b", &b.url(), Some(&profile)),
    ];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(gateway_settings(backends, dir.path()), browser.clone(), V).await;
    for (tool, backend) in [("a_whoami", &a), ("b_whoami", &b), ("a_whoami", &a)] {
        let who = h.call(tool, json!({})).await.unwrap();
        assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    }
    assert_eq!(browser.opened(), 1, "one login for both");
    let stats = idp.stats();
    let mut asked = stats.resources(RequestKind::Authorize).concat();
    asked.sort();
    let mut both = vec![a.resource(), b.resource()];
    both.sort();
    assert_eq!(asked, both);
    assert!(
        stats
            .resources(RequestKind::RefreshToken)
            .iter()
            .all(|r| r.len() == 1),
        "every refresh names one resource"
    );
    for backend in [&a, &b] {
        assert_eq!(
            backend.stats().presented_audiences,
            [json!(backend.resource())],
            "only its own tokens"
        );
    }
    h.stop().await.unwrap();
}

/// `resource: false`: never a resource indicator, for providers that refuse it (Entra ID's
/// AADSTS9010010), even for a backend that publishes metadata.
#[tokio::test]
async fn resource_false_never_sends_one() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let metadata = ResourceMetadata {
        audience: Some("mcp-backend".into()),
        ..ResourceMetadata::default()
    };
    let backend = published("mcp", &idp, metadata).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    settings.backends[0].resource = Resource::Off;
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    h.call("whoami", json!({})).await.unwrap();
    let stats = idp.stats();
    assert!(
        stats.requests.iter().all(|r| r.resources.is_empty()),
        "{:?}",
        stats.requests
    );
    h.stop().await.unwrap();
}

/// Metadata that names another authorization server than the profile's issuer is not used:
/// the proxy logs in where it is configured to, and binds nothing to what it was told.
#[tokio::test]
async fn metadata_naming_another_issuer_is_not_used() {
    let (logs, _guard) = logs::capture();
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let metadata = ResourceMetadata {
        authorization_servers: Some(vec!["https://elsewhere.example".into()]),
        audience: Some("mcp-backend".into()),
        ..ResourceMetadata::default()
    };
    let backend = published("mcp", &idp, metadata).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    h.call("whoami", json!({})).await.unwrap();
    assert!(idp.stats().requests.iter().all(|r| r.resources.is_empty()));
    assert!(
        logs.text().contains("https://elsewhere.example"),
        "{}",
        logs.text()
    );
    h.stop().await.unwrap();
}

/// A profile without an issuer whose backend publishes no metadata: an error that says what
/// to set, and no login.
#[tokio::test]
async fn no_issuer_anywhere_is_an_error_that_says_what_to_set() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let profile = without_issuer(support::profile(&idp, None));
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let browser = TestBrowser::new(BrowserMode::Complete);
    let error = support::try_start(settings, browser.clone(), V)
        .await
        .err()
        .unwrap();
    assert!(error.contains("names no issuer_url"), "{error}");
    assert!(error.contains("OIDC_ISSUER_URL"), "{error}");
    assert_eq!(browser.opened(), 0);
}

/// A provider with only OAuth authorization server metadata (RFC 8414), no OpenID Connect
/// discovery document.
#[tokio::test]
async fn an_oauth_only_provider_is_discovered_through_rfc_8414() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig {
        metadata: MetadataDocs::Rfc8414Only,
        ..IdpConfig::default()
    })
    .await;
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    assert_eq!(
        first_text(&h.call("echo", json!({"text": "ok"})).await.unwrap()),
        "ok"
    );
    assert!(idp.stats().rfc8414_discoveries >= 1);
    h.stop().await.unwrap();
}

fn scopes_of(value: &Value) -> Vec<String> {
    value
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// A backend that needs a scope the token lacks (`403 insufficient_scope`): one new login asks
/// for the configured scopes and the new one, and the request goes through on its retry.
#[tokio::test]
async fn a_missing_scope_gets_one_step_up_login() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("mcp", idp.issuer(), idp.jwks_uri())).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    backend.set_required_scopes(&["mcp:admin"]);
    h.call("whoami", json!({})).await.unwrap();
    let granted = scopes_of(&json!(backend.stats().last_scope));
    for scope in ["openid", "profile", "email", "mcp:admin"] {
        assert!(granted.contains(&scope.to_owned()), "{granted:?}");
    }
    assert_eq!(browser.opened(), 2);
    assert_eq!(backend.stats().insufficient_scope, 1);
    let asked = idp.stats().authorize_scopes;
    assert!(asked[1].split(' ').any(|s| s == "mcp:admin"), "{asked:?}");
    h.stop().await.unwrap();
}

/// The provider does not grant the scope the backend wants: one step-up login, then an error
/// that says so — no loop of logins, not on this call and not on the next.
#[tokio::test]
async fn a_scope_the_provider_withholds_is_not_asked_for_in_a_loop() {
    let idp = FakeIdp::start(IdpConfig {
        withheld_scopes: vec!["mcp:admin".into()],
        ..IdpConfig::default()
    })
    .await;
    let backend =
        TestBackend::start(BackendConfig::oidc("mcp", idp.issuer(), idp.jwks_uri())).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let backends = vec![prefixed("mcp", &backend.url(), Some(&profile))];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(gateway_settings(backends, dir.path()), browser.clone(), V).await;
    h.call("mcp_whoami", json!({})).await.unwrap();
    backend.set_required_scopes(&["mcp:admin"]);
    for _ in 0..2 {
        let error = h
            .call("mcp_whoami", json!({}))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("mcp:admin"), "{error}");
        assert!(error.contains("did not grant"), "{error}");
    }
    assert_eq!(browser.opened(), 2, "the first login and one step-up");
    h.stop().await.unwrap();
}

/// A backend that refuses fresh tokens: the error quotes its reason and names the likely
/// culprit (here the audience), instead of a bare `401`.
#[tokio::test]
async fn refused_fresh_tokens_name_the_likely_culprit() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let mut config = BackendConfig::oidc("mcp", idp.issuer(), idp.jwks_uri());
    config.audience = "another-api".into();
    let backend = TestBackend::start(config).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let error = support::try_start(settings, TestBrowser::new(BrowserMode::Complete), V)
        .await
        .err()
        .unwrap();
    assert!(error.contains("refuses the tokens"), "{error}");
    assert!(
        error.contains("audience does not include this server"),
        "{error}"
    );
    assert!(error.contains("most likely the audience"), "{error}");
    assert!(!error.contains("rmcp::"), "{error}");
}
