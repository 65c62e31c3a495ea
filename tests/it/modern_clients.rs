//! Clients of MCP 2026-07-28 on stdio, through the real server loop on OS pipes: no
//! `initialize`, `_meta` on every request. `server/discover` is answered from what is known,
//! connecting nothing; requests are checked as the revision says (`-32022`, `-32602`,
//! `-32601`) and answered in its shape (`resultType`, caching hints); changes reach the client
//! only on its `subscriptions/listen` streams; a backend of the older revision that asks the
//! client something (an elicitation) is heard through `input_required` and the client's retry.
//! rmcp's own client finds the revision by `server/discover`, in both of its probing modes.

use std::time::Duration;

use authful_mcp_proxy::config::{Backend, Gateway, Mode, Settings};
use rmcp::{ClientLifecycleMode, ClientServiceExt, model::ProtocolVersion};
use serde_json::{Value, json};

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
    desktop::ListOnce,
    first_text, prefixed,
};

fn gateway(backends: Vec<Backend>, dir: &std::path::Path) -> Settings {
    Settings {
        cache_dir: dir.to_path_buf(),
        mode: Mode::of(&backends),
        backends,
        gateway: Gateway {
            name: "desk".into(),
            ..Gateway::default()
        },
    }
}

/// What a 2026-07-28 client says of itself on each request: it takes form elicitation.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "era-2026", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
    })
}

/// `params` with [`meta`].
fn with_meta(mut params: Value) -> Value {
    params["_meta"] = meta();
    params
}

/// The drop-in and the gateway, each with its own open backend.
async fn both_modes(dir: &std::path::Path) -> (Vec<(Settings, &'static str)>, Vec<TestBackend>) {
    let alone = TestBackend::start(BackendConfig::open("alone")).await;
    let behind = TestBackend::start(BackendConfig::open("everything")).await;
    let modes = vec![
        (support::settings(&alone.url(), None, dir), ""),
        (
            gateway(vec![prefixed("everything", &behind.url(), None)], dir),
            "everything_",
        ),
    ];
    (modes, vec![alone, behind])
}

/// Waits (up to 10 s) for a message from the proxy that `wanted` picks, after the first `skip`.
async fn arrival(client: &ListOnce, skip: usize, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = client
            .arrivals()
            .into_iter()
            .skip(skip)
            .map(|a| a.message)
            .find(|m| wanted(m))
        {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not arrived; the proxy sent: {:?}",
            client.arrivals()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `message` belongs to the stream opened by request `stream`.
fn of_stream(stream: &Value, message: &Value) -> bool {
    message["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == *stream
}

/// Opens a `subscriptions/listen` stream for `notifications`; its id, and its acknowledgement.
async fn listen(client: &mut ListOnce, notifications: Value) -> (Value, Value) {
    let stream = client
        .send_request(
            "subscriptions/listen",
            with_meta(json!({ "notifications": notifications })),
        )
        .await;
    let ack = arrival(client, 0, |m| {
        m["method"] == "notifications/subscriptions/acknowledged" && of_stream(&stream, m)
    })
    .await;
    (stream, ack)
}

/// Cancels the stream `stream`, as a client of 2026-07-28 on stdio does.
async fn cancel(client: &ListOnce, stream: &Value) {
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": stream}});
    client.send_line(cancel.to_string().as_bytes()).await;
}

/// The probe is answered at once, as `initialize` would be, from the configuration: every
/// revision the proxy speaks, its name and capabilities. No backend hears of it (a probe may
/// come from a process started only to ask).
#[tokio::test]
async fn discover_says_what_the_proxy_is_and_connects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, backends) = both_modes(dir.path()).await;
    for ((settings, prefix), backend) in modes.into_iter().zip(&backends) {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let asked = client.elapsed();
        let answer = client
            .request("server/discover", json!({"_meta": meta()}))
            .await;
        assert!(client.elapsed() - asked < Duration::from_secs(1));
        let result = &answer["result"];
        let versions = result["supportedVersions"].as_array().expect("{answer}");
        assert!(versions.contains(&json!("2026-07-28")), "{answer}");
        assert!(versions.contains(&json!("2025-11-25")), "{answer}");
        assert!(result["capabilities"]["tools"].is_object(), "{answer}");
        assert_eq!(result["resultType"], "complete", "{answer}");
        let name = &result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"];
        assert_eq!(
            name,
            if prefix.is_empty() {
                "authful-mcp-proxy"
            } else {
                "desk"
            },
            "{answer}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            backend.stats().authorized_requests,
            0,
            "a backend was connected"
        );
        client.stop().await;
    }
}

/// A 2026-07-28 client lists and calls with no `initialize`: the answers carry `resultType`
/// and caching hints; the proxy sends it nothing it did not ask for (no log messages, no
/// requests).
#[tokio::test]
async fn a_client_of_2026_lists_and_calls_without_initialize() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, _backends) = both_modes(dir.path()).await;
    for (settings, prefix) in modes {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let listed = client.request("tools/list", with_meta(json!({}))).await;
        let result = &listed["result"];
        assert_eq!(result["resultType"], "complete", "{listed}");
        assert_eq!(result["ttlMs"], 0, "{listed}");
        assert_eq!(result["cacheScope"], "private", "{listed}");
        let names: Vec<&str> = result["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            names.contains(&format!("{prefix}echo").as_str()),
            "{names:?}"
        );
        let echoed = client
            .request(
                "tools/call",
                with_meta(json!({"name": format!("{prefix}echo"), "arguments": {"text": "hi"}})),
            )
            .await;
        assert_eq!(echoed["result"]["resultType"], "complete", "{echoed}");
        assert_eq!(echoed["result"]["content"][0]["text"], "hi", "{echoed}");
        for message in client.arrivals() {
            let m = &message.message;
            assert!(
                m.get("method").is_none() || m.get("id").is_none(),
                "the proxy sent the client a request: {m}"
            );
            assert_ne!(m["method"], "notifications/message", "{m}");
        }
        client.stop().await;
    }
}

