//! Servers that run OAuth themselves (MCP's authorization spec), reached with `auth: oauth` and
//! no profile: the authorization server found through the backend's metadata, a client the
//! proxy registers there (RFC 7591) and keeps, registered again when the server forgets it, a
//! client ID metadata document where the server takes one, and a server that offers neither.

use std::sync::Arc;

use authful_mcp_proxy::config::{Config, Profile, Settings};
use serde_json::json;

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, ResourceMetadata, TestBackend},
    idp::{FakeIdp, IdpConfig, RequestKind},
};

const V: &str = "2025-11-25";

/// An authorization server with dynamic registration (or not), and a backend of its own that
/// publishes metadata naming it.
async fn public_server(config: IdpConfig) -> (FakeIdp, TestBackend) {
    let idp = FakeIdp::start(config).await;
    let backend = TestBackend::start(
        BackendConfig::oidc("public", idp.issuer(), idp.jwks_uri())
            .with_resource_metadata(ResourceMetadata::default()),
    )
    .await;
    (idp, backend)
}

fn registering() -> IdpConfig {
    IdpConfig {
        registration: true,
        ..IdpConfig::default()
    }
}

/// The settings of `yaml`, as the proxy resolves them, with the cache in `dir` and each
/// profile's callback on a fresh port (the default 8080 would collide between tests).
fn resolved(yaml: &str, dir: &std::path::Path) -> Settings {
    let config: Config = serde_yaml::from_str(yaml).expect("test configuration");
    let mut settings = config.resolve().expect("valid configuration");
    settings.cache_dir = dir.to_path_buf();
    for backend in &mut settings.backends {
        if let Some(profile) = &backend.profile {
            let mut profile: Profile = (**profile).clone();
            profile.redirect_url =
                format!("http://127.0.0.1:{}/auth/callback", support::free_port())
                    .parse()
                    .unwrap();
            profile.login_timeout = std::time::Duration::from_secs(10);
            backend.profile = Some(Arc::new(profile));
        }
    }
    settings
}

fn own_oauth(backend: &TestBackend) -> String {
    format!(
        "backends:\n  public:\n    url: {}\n    prefix: \"\"\n    auth: oauth\n",
        backend.url()
    )
}

/// The registration files in `dir`.
fn registrations(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("_client.json"))
                .collect()
        })
        .unwrap_or_default()
}

