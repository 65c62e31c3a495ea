//! The drop-in: everything a client can use passes through unchanged, in both
//! directions, over the real proxy loop on OS pipes.

use std::time::Duration;

use rmcp::{
    model::{ClientRequest, ServerResult},
    service::PeerRequestOptions,
};
use serde_json::{Value, json};

use crate::support::{
    self, BrowserMode, Harness, TestBrowser,
    backend::{BackendConfig, TestBackend},
    first_text,
};

async fn open_backend() -> TestBackend {
    TestBackend::start(BackendConfig::open("everything")).await
}

async fn drop_in_to(backend: &TestBackend, protocol_version: &str) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&backend.url(), None, dir.path());
    let h = support::start(
        settings,
        TestBrowser::new(BrowserMode::Ignore),
        protocol_version,
    )
    .await;
    (h, dir)
}

fn request(value: Value) -> ClientRequest {
    serde_json::from_value(value).expect("a valid client request")
}

/// Sends the same request to the backend directly and through the proxy; the answers must be
/// identical, field for field.
async fn same_answer(
    h: &Harness,
    direct: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>,
    value: Value,
) -> Value {
    let through_proxy = h.client.send_request(request(value.clone())).await;
    let straight = direct.send_request(request(value.clone())).await;
    let (through_proxy, straight) = match (through_proxy, straight) {
        (Ok(a), Ok(b)) => (
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap(),
        ),
        (Err(a), Err(b)) => (json!(a.to_string()), json!(b.to_string())),
        (a, b) => panic!("{value}: proxy {a:?} vs direct {b:?}"),
    };
    assert_eq!(through_proxy, straight, "{value}");
    through_proxy
}

#[tokio::test]
async fn initialize_relays_the_backend_identity_for_each_protocol_version() {
    let backend = open_backend().await;
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let (h, _dir) = drop_in_to(&backend, version).await;
        let info = serde_json::to_value(h.client.peer_info().unwrap()).unwrap();
        assert_eq!(info["protocolVersion"], version);
        assert_eq!(info["serverInfo"]["name"], "everything");
        assert_eq!(info["serverInfo"]["version"], "1.2.3");
        assert_eq!(info["serverInfo"]["title"], "Test Backend");
        assert_eq!(info["instructions"], "Instructions from everything.");
        for capability in ["tools", "resources", "prompts", "completions", "logging"] {
            assert!(
                info["capabilities"][capability].is_object(),
                "{capability}: {info}"
            );
        }
        assert_eq!(info["capabilities"]["resources"]["subscribe"], true);
        h.stop().await.unwrap();
    }
}