/// Each request is checked as the revision says, before the session starts (by rmcp) and after
/// (by the proxy): an unknown revision gets `-32022` naming those spoken, missing `_meta`
/// `-32602`, and what the revision removed `-32601`.
#[tokio::test]
async fn requests_of_2026_are_checked_as_the_revision_says() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, _backends) = both_modes(dir.path()).await;
    for (settings, _) in modes {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        for phase in ["before the session", "in the session"] {
            let mut unknown = meta();
            unknown["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
            let answer = client
                .request("tools/list", json!({"_meta": unknown}))
                .await;
            assert_eq!(answer["error"]["code"], -32022, "{phase}: {answer}");
            let supported = answer["error"]["data"]["supported"].as_array().cloned();
            assert!(
                supported.is_some_and(|s| s.contains(&json!("2026-07-28"))),
                "{phase}: {answer}"
            );
            let mut bare = meta();
            bare.as_object_mut()
                .unwrap()
                .remove("io.modelcontextprotocol/clientCapabilities");
            let answer = client.request("tools/list", json!({"_meta": bare})).await;
            assert_eq!(answer["error"]["code"], -32602, "{phase}: {answer}");
            // Gone from the revision, with their params right or not (rmcp itself would have
            // answered `ping` before the session).
            for (gone, params) in [
                ("ping", json!({})),
                ("logging/setLevel", json!({"level": "debug"})),
                ("resources/subscribe", json!({})),
                ("initialize", json!({})),
            ] {
                let answer = client.request(gone, with_meta(params)).await;
                assert_eq!(answer["error"]["code"], -32601, "{phase}, {gone}: {answer}");
            }
            if phase == "before the session" {
                let started = client.request("tools/list", with_meta(json!({}))).await;
                assert!(started["result"]["tools"].is_array(), "{started}");
            }
        }
        client.stop().await;
    }
}