/// `auth: oauth` and nothing else: the proxy finds the server, registers a public client there
/// with its redirect URL, signs in with that client, and keeps the registration owner-only.
/// The next start (with the tokens gone) signs in with the same client: no second
/// registration.
#[tokio::test]
async fn a_server_with_its_own_oauth_gets_a_client_registered_once() {
    let (idp, backend) = public_server(registering()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = resolved(&own_oauth(&backend), dir.path());
    let redirect = settings.backends[0]
        .profile
        .as_ref()
        .unwrap()
        .redirect_url
        .to_string();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings.clone(), browser.clone(), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    h.stop().await.unwrap();

    let stats = idp.stats();
    assert_eq!(stats.registrations.len(), 1, "{:?}", stats.registrations);
    let registered = &stats.registrations[0];
    assert_eq!(registered["redirect_uris"], json!([redirect]));
    assert_eq!(registered["token_endpoint_auth_method"], "none");
    assert_eq!(
        registered["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        stats.last_authorize_param("client_id"),
        Some("registered-1")
    );
    assert_eq!(browser.opened(), 1);
    let files = registrations(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Tokens gone, registration kept: a new sign-in, with the same client.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if entry.path().to_string_lossy().ends_with("_tokens.json") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let again = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, again.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();
    assert_eq!(again.opened(), 1);
    let stats = idp.stats();
    assert_eq!(stats.registrations.len(), 1, "registered again");
    assert_eq!(
        stats.last_authorize_param("client_id"),
        Some("registered-1")
    );
}

/// The server forgot the registered client (its refresh gets `invalid_client`): the proxy
/// registers a new one and signs in with it, once.
#[tokio::test]
async fn a_client_the_server_forgot_is_registered_again() {
    let (idp, backend) = public_server(registering()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = resolved(&own_oauth(&backend), dir.path());
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings.clone(), browser.clone(), V).await;
    h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();

    idp.forget_registered_clients();
    idp.set_access_token_ttl(std::time::Duration::from_secs(0));
    // Expire what is cached: the next start must refresh.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let path = entry.path();
        if path.to_string_lossy().ends_with("_tokens.json") {
            let mut tokens: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let bound = tokens["bound"].as_object_mut();
            for access in bound.into_iter().flat_map(|b| b.values_mut()) {
                access["expires_at"] = json!(1);
            }
            if tokens.get("expires_at").is_some() {
                tokens["expires_at"] = json!(1);
            }
            std::fs::write(&path, serde_json::to_vec(&tokens).unwrap()).unwrap();
        }
    }
    idp.set_access_token_ttl(std::time::Duration::from_secs(3600));
    let again = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, again.clone(), V).await;
    let who = h.call("whoami", json!({})).await;
    h.stop().await.unwrap();
    assert!(who.is_ok(), "{who:?}");
    let stats = idp.stats();
    assert!(
        stats.refresh_failures >= 1,
        "the old client was tried first"
    );
    assert_eq!(stats.registrations.len(), 2);
    assert_eq!(
        stats.last_authorize_param("client_id"),
        Some("registered-2")
    );
    assert_eq!(again.opened(), 1);
}

/// A profile with a client ID metadata document (`client_metadata_url`, or a `client_id` that
/// is an https URL): where the server takes such documents, the URL is the client id and nothing
/// is registered; where it does not, the proxy registers a client instead.
#[tokio::test]
async fn a_metadata_document_is_the_client_where_the_server_takes_one() {
    let document = "https://tools.example.com/mcp-client.json";
    for (taken, key) in [(true, "client_metadata_url"), (false, "client_id")] {
        let (idp, backend) = public_server(IdpConfig {
            metadata_documents: taken,
            ..registering()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "oidc_profiles:\n  public:\n    {key}: {document}\nbackends:\n  public:\n    \
             url: {}\n    prefix: \"\"\n    oidc_profile: public\n",
            backend.url()
        );
        let settings = resolved(&yaml, dir.path());
        let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
        h.call("whoami", json!({})).await.unwrap();
        h.stop().await.unwrap();
        let stats = idp.stats();
        let expected = if taken { document } else { "registered-1" };
        assert_eq!(
            stats.last_authorize_param("client_id"),
            Some(expected),
            "{key}"
        );
        assert_eq!(stats.registrations.len(), usize::from(!taken), "{key}");
        assert_eq!(
            registrations(dir.path()).len(),
            usize::from(!taken),
            "{key}"
        );
    }
}

/// A server that offers no way in: the call fails saying to register a client by hand, and no
/// browser opens.
#[tokio::test]
async fn a_server_without_registration_says_to_configure_a_client() {
    let (idp, backend) = public_server(IdpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = resolved(&own_oauth(&backend), dir.path());
    let browser = TestBrowser::new(BrowserMode::Complete);
    let error = support::first_error(settings, browser.clone(), "whoami").await;
    assert!(
        error.contains("offers no dynamic client registration") && error.contains("client_id"),
        "{error}"
    );
    assert_eq!(browser.opened(), 0);
    assert!(idp.stats().of(RequestKind::Authorize).is_empty());
}

/// A server that says its scopes is asked for those alone, as MCP orders it: the scopes its
/// metadata publishes (no `openid` added); one that publishes none gets no `scope` at all. A
/// later `insufficient_scope` for a scope it does not publish still gets its step-up: the
/// token is that server's alone.
#[tokio::test]
async fn a_server_that_says_its_scopes_is_asked_for_those_alone() {
    for published in [Some(vec!["mcp:read".to_owned()]), None] {
        let idp = FakeIdp::start(registering()).await;
        let mut config = BackendConfig::oidc("public", idp.issuer(), idp.jwks_uri())
            .with_resource_metadata(ResourceMetadata {
                scopes_supported: published.clone(),
                ..ResourceMetadata::default()
            });
        if published.is_some() {
            config.required_scopes = vec!["mcp:read".into()];
        }
        let backend = TestBackend::start(config).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = resolved(&own_oauth(&backend), dir.path());
        let browser = TestBrowser::new(BrowserMode::Complete);
        let h = support::start(settings, browser.clone(), V).await;
        h.call("whoami", json!({})).await.unwrap();
        let expected = if published.is_some() { "mcp:read" } else { "" };
        assert_eq!(idp.stats().authorize_scopes, [expected], "{published:?}");
        if published.is_some() {
            backend.set_required_scopes(&["mcp:read", "mcp:admin"]);
            h.call("whoami", json!({})).await.unwrap();
            assert_eq!(
                idp.stats().authorize_scopes,
                ["mcp:read", "mcp:read mcp:admin"]
            );
        }
        h.stop().await.unwrap();
    }
}

/// A backend configured without a sign-in whose server answers 401: the error says which
/// setting gives it one, instead of rmcp's bare "auth required".
#[tokio::test]
async fn a_server_that_asks_for_a_sign_in_says_how_to_give_it_one() {
    let (_idp, backend) = public_server(registering()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "backends:\n  public:\n    url: {}\n    prefix: \"\"\n",
        backend.url()
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let error = support::first_error(resolved(&yaml, dir.path()), browser, "whoami").await;
    assert!(
        error.contains("asks for a sign-in")
            && error.contains("naming its protected resource metadata")
            && error.contains("auth: oauth"),
        "{error}"
    );
}

/// A backend with `auth: oauth` whose metadata is about another server: no sign-in anywhere
/// (not even at its own origin), and the error says what to write instead.
#[tokio::test]
async fn metadata_about_another_server_signs_in_nowhere() {
    let idp = FakeIdp::start(registering()).await;
    let backend = TestBackend::start(
        BackendConfig::oidc("public", idp.issuer(), idp.jwks_uri()).with_resource_metadata(
            ResourceMetadata {
                resource: Some("https://elsewhere.example/mcp".into()),
                ..ResourceMetadata::default()
            },
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let settings = resolved(&own_oauth(&backend), dir.path());
    let error = support::first_error(settings, browser.clone(), "whoami").await;
    assert!(
        error.contains("(auth: oauth) publishes no usable protected resource metadata")
            && error.contains("oidc_profile"),
        "{error}"
    );
    assert_eq!(browser.opened(), 0);
    assert!(idp.stats().registrations.is_empty());
    assert!(idp.stats().of(RequestKind::Authorize).is_empty());
}