#[tokio::test]
async fn lists_reads_and_results_pass_through_unchanged() {
    let backend = open_backend().await;
    let direct = support::direct(&backend.url()).await;
    let (h, _dir) = drop_in_to(&backend, "2025-11-25").await;

    // Desktop clients read one page: the drop-in answers with every page of the backend's list
    // (pages of 4 here), in order, and no cursor.
    let through_proxy = h
        .client
        .send_request(request(json!({"method": "tools/list", "params": {}})))
        .await
        .unwrap();
    let through_proxy = serde_json::to_value(through_proxy).unwrap();
    assert!(through_proxy.get("nextCursor").is_none(), "{through_proxy}");
    let all_pages: Vec<Value> = direct
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    assert_eq!(all_pages.len(), 13);
    assert_eq!(through_proxy["tools"], json!(all_pages));
    // A cursor (the drop-in hands out none) gets a well-formed end of the list.
    let stale = h
        .client
        .send_request(request(
            json!({"method": "tools/list", "params": {"cursor": "dG9vbHM6NA"}}),
        ))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(stale).unwrap(), json!({"tools": []}));

    for value in [
        json!({"method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}),
        json!({"method": "tools/call", "params": {"name": "mixed", "arguments": {}}}),
        json!({"method": "tools/call", "params": {"name": "fail", "arguments": {}}}),
        json!({"method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}}),
        json!({"method": "resources/list", "params": {}}),
        json!({"method": "resources/templates/list", "params": {}}),
        json!({"method": "resources/read", "params": {"uri": "mem://greeting"}}),
        json!({"method": "resources/read", "params": {"uri": "mem://blob"}}),
        json!({"method": "resources/read", "params": {"uri": "mem://items/7"}}),
        json!({"method": "resources/read", "params": {"uri": "mem://nothing"}}),
        json!({"method": "prompts/list", "params": {}}),
        json!({"method": "prompts/get", "params": {"name": "greet", "arguments": {"name": "Ada"}}}),
        json!({"method": "completion/complete", "params": {
            "ref": {"type": "ref/prompt", "name": "greet"},
            "argument": {"name": "name", "value": "al"}}}),
        json!({"method": "completion/complete", "params": {
            "ref": {"type": "ref/resource", "uri": "mem://items/{id}"},
            "argument": {"name": "id", "value": "2"}}}),
    ] {
        same_answer(&h, &direct, value).await;
    }

    // Spot checks that the compared answers carry the fields that matter.
    let add = h.call("add", json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(add["structuredContent"], json!({"sum": 5}));
    let fail = h.call("fail", json!({})).await.unwrap();
    assert_eq!(fail["isError"], true);
    let mixed = h.call("mixed", json!({})).await.unwrap();
    let kinds: Vec<&str> = mixed["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["text", "image", "audio", "resource_link", "resource"]
    );
    let tools = h.client.list_all_tools().await.unwrap();
    let adder = serde_json::to_value(tools.iter().find(|t| t.name == "add").unwrap()).unwrap();
    assert_eq!(adder["title"], "Adder");
    assert_eq!(adder["annotations"]["readOnlyHint"], true);
    assert_eq!(adder["_meta"]["example.com/flag"], true);
    assert!(adder["outputSchema"].is_object());

    let missing = h
        .call("no_such_tool", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no_such_tool"), "{missing}");
    direct.cancel().await.unwrap();
    h.stop().await.unwrap();
}

#[tokio::test]
async fn subscriptions_logging_ping_and_list_changed() {
    let backend = open_backend().await;
    let (h, _dir) = drop_in_to(&backend, "2025-06-18").await;

    h.client
        .send_request(request(json!({"method": "ping"})))
        .await
        .unwrap();

    h.client
        .send_request(request(
            json!({"method": "resources/subscribe", "params": {"uri": "mem://greeting"}}),
        ))
        .await
        .unwrap();
    assert_eq!(backend.stats().subscriptions, ["mem://greeting"]);
    assert_eq!(
        first_text(
            &h.call("touch", json!({"uri": "mem://greeting"}))
                .await
                .unwrap()
        ),
        "touched"
    );
    support::eventually(5, "resource updated", || {
        !h.events.lock().unwrap().updated.is_empty()
    })
    .await;
    assert_eq!(h.events.lock().unwrap().updated[0].uri, "mem://greeting");
    h.client
        .send_request(request(
            json!({"method": "resources/unsubscribe", "params": {"uri": "mem://greeting"}}),
        ))
        .await
        .unwrap();
    assert!(backend.stats().subscriptions.is_empty());

    h.client
        .send_request(request(
            json!({"method": "logging/setLevel", "params": {"level": "warning"}}),
        ))
        .await
        .unwrap();
    assert_eq!(backend.stats().log_level.as_deref(), Some("warning"));
    h.call("log", json!({"level": "error", "message": "disk full"}))
        .await
        .unwrap();
    support::eventually(5, "log message", || {
        !h.events.lock().unwrap().logs.is_empty()
    })
    .await;
    let log = serde_json::to_value(&h.events.lock().unwrap().logs[0]).unwrap();
    assert_eq!(log["level"], "error");
    assert_eq!(log["logger"], "test-backend");
    assert_eq!(log["data"]["message"], "disk full");

    h.call("add_tool", json!({"name": "fresh_tool"}))
        .await
        .unwrap();
    support::eventually(5, "tools/list_changed", || {
        h.events.lock().unwrap().tools_changed == 1
    })
    .await;
    let tools = h.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "fresh_tool"));
    assert_eq!(
        first_text(&h.call("fresh_tool", json!({"text": "new"})).await.unwrap()),
        "new"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn progress_reaches_the_client_under_its_own_token() {
    let backend = open_backend().await;
    let (h, _dir) = drop_in_to(&backend, "2025-11-25").await;
    let call = request(
        json!({"method": "tools/call", "params": {"name": "progress", "arguments": {"steps": 3}}}),
    );
    let handle = h
        .client
        .send_cancellable_request(call, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let result = handle.await_response().await.unwrap();
    let ServerResult::CallToolResult(result) = result else {
        panic!("{result:?}")
    };
    assert_eq!(first_text(&serde_json::to_value(result).unwrap()), "done 3");
    support::eventually(5, "3 progress notifications", || {
        h.events.lock().unwrap().progress.len() == 3
    })
    .await;
    let progress = h.events.lock().unwrap().progress.clone();
    let mut steps: Vec<f64> = progress.iter().map(|p| p.progress).collect();
    steps.sort_by(f64::total_cmp);
    assert_eq!(steps, [1.0, 2.0, 3.0]);
    assert!(
        progress
            .iter()
            .all(|p| p.progress_token == token && p.total == Some(3.0))
    );
    assert!(backend.stats().last_progress_token_seen.is_some());
    h.stop().await.unwrap();
}

#[tokio::test]
async fn client_cancellation_reaches_the_backend() {
    let backend = open_backend().await;
    let (h, _dir) = drop_in_to(&backend, "2025-11-25").await;
    let call = request(
        json!({"method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 30}}}),
    );
    let handle = h
        .client
        .send_cancellable_request(call, PeerRequestOptions::no_options())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.cancel(Some("user gave up".into())).await.unwrap();
    support::eventually(5, "backend cancellation", || {
        backend.stats().cancelled_calls == 1
    })
    .await;
    // The session keeps serving.
    assert_eq!(
        first_text(&h.call("echo", json!({"text": "still here"})).await.unwrap()),
        "still here"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn backend_requests_are_answered_by_the_client() {
    let backend = open_backend().await;
    let (h, _dir) = drop_in_to(&backend, "2025-11-25").await;
    let sampled = h.call("sample", json!({"prompt": "ping"})).await.unwrap();
    assert_eq!(first_text(&sampled), "sampled: pong: ping");
    let elicited = first_text(
        &h.call("elicit", json!({"message": "answer?"}))
            .await
            .unwrap(),
    );
    assert!(elicited.starts_with("elicited: accept"), "{elicited}");
    assert!(elicited.contains("42"), "{elicited}");
    let roots = h.call("roots", json!({})).await.unwrap();
    assert_eq!(first_text(&roots), "file:///work/a,file:///work/b");
    h.stop().await.unwrap();
}

#[tokio::test]
async fn backend_cancellation_of_its_own_request_reaches_the_client() {
    let backend = open_backend().await;
    let (h, _dir) = drop_in_to(&backend, "2025-11-25").await;
    let result = h
        .call("sample", json!({"prompt": "hang", "timeout_ms": 300}))
        .await
        .unwrap();
    assert_eq!(result["isError"], true, "{result}");
    support::eventually(5, "client-side cancellation", || {
        h.events.lock().unwrap().sampling_cancelled == 1
    })
    .await;
    h.stop().await.unwrap();
}

#[tokio::test]
async fn expired_backend_session_recovers_transparently() {
    let backend = open_backend().await;
    let (h, _dir) = drop_in_to(&backend, "2025-11-25").await;
    assert_eq!(
        first_text(&h.call("echo", json!({"text": "one"})).await.unwrap()),
        "one"
    );
    backend.expire_sessions();
    assert_eq!(
        first_text(&h.call("echo", json!({"text": "two"})).await.unwrap()),
        "two"
    );
    assert_eq!(backend.stats().sessions_created, 2);
    h.stop().await.unwrap();
}

/// A backend's notification reaches the client as the backend sent it: no `_meta` where it had
/// none (the proxy once added an empty one to each).
#[tokio::test]
async fn a_notification_reaches_the_client_without_a_meta_it_did_not_have() {
    let backend = open_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&backend.url(), None, dir.path());
    let mut client =
        support::desktop::ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    client.initialize("2025-11-25").await;
    client
        .request("logging/setLevel", json!({"level": "debug"}))
        .await;
    let called = client
        .call("log", json!({"level": "warning", "message": "plain"}))
        .await;
    assert!(called.get("result").is_some(), "{called}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let logged = loop {
        if let Some(found) = client
            .arrivals()
            .into_iter()
            .map(|a| a.message)
            .find(|m| m["method"] == "notifications/message")
        {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log message arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(logged["params"].get("_meta").is_none(), "{logged}");
    client.stop().await;
}