/// Changes reach a 2026-07-28 client on the stream it opened for them, tagged with the
/// stream's id, after the acknowledgement; once it cancels the stream, no more.
#[tokio::test]
async fn list_changes_come_on_the_stream_the_client_opened() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, _backends) = both_modes(dir.path()).await;
    for (settings, prefix) in modes {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        client.request("tools/list", with_meta(json!({}))).await;
        let (stream, ack) = listen(&mut client, json!({"toolsListChanged": true})).await;
        assert_eq!(
            ack["params"]["notifications"]["toolsListChanged"], true,
            "{ack}"
        );
        let before = client.arrivals().len();
        let added = client
            .request(
                "tools/call",
                with_meta(
                    json!({"name": format!("{prefix}add_tool"), "arguments": {"name": "fresh"}}),
                ),
            )
            .await;
        assert!(added.get("result").is_some(), "{added}");
        arrival(&client, before, |m| {
            m["method"] == "notifications/tools/list_changed" && of_stream(&stream, m)
        })
        .await;
        let listed = client.request("tools/list", with_meta(json!({}))).await;
        assert!(
            listed.to_string().contains(&format!("\"{prefix}fresh\"")),
            "{listed}"
        );

        cancel(&client, &stream).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = client.arrivals().len();
        client
            .request(
                "tools/call",
                with_meta(
                    json!({"name": format!("{prefix}add_tool"), "arguments": {"name": "later"}}),
                ),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let late: Vec<Value> = client
            .arrivals()
            .into_iter()
            .skip(before)
            .map(|a| a.message)
            .filter(|m| m["method"] == "notifications/tools/list_changed")
            .collect();
        assert!(late.is_empty(), "after the stream was cancelled: {late:?}");
        client.stop().await;
    }
}

/// A backend of 2025-11-25 asks for an elicitation during a call: the 2026-07-28 client gets
/// `input_required` with the question, answers it in its retry, and gets the call's result.
#[tokio::test]
async fn a_backends_question_reaches_a_client_of_2026_as_input_required() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, _backends) = both_modes(dir.path()).await;
    for (settings, prefix) in modes {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let call =
            json!({"name": format!("{prefix}elicit"), "arguments": {"message": "Your name?"}});
        let asked = client.request("tools/call", with_meta(call.clone())).await;
        let result = &asked["result"];
        assert_eq!(result["resultType"], "input_required", "{asked}");
        let (key, question) = result["inputRequests"]
            .as_object()
            .and_then(|q| q.iter().next())
            .expect("one question");
        assert_eq!(question["method"], "elicitation/create", "{asked}");
        assert!(
            question["params"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Your name?")),
            "{asked}"
        );
        let state = result["requestState"].as_str().expect("a request state");
        assert!(
            client
                .arrivals()
                .iter()
                .all(|a| a.message["method"] != "elicitation/create"),
            "the question must not come as a request"
        );
        let mut retry = call.clone();
        retry["inputResponses"] =
            json!({ key.clone(): {"action": "accept", "content": {"answer": "Ada"}} });
        retry["requestState"] = json!(state);
        let answered = client.request("tools/call", with_meta(retry.clone())).await;
        assert_eq!(answered["result"]["resultType"], "complete", "{answered}");
        assert_eq!(
            answered["result"]["content"][0]["text"], "elicited: accept {\"answer\":\"Ada\"}",
            "{answered}"
        );
        // The same state again is spent: it starts the call afresh, which asks again.
        let again = client.request("tools/call", with_meta(retry)).await;
        assert_eq!(again["result"]["resultType"], "input_required", "{again}");
        assert_ne!(again["result"]["requestState"], json!(state), "{again}");
        client.stop().await;
    }
}

/// rmcp's client, probing with `server/discover` (its `Discover` and `Auto` modes), finds
/// 2026-07-28 and lists and calls through it, in both modes of the proxy.
#[tokio::test]
async fn rmcps_probing_client_settles_on_2026() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, _backends) = both_modes(dir.path()).await;
    for (settings, prefix) in modes {
        for lifecycle in [
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
            ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: None,
            },
        ] {
            let support::Pipes {
                to_proxy,
                from_proxy,
                proxy,
            } = support::serve_on_pipes(
                settings.clone(),
                TestBrowser::new(BrowserMode::Ignore),
                std::future::pending(),
            );
            let started = std::time::Instant::now();
            let client = rmcp::model::ClientConfig::default()
                .serve_with_lifecycle((from_proxy, to_proxy), lifecycle)
                .await
                .expect("discovered");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            let info = client.peer_info().expect("discovered");
            assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
            let tools = client.list_all_tools().await.expect("tools");
            let echo = format!("{prefix}echo");
            assert!(tools.iter().any(|t| t.name == echo), "{tools:?}");
            let echoed = client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new(echo)
                        .with_arguments(json!({"text": "modern"}).as_object().unwrap().clone()),
                )
                .await
                .expect("called");
            assert_eq!(
                first_text(&serde_json::to_value(&echoed).unwrap()),
                "modern"
            );
            client.cancel().await.unwrap();
            tokio::time::timeout(Duration::from_secs(10), proxy)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

