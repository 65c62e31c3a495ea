//! Cross-app access (SEP-990): a backend whose authorization server takes the person's
//! identity at the company provider instead of a sign-in of its own. The ID token (from an SSO
//! agent's file, or from the company profile's own sign-in) is exchanged at the company
//! provider for an identity assertion grant, which the server trades for its token — no
//! browser for the server, and each credential only where it belongs.

use authful_mcp_proxy::config::{Config, Settings};
use serde_json::json;

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, ResourceMetadata, TestBackend},
    idp::{FakeIdp, IdpConfig, RequestKind},
};

const V: &str = "2025-11-25";
const SECRET: &str = "server-secret";

/// The company provider (token exchange on), the MCP server's authorization server (taking
/// the company's identity assertions, a confidential client), and a backend of the latter.
async fn enterprise() -> (FakeIdp, FakeIdp, TestBackend) {
    let company = FakeIdp::start(IdpConfig {
        token_exchange: true,
        ..IdpConfig::default()
    })
    .await;
    let server = FakeIdp::start(IdpConfig {
        client_id: "mcp-server-client".into(),
        client_secret: Some(SECRET.into()),
        identity_assertions_from: Some(company.issuer()),
        ..IdpConfig::default()
    })
    .await;
    let backend = TestBackend::start(
        BackendConfig::oidc("tools", server.issuer(), server.jwks_uri())
            .with_resource_metadata(ResourceMetadata::default()),
    )
    .await;
    (company, server, backend)
}

fn resolved(yaml: &str, dir: &std::path::Path) -> Settings {
    let config: Config = serde_yaml::from_str(yaml).expect("test configuration");
    let mut settings = config.resolve().expect("valid configuration");
    settings.cache_dir = dir.to_path_buf();
    settings
}

/// The server's profile, its identity assertion as `assertion` (YAML lines at depth 6).
fn xaa_profile(server: &FakeIdp, assertion: &str) -> String {
    format!(
        "  server:\n    issuer_url: {}\n    client_id: mcp-server-client\n    client_secret: \
         {SECRET}\n    identity_assertion:\n{assertion}",
        server.issuer()
    )
}

fn backend_of(backend: &TestBackend) -> String {
    format!(
        "backends:\n  tools:\n    url: {}\n    prefix: \"\"\n    oidc_profile: server\n",
        backend.url()
    )
}

/// The configuration of the server's profile taking its ID token from a file in `dir` (the
/// company provider's, for alice), with `mode`.
fn with_id_token_file(
    company: &FakeIdp,
    server: &FakeIdp,
    backend: &TestBackend,
    dir: &std::path::Path,
    mode: u32,
) -> String {
    let id_token_file = dir.join("id_token");
    std::fs::write(&id_token_file, company.mint_id_token("alice")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&id_token_file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let assertion = format!(
        "      issuer_url: {}\n      client_id: {}\n      id_token_file: {}\n",
        company.issuer(),
        company.client_id(),
        id_token_file.display()
    );
    format!(
        "oidc_profiles:\n{}{}",
        xaa_profile(server, &assertion),
        backend_of(backend)
    )
}

/// An SSO agent's ID token file: exchanged at the company provider for a grant naming the
/// server and the backend's resource, traded at the server (with its client secret) for a
/// token the backend takes; no browser, and the ID token never reaches the server.
#[tokio::test]
async fn an_id_token_file_gets_the_servers_token_without_a_browser() {
    let (company, server, backend) = enterprise().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = with_id_token_file(&company, &server, &backend, dir.path(), 0o600);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(resolved(&yaml, dir.path()), browser.clone(), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();

    assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    assert_eq!(who["structuredContent"]["sub"], "alice");
    assert_eq!(browser.opened(), 0);
    let exchanged = company.stats().identity_assertions;
    assert_eq!(exchanged.len(), 1);
    assert_eq!(exchanged[0]["aud"], json!(server.issuer()));
    assert_eq!(exchanged[0]["resource"], json!(backend.resource()));
    let stats = server.stats();
    assert_eq!(stats.jwt_bearer_grants.len(), 1);
    let grant = stats.of(RequestKind::JwtBearer);
    assert_eq!(grant[0].client_auth.as_deref(), Some("basic"));
    assert!(
        stats.of(RequestKind::TokenExchange).is_empty(),
        "the ID token went to the server"
    );
    assert!(company.stats().of(RequestKind::JwtBearer).is_empty());
}

/// Without a file, the company profile's own sign-in provides the ID token: one browser
/// login at the company provider, none at the server.
#[tokio::test]
async fn the_company_profiles_sign_in_provides_the_id_token() {
    let (company, server, backend) = enterprise().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "oidc_profiles:\n  corp:\n    issuer_url: {}\n    client_id: {}\n    redirect_url: \
         http://127.0.0.1:{}/auth/callback\n{}{}",
        company.issuer(),
        company.client_id(),
        support::free_port(),
        xaa_profile(&server, "      profile: corp\n"),
        backend_of(&backend)
    );
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(resolved(&yaml, dir.path()), browser.clone(), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    h.stop().await.unwrap();

    assert_eq!(who["structuredContent"]["aud"], json!(backend.resource()));
    assert_eq!(browser.opened(), 1, "one sign-in, at the company provider");
    assert_eq!(company.stats().authorize_requests, 1);
    assert_eq!(server.stats().authorize_requests, 0);
    assert_eq!(company.stats().identity_assertions.len(), 1);
    assert_eq!(server.stats().jwt_bearer_grants.len(), 1);
}

/// An ID token file that others may read is refused before anything is sent.
#[cfg(unix)]
#[tokio::test]
async fn an_id_token_file_open_to_others_is_refused() {
    let (company, server, backend) = enterprise().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = with_id_token_file(&company, &server, &backend, dir.path(), 0o644);
    let browser = TestBrowser::new(BrowserMode::Complete);
    let error = support::first_error(resolved(&yaml, dir.path()), browser, "whoami").await;
    assert!(
        error.contains("open to other users") && error.contains("chmod 600"),
        "{error}"
    );
    assert!(company.stats().identity_assertions.is_empty());
    assert!(server.stats().jwt_bearer_grants.is_empty());
}
