//! Backends that speak MCP 2026-07-28 alone, behind a client of the older revision, through
//! the real server loop on OS pipes: found with `server/discover` after they refuse
//! `initialize` (and at the next start without that refusal, their revision remembered);
//! their requests for input (`input_required`) put to the client as elicitations, and the
//! call retried with the answer; their list changes, heard on `subscriptions/listen`, reaching
//! the client as `list_changed`; `protocol: 2025-11-25` refusing them in words.

use std::time::Duration;

use authful_mcp_proxy::config::{Mode, Protocol, Settings};
use serde_json::json;

use crate::support::{self, BrowserMode, TestBrowser, first_text, modern::ModernBackend};

const V: &str = "2025-11-25";

/// The gateway with `backend` as its one backend, `new`, and a client of 2025-11-25.
async fn gateway_to(backend: &ModernBackend, dir: &std::path::Path) -> support::Harness {
    let browser = TestBrowser::new(BrowserMode::Complete);
    support::start(gateway(&backend.url(), dir), browser, V).await
}

fn gateway(url: &str, dir: &std::path::Path) -> Settings {
    let backends = vec![support::prefixed("new", url, None)];
    Settings {
        cache_dir: dir.to_path_buf(),
        mode: Mode::of(&backends),
        backends,
        gateway: Default::default(),
    }
}

/// The first start tries `initialize`, is refused, and discovers; the tools are listed and
/// called. The second start, the revision remembered, goes straight to `server/discover`.
#[tokio::test]
async fn a_backend_of_2026_07_28_alone_is_discovered_and_its_revision_remembered() {
    let backend = ModernBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = gateway_to(&backend, dir.path()).await;
    let tools = h.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "new_echo"), "{tools:?}");
    let echoed = h
        .call("new_echo", json!({"text": "stateless"}))
        .await
        .unwrap();
    assert_eq!(first_text(&echoed), "stateless");
    assert_eq!(
        (backend.initializes(), backend.discovers()),
        (1, 1),
        "one refused initialize, then discover"
    );
    h.stop().await.unwrap();
    // What the backend is, its revision included, is written in the background.
    support::eventually(10, "the backend remembered", || {
        std::fs::read_dir(dir.path().join("remembered")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    })
    .await;

    let h = gateway_to(&backend, dir.path()).await;
    let echoed = h.call("new_echo", json!({"text": "again"})).await.unwrap();
    assert_eq!(first_text(&echoed), "again");
    assert_eq!(
        (backend.initializes(), backend.discovers()),
        (1, 2),
        "the second start asked no initialize"
    );
    h.stop().await.unwrap();
}

/// `input_required` with an elicitation: the client is asked, as in its own revision, and
/// the call comes back with the answer.
#[tokio::test]
async fn a_request_for_input_is_put_to_the_client_and_the_call_retried() {
    let backend = ModernBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = gateway_to(&backend, dir.path()).await;
    let answer = h.call("new_ask", json!({})).await.unwrap();
    assert_eq!(first_text(&answer), "hello 42");
    let asked = h.events.lock().unwrap().elicitations.clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0]["message"], "[new] Your name?",
        "under the backend's name"
    );
    h.stop().await.unwrap();
}

/// A list change told on the backend's `subscriptions/listen` stream reaches the client as
/// `notifications/tools/list_changed`, and the next list has the new tool.
#[tokio::test]
async fn list_changes_heard_on_subscriptions_listen_reach_the_client() {
    let backend = ModernBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = gateway_to(&backend, dir.path()).await;
    let before = h.client.list_all_tools().await.unwrap().len();
    support::eventually(10, "the subscription", || {
        backend
            .seen
            .listens
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    let grown = h.call("new_grow", json!({})).await.unwrap();
    assert_eq!(first_text(&grown), "grown_0");
    support::eventually(10, "tools/list_changed", || {
        h.events.lock().unwrap().tools_changed > 0
    })
    .await;
    let mut after = 0;
    for _ in 0..50 {
        after = h.client.list_all_tools().await.unwrap().len();
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, before + 1);
    h.stop().await.unwrap();
}

/// Pinned to `initialize`, such a backend cannot be reached, and the error says why and what
/// to set.
#[tokio::test]
async fn protocol_pinned_to_initialize_refuses_it_in_words() {
    let backend = ModernBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = support::settings(&backend.url(), None, dir.path());
    settings.backends[0].protocol = Protocol::Initialize;
    let error = support::try_start(settings, TestBrowser::new(BrowserMode::Complete), V)
        .await
        .err()
        .expect("the drop-in cannot reach it");
    assert!(
        error.contains("speaks only MCP 2026-07-28") && error.contains("protocol"),
        "{error}"
    );
    assert_eq!(backend.discovers(), 0);
}

/// The drop-in, with such a backend as its one server: discovered, its tools called, its
/// request for input put to the client.
#[tokio::test]
async fn the_drop_in_serves_a_backend_of_2026_07_28_alone() {
    let backend = ModernBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&backend.url(), None, dir.path());
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let echoed = h.call("echo", json!({"text": "as it is"})).await.unwrap();
    assert_eq!(first_text(&echoed), "as it is");
    let answer = h.call("ask", json!({})).await.unwrap();
    assert_eq!(first_text(&answer), "hello 42");
    assert_eq!(backend.discovers(), 1);
    h.stop().await.unwrap();
}

/// A tool whose argument goes in a header too (SEP-2243, `x-mcp-header`), called with no tool
/// list read in this run (a client that lists from memory, or not at all): the backend refuses
/// the call for the missing header, the proxy reads the list (which tells rmcp the header) and
/// calls again, once.
#[tokio::test]
async fn a_header_argument_is_sent_even_without_a_list_read_first() {
    let backend = ModernBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The drop-in: it reads a list only when the client asks for it.
    let settings = support::settings(&backend.url(), None, dir.path());
    let h = support::start(settings, TestBrowser::new(BrowserMode::Complete), V).await;
    let called = h.call("region", json!({"region": "eu"})).await.unwrap();
    assert_eq!(first_text(&called), "region eu");
    h.stop().await.unwrap();
}