/// A probe from a process the client starts only to ask (the TypeScript SDK's way on stdio):
/// the drop-in, which signs in while a client starts up, starts no sign-in for it — not even
/// the provider's discovery — and does once a request follows.
#[tokio::test]
async fn a_probe_alone_starts_no_sign_in() {
    use crate::support::idp::{FakeIdp, IdpConfig};

    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("secured", idp.issuer(), idp.jwks_uri())).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Complete));
    let answer = client
        .request("server/discover", json!({"_meta": meta()}))
        .await;
    assert!(answer.get("result").is_some(), "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = idp.stats();
    assert_eq!(
        (stats.discoveries, stats.authorize_requests),
        (0, 0),
        "the probe alone reached the provider"
    );
    let listed = client.request("tools/list", with_meta(json!({}))).await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    assert_eq!(
        idp.stats().authorize_requests,
        1,
        "one sign-in once a request came"
    );
    client.stop().await;
}

/// A stream that asks for a resource's updates subscribes at its backend (under the
/// backend's own URI), gets them tagged with its id (under the exposed URI), and unsubscribes
/// when the client cancels it.
#[tokio::test]
async fn resource_updates_come_on_the_stream_that_asked_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, backends) = both_modes(dir.path()).await;
    for ((settings, prefix), backend) in modes.into_iter().zip(&backends) {
        let exposed = if prefix.is_empty() {
            "mem://greeting".to_owned()
        } else {
            "everything+mem://greeting".to_owned()
        };
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let (stream, ack) = listen(&mut client, json!({"resourceSubscriptions": [exposed]})).await;
        assert_eq!(
            ack["params"]["notifications"]["resourceSubscriptions"],
            json!([exposed]),
            "{ack}"
        );
        assert_eq!(
            backend.stats().subscriptions,
            vec!["mem://greeting".to_owned()]
        );
        let before = client.arrivals().len();
        let touched = client
            .request(
                "tools/call",
                with_meta(json!({"name": format!("{prefix}touch"), "arguments": {"uri": "mem://greeting"}})),
            )
            .await;
        assert_eq!(
            touched["result"]["content"][0]["text"], "touched",
            "{touched}"
        );
        let updated = arrival(&client, before, |m| {
            m["method"] == "notifications/resources/updated" && of_stream(&stream, m)
        })
        .await;
        assert_eq!(updated["params"]["uri"], json!(exposed), "{updated}");

        cancel(&client, &stream).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !backend.stats().subscriptions.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "never unsubscribed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.stop().await;
    }
}

/// A client that closes stdin with a stream open has gone: the stream ends with it, and the
/// proxy at once (it used to wait out its closing deadline, 5 s, for the stream's answer).
#[tokio::test]
async fn closing_stdin_with_a_stream_open_ends_the_proxy_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (modes, _backends) = both_modes(dir.path()).await;
    for (settings, _) in modes {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        listen(&mut client, json!({"toolsListChanged": true})).await;
        let closing = std::time::Instant::now();
        client.stop().await;
        assert!(
            closing.elapsed() < Duration::from_secs(2),
            "the proxy took {:?} to end",
            closing.elapsed()
        );
    }
}

/// The drop-in remembers each list it relayed. One it never relayed is unknown, not empty:
/// the next start reads it from the backend rather than answering an empty list from memory
/// (which a 2026-07-28 client, asking at once with no `initialize` to wait for, would get).
#[tokio::test]
async fn a_list_never_read_is_not_remembered_as_empty() {
    let backend = TestBackend::start(BackendConfig::open("alone")).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&backend.url(), None, dir.path());
    let mut first = ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Ignore));
    let prompts = first.request("prompts/list", with_meta(json!({}))).await;
    assert!(prompts["result"]["prompts"].is_array(), "{prompts}");
    // The entry is written in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;

    let mut second = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    let tools = second.request("tools/list", with_meta(json!({}))).await;
    let names = tools["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        names.iter().any(|t| t["name"] == "echo"),
        "the tools were answered from memory, where they never were: {tools}"
    );
    second.stop().await;
}
