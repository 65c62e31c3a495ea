//! Backends that speak the HTTP+SSE transport of MCP 2024-11-05, through the real server loop
//! on OS pipes: reached by their URL the way the Python original reaches them (a path segment
//! `sse`), by falling back when Streamable HTTP is refused with 405, or by `transport: sse`;
//! with the user's token on the stream and on every POST; never at an endpoint on another
//! origin; and again after the stream ends.

use std::sync::Arc;

use authful_mcp_proxy::config::{Mode, Profile, Settings, Transport};
use serde_json::json;

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
    first_text,
    idp::{FakeIdp, IdpConfig},
};

const V: &str = "2025-11-25";

/// A provider and a backend that accepts only its tokens, serving HTTP+SSE at `path` (and at
/// `/mcp` nothing else).
async fn sse_backend(path: &str) -> (FakeIdp, TestBackend, Arc<Profile>) {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend = TestBackend::start(
        BackendConfig::oidc("legacy", idp.issuer(), idp.jwks_uri()).with_http_sse(path),
    )
    .await;
    let profile = support::profile(&idp, None);
    (idp, backend, profile)
}

fn at(backend: &TestBackend, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", backend.port())
}

/// The drop-in with a URL ending in `/sse`, as a user of the Python original has it: the proxy
/// opens the stream at once (no Streamable HTTP attempt), signs in, lists and calls; the
/// token is on the stream and on every POST.
#[tokio::test]
async fn a_url_ending_in_sse_is_reached_over_http_sse() {
    let (_idp, backend, profile) = sse_backend("/sse").await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&at(&backend, "/sse"), Some(profile), dir.path());
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let tools = h.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "whoami"), "{tools:?}");
    let echoed = h.call("echo", json!({"text": "über SSE"})).await.unwrap();
    assert_eq!(first_text(&echoed), "über SSE");
    let front = backend.sse_front();
    assert_eq!(front.streams_opened(), 1);
    assert!(front.posts() >= 4, "initialize, initialized, list, call");
    // The stream and every POST passed the token check, with the user's token.
    let stats = backend.stats();
    assert!(
        stats.authorized_requests as u64 > front.posts(),
        "{stats:?}"
    );
    assert_eq!(stats.subjects, [support::idp::DEFAULT_SUBJECT], "{stats:?}");
    h.stop().await.unwrap();
}

/// A server that answers Streamable HTTP's `initialize` POST with 405 is tried over HTTP+SSE
/// at the same URL (the specification's backwards compatibility); `transport:
/// streamable-http` does not fall back and says why.
#[tokio::test]
async fn streamable_http_refused_with_405_falls_back_to_http_sse() {
    let (_idp, backend, profile) = sse_backend("/mcp").await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&at(&backend, "/mcp"), Some(profile.clone()), dir.path());
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let echoed = h.call("echo", json!({"text": "fell back"})).await.unwrap();
    assert_eq!(first_text(&echoed), "fell back");
    assert_eq!(backend.sse_front().streams_opened(), 1);
    h.stop().await.unwrap();

    let mut pinned = support::settings(&at(&backend, "/mcp"), Some(profile), dir.path());
    pinned.backends[0].transport = Transport::StreamableHttp;
    let error = support::try_start(pinned, TestBrowser::new(BrowserMode::Complete), V)
        .await
        .err()
        .expect("no fallback when pinned");
    assert!(error.contains("405"), "{error}");
    assert_eq!(backend.sse_front().streams_opened(), 1, "not tried");
}

/// An endpoint event naming another origin is not followed: the token would go there. The
/// error says so, and the other server never hears from the proxy.
#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused() {
    let (_idp, backend, profile) = sse_backend("/sse").await;
    let elsewhere = TestBackend::start(BackendConfig::open("elsewhere")).await;
    backend
        .sse_front()
        .name_foreign_endpoint(&format!("http://127.0.0.1:{}", elsewhere.port()));
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&at(&backend, "/sse"), Some(profile), dir.path());
    let error = support::try_start(settings, TestBrowser::new(BrowserMode::Complete), V)
        .await
        .err()
        .expect("a foreign endpoint fails the connection");
    assert!(error.contains("another origin"), "{error}");
    assert_eq!(elsewhere.stats().authorized_requests, 0);
    assert_eq!(backend.sse_front().posts(), 0);
}

/// The stream's end ends the server's session; the gateway connects again (a new stream, a
/// new handshake) and the next call goes through.
#[tokio::test]
async fn after_the_stream_ends_the_gateway_connects_again() {
    let (_idp, backend, profile) = sse_backend("/sse").await;
    let dir = tempfile::tempdir().unwrap();
    let backends = vec![support::prefixed(
        "legacy",
        &at(&backend, "/sse"),
        Some(&profile),
    )];
    let settings = Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: Mode::of(&backends),
        backends,
        gateway: Default::default(),
    };
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let one = h.call("legacy_echo", json!({"text": "one"})).await.unwrap();
    assert_eq!(first_text(&one), "one");
    let posts = backend.sse_front().posts();
    backend.sse_front().end_streams();
    // A new stream, and on it a new handshake and the lists read again.
    support::eventually(10, "a second session", || {
        backend.sse_front().streams_opened() == 2 && backend.sse_front().posts() >= posts + 3
    })
    .await;
    let two = h.call("legacy_echo", json!({"text": "two"})).await.unwrap();
    assert_eq!(first_text(&two), "two");
    h.stop().await.unwrap();
}
