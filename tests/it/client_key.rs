//! The private key of a service account (`private_key_jwt`, RFC 7523) as it lies on disk,
//! through the real proxy loop and the fake provider: on Unix a key file other users may read
//! is refused before any request is signed with it — the provider hears nothing — with the
//! command that fixes it; fixed, the next start signs in.

#![cfg(unix)]

use std::{os::unix::fs::PermissionsExt, sync::Arc};

use authful_mcp_proxy::config::{
    AssertionAlgorithm, AssertionAudience, ClientAssertion, Flow, Profile,
};
use serde_json::json;

use crate::support::{
    self, BrowserMode, TestBrowser,
    idp::{CLIENT_KID, CLIENT_RSA_PEM, ClientKey, IdpConfig, RequestKind},
};

const V: &str = "2025-11-25";

/// A key file readable by everyone (`0644`, what a plain `cp` or `echo >` gives under the
/// usual umask): the tool call fails naming the file, its mode and `chmod 600`, and the token
/// endpoint sees no request; after `chmod 600`, the next call signs in.
#[tokio::test]
async fn a_key_file_others_can_read_is_refused_before_the_provider_sees_a_request() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig {
        client_credentials: true,
        client_key: Some(ClientKey::test()),
        ..IdpConfig::default()
    })
    .await;
    let key_file = dir.path().join("client-key.pem");
    std::fs::write(&key_file, CLIENT_RSA_PEM).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut profile: Profile = (*support::profile(&idp, None)).clone();
    profile.flow = Flow::ClientCredentials;
    profile.scopes = Vec::new();
    profile.client_assertion = Some(ClientAssertion {
        key_file: key_file.clone(),
        algorithm: AssertionAlgorithm::RS256,
        key_id: Some(CLIENT_KID.into()),
        audience: AssertionAudience::TokenEndpoint,
    });
    let settings = support::settings(&backend.url(), Some(Arc::new(profile)), dir.path());
    let browser = TestBrowser::new(BrowserMode::Complete);

    // The drop-in connects to its one backend at `initialize`, signing in first.
    let refused = support::try_start(settings.clone(), browser.clone(), V)
        .await
        .err()
        .expect("initialize fails");
    assert!(
        refused.contains(&format!("chmod 600 {}", key_file.display()))
            && refused.contains("mode 0644")
            && refused.contains("open to other users"),
        "{refused}"
    );
    let stats = idp.stats();
    assert!(
        stats.requests.is_empty(),
        "no request reached the provider's token endpoint: {:?}",
        stats.requests
    );
    assert_eq!(stats.client_credentials_grants, 0);

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let h = support::start(settings, browser.clone(), V).await;
    let who = h.call("whoami", json!({})).await.unwrap();
    assert_eq!(who["structuredContent"]["sub"], idp.client_id(), "{who}");
    let stats = idp.stats();
    let signed = stats.of(RequestKind::ClientCredentials);
    assert!(
        !signed.is_empty()
            && signed
                .iter()
                .all(|r| r.client_auth.as_deref() == Some("private_key_jwt") && r.error.is_none()),
        "{signed:?}"
    );
    assert_eq!(browser.opened(), 0);
    h.stop().await.unwrap();
}
