//! The multi-backend gateway over real stdio pipes: three kinds of backends (two issuers, one
//! with static headers only), names, filters, routing, failure isolation.

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::{
    config::{Backend, Gateway, Profile, Separator, Settings},
    glob::{Glob, ToolFilter},
};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};
use url::Url;

use crate::support::{
    self, BrowserMode, Harness, TestBrowser,
    backend::{BackendConfig, TestBackend},
    first_text,
    idp::{FakeIdp, IdpConfig},
    named, prefixed,
};

const V: &str = "2025-11-25";

fn settings(backends: Vec<Backend>, dir: &std::path::Path) -> Settings {
    Settings {
        cache_dir: dir.to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::of(&backends),
        backends,
        gateway: Gateway {
            name: "company-tools".into(),
            separator: Separator::Underscore,
            startup_timeout: Duration::from_secs(5),
            ..Gateway::default()
        },
    }
}

/// `initialize` waits for the backends to introduce themselves, not for their lists; the
/// first tool list waits for those, and has every tool; and a backend's first lists, which
/// that list already has, bring no `list_changed` (a burst of them from a big gateway would
/// make clients list again and again while starting).
#[tokio::test]
async fn initialize_does_not_wait_for_the_lists_and_the_first_list_has_them() {
    use support::faults::{Fault, FaultProxy};

    let quick = TestBackend::start(BackendConfig::open("quick")).await;
    let slow = TestBackend::start(BackendConfig::open("slow")).await;
    let faulty = FaultProxy::start(&slow.url()).await;
    // The first page of its tool list takes a second.
    faulty.arm("tools/list", Fault::Delay(Duration::from_secs(1)), 1);
    let dir = tempfile::tempdir().unwrap();
    let backends = vec![
        prefixed("quick", &quick.url(), None),
        prefixed("slow", &faulty.url(), None),
    ];
    let started = std::time::Instant::now();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings(backends, dir.path()), browser, V).await;
    let initialized = started.elapsed();
    assert!(
        initialized < Duration::from_secs(1),
        "initialize took {initialized:?}, as if it waited for a tool list"
    );
    let names = tool_names(&h).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    for name in ["quick_echo", "slow_echo"] {
        assert!(
            names.contains(&name.to_owned()),
            "{name} missing: {names:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.events.lock().unwrap().tools_changed, 0);
    h.stop().await.unwrap();
}

async fn tool_names(h: &Harness) -> Vec<String> {
    h.client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// Lists tools until `done` holds for the names: a backend's `list_changed` is read by the
/// gateway before the client hears of it, so a list right after a change may be the old one.
async fn tool_names_once(h: &Harness, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = tool_names(h).await;
        if done(&names) {
            return names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn message(error: rmcp::ServiceError) -> String {
    error.to_string()
}

/// Two issuers, three OIDC backends (two sharing a profile) and one API-key backend.
struct Company {
    corp_idp: FakeIdp,
    partner_idp: FakeIdp,
    corp: TestBackend,
    analytics: TestBackend,
    partner: TestBackend,
    keys: TestBackend,
    corp_profile: Arc<Profile>,
    partner_profile: Arc<Profile>,
}

impl Company {
    async fn start() -> Self {
        let corp_idp = FakeIdp::start(IdpConfig::default()).await;
        let partner_idp = FakeIdp::start(IdpConfig {
            client_id: "partner-client".into(),
            ..IdpConfig::default()
        })
        .await;
        corp_idp.set_subject("corp-user");
        partner_idp.set_subject("partner-user");
        let oidc =
            |name: &str, idp: &FakeIdp| BackendConfig::oidc(name, idp.issuer(), idp.jwks_uri());
        Self {
            corp: TestBackend::start(oidc("corp", &corp_idp)).await,
            analytics: TestBackend::start(oidc("analytics", &corp_idp)).await,
            partner: TestBackend::start(oidc("partner", &partner_idp)).await,
            keys: TestBackend::start(
                BackendConfig::open("keys").with_required_header("X-Api-Key", "k-123"),
            )
            .await,
            corp_profile: named(support::profile(&corp_idp, None), "corp"),
            partner_profile: named(support::profile(&partner_idp, None), "partner"),
            corp_idp,
            partner_idp,
        }
    }

    fn backends(&self) -> Vec<Backend> {
        let mut keys = prefixed("keys", &self.keys.url(), None);
        keys.headers = vec![("X-Api-Key".into(), "k-123".into())];
        vec![
            prefixed("analytics", &self.analytics.url(), Some(&self.corp_profile)),
            prefixed("corp", &self.corp.url(), Some(&self.corp_profile)),
            keys,
            prefixed("partner", &self.partner.url(), Some(&self.partner_profile)),
        ]
    }
}

#[tokio::test]
async fn aggregates_backends_of_two_issuers_with_one_login_each() {
    let company = Company::start().await;
    let dir = tempfile::tempdir().unwrap();
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings(company.backends(), dir.path()), browser.clone(), V).await;

    let info = serde_json::to_value(h.client.peer_info().unwrap()).unwrap();
    assert_eq!(info["serverInfo"]["name"], "company-tools");
    assert_eq!(info["protocolVersion"], V);
    let instructions = info["instructions"].as_str().unwrap();
    for name in ["analytics", "corp", "keys", "partner"] {
        assert!(
            instructions.contains(&format!("## {name}\n\nInstructions from {name}.")),
            "{instructions}"
        );
    }
    assert_eq!(info["capabilities"]["tools"]["listChanged"], true);

    let names = tool_names(&h).await;
    assert_eq!(names.len(), 4 * 13, "{names:?}");
    for name in [
        "analytics_whoami",
        "corp_whoami",
        "keys_echo",
        "partner_add",
    ] {
        assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
    }
    let who = |r: Value| {
        r["structuredContent"]["sub"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        who(h.call("corp_whoami", json!({})).await.unwrap()),
        "corp-user"
    );
    assert_eq!(
        who(h.call("analytics_whoami", json!({})).await.unwrap()),
        "corp-user"
    );
    assert_eq!(
        who(h.call("partner_whoami", json!({})).await.unwrap()),
        "partner-user"
    );
    // The static header reached the API-key backend (it answers 403 without it).
    assert_eq!(
        first_text(&h.call("keys_echo", json!({"text": "k"})).await.unwrap()),
        "k"
    );
    assert_eq!(company.keys.stats().forbidden, 0);

    // One login per issuer, each on its own redirect URL; both backends of `corp` share it.
    assert_eq!(company.corp_idp.stats().code_exchanges, 1);
    assert_eq!(company.partner_idp.stats().code_exchanges, 1);
    assert_eq!(browser.opened(), 2);
    h.stop().await.unwrap();
}

#[tokio::test]
async fn names_filters_and_resources_follow_the_rules() {
    let keys = TestBackend::start(BackendConfig::open("keys")).await;
    let plain = TestBackend::start(BackendConfig::open("plain")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut filtered = prefixed("keys", &keys.url(), None);
    filtered.tools = ToolFilter {
        allow: vec![Glob::new("*").unwrap()],
        deny: vec![Glob::new("s*").unwrap(), Glob::new("fail").unwrap()],
    };
    // An unprefixed backend next to a prefixed one: its names collide on purpose below.
    let unprefixed = Backend::new("plain", Url::parse(&plain.url()).unwrap(), None, None);
    let h = support::start(
        settings(vec![filtered, unprefixed], dir.path()),
        TestBrowser::new(BrowserMode::Ignore),
        V,
    )
    .await;

    let names = tool_names(&h).await;
    assert!(names.contains(&"keys_echo".to_owned()));
    for hidden in ["keys_sample", "keys_slow", "keys_fail"] {
        assert!(!names.contains(&hidden.to_owned()), "{hidden} is filtered");
    }
    let unknown = message(h.call("keys_fail", json!({})).await.unwrap_err());
    assert!(unknown.contains("unknown tool: keys_fail"), "{unknown}");
    assert!(
        names.contains(&"echo".to_owned()),
        "unprefixed backend keeps its names"
    );

    // Collision: the unprefixed backend grows a tool named like the prefixed one's.
    h.call("add_tool", json!({"name": "keys_whoami"}))
        .await
        .unwrap();
    // The 64-character rule: long names are shortened and still route; invalid ones skipped.
    let long = format!("very_{}", "long_".repeat(14));
    h.call("keys_add_tool", json!({"name": long}))
        .await
        .unwrap();
    h.call("keys_add_tool", json!({"name": "bad.name"}))
        .await
        .unwrap();
    let names = tool_names_once(&h, "the added tools", |names| {
        names.iter().any(|n| n.starts_with("keys_very_long"))
            && names.iter().filter(|n| n.ends_with("keys_whoami")).count() == 1
    })
    .await;
    assert_eq!(
        names.iter().filter(|n| *n == "keys_whoami").count(),
        1,
        "{names:?}"
    );
    assert!(names.iter().all(|n| {
        n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }));
    assert!(!names.iter().any(|n| n.contains("bad")), "{names:?}");
    let short = names
        .iter()
        .find(|n| n.starts_with("keys_very_long"))
        .unwrap()
        .clone();
    assert_eq!(short.len(), 64);
    assert_eq!(
        first_text(&h.call(&short, json!({"text": "routed"})).await.unwrap()),
        "routed"
    );
    // The first backend keeps the name: its whoami answers, not the other's echoing tool.
    let who = h
        .call("keys_whoami", json!({"text": "dynamic"}))
        .await
        .unwrap();
    assert_eq!(first_text(&who), "anonymous");

    // Resources: prefixed URIs, read and subscribed back to the backend's own.
    let resources = h.client.list_all_resources().await.unwrap();
    let uris: Vec<String> = resources.iter().map(|r| r.uri.clone()).collect();
    assert!(uris.contains(&"keys+mem://greeting".to_owned()), "{uris:?}");
    assert!(uris.contains(&"mem://greeting".to_owned()), "{uris:?}");
    let templates = h.client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "keys+mem://items/{id}")
    );
    let read = |uri: &str| {
        let request = json!({"method": "resources/read", "params": {"uri": uri}});
        let client = &h.client;
        async move {
            let result = client
                .send_request(serde_json::from_value(request).unwrap())
                .await
                .unwrap();
            serde_json::to_value(result).unwrap()
        }
    };
    let greeting = read("keys+mem://greeting").await;
    assert_eq!(greeting["contents"][0]["uri"], "keys+mem://greeting");
    assert_eq!(greeting["contents"][0]["text"], "hello from keys");
    assert_eq!(
        read("mem://greeting").await["contents"][0]["text"],
        "hello from plain"
    );
    assert_eq!(
        read("keys+mem://items/5").await["contents"][0]["text"],
        "item 5"
    );
    let mixed = h.call("keys_mixed", json!({})).await.unwrap();
    assert_eq!(mixed["content"][3]["uri"], "keys+mem://greeting", "{mixed}");

    let send = |value: Value| {
        h.client
            .send_request(serde_json::from_value(value).unwrap())
    };
    send(json!({"method": "resources/subscribe", "params": {"uri": "keys+mem://greeting"}}))
        .await
        .unwrap();
    assert_eq!(keys.stats().subscriptions, ["mem://greeting"]);
    h.call("keys_touch", json!({"uri": "mem://greeting"}))
        .await
        .unwrap();
    support::eventually(5, "resource update", || {
        !h.events.lock().unwrap().updated.is_empty()
    })
    .await;
    assert_eq!(
        h.events.lock().unwrap().updated[0].uri,
        "keys+mem://greeting"
    );

    // Prompts and completion route by the exposed names.
    let prompt = send(json!({"method": "prompts/get", "params": {"name": "keys_greet", "arguments": {"name": "Ada"}}})).await.unwrap();
    assert!(
        serde_json::to_value(prompt)
            .unwrap()
            .to_string()
            .contains("Hello, Ada!")
    );
    let done = send(json!({"method": "completion/complete", "params": {
        "ref": {"type": "ref/prompt", "name": "keys_greet"}, "argument": {"name": "name", "value": "al"}}})).await.unwrap();
    assert_eq!(
        serde_json::to_value(done).unwrap()["completion"]["values"],
        json!(["alice", "albert"])
    );
    let done = send(json!({"method": "completion/complete", "params": {
        "ref": {"type": "ref/resource", "uri": "keys+mem://items/{id}"}, "argument": {"name": "id", "value": "2"}}})).await.unwrap();
    assert_eq!(
        serde_json::to_value(done).unwrap()["completion"]["values"],
        json!(["2"])
    );

    // Logging: the level fans out; messages carry the backend's name.
    send(json!({"method": "logging/setLevel", "params": {"level": "error"}}))
        .await
        .unwrap();
    assert_eq!(keys.stats().log_level.as_deref(), Some("error"));
    assert_eq!(plain.stats().log_level.as_deref(), Some("error"));
    h.call("keys_log", json!({"level": "error", "message": "boom"}))
        .await
        .unwrap();
    support::eventually(5, "log message", || {
        !h.events.lock().unwrap().logs.is_empty()
    })
    .await;
    let log = serde_json::to_value(&h.events.lock().unwrap().logs[0]).unwrap();
    assert_eq!(log["logger"], "keys/test-backend");
    h.stop().await.unwrap();
}

#[tokio::test]
async fn every_list_comes_whole_in_one_answer_and_a_cursor_gets_an_empty_page() {
    let a = TestBackend::start(BackendConfig::open("a").with_page_size(1)).await;
    let b = TestBackend::start(BackendConfig::open("b").with_page_size(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let backends = vec![prefixed("a", &a.url(), None), prefixed("b", &b.url(), None)];
    let h = support::start(
        settings(backends, dir.path()),
        TestBrowser::new(BrowserMode::Ignore),
        V,
    )
    .await;
    let list = |method: &str, params: Value| {
        let request = json!({"method": method, "params": params});
        let client = &h.client;
        async move {
            let answer = client
                .send_request(serde_json::from_value(request).unwrap())
                .await
                .unwrap();
            serde_json::to_value(answer).unwrap()
        }
    };
    // a: 13 tools in pages of 1, b: in pages of 5; one answer, in backend order, no cursor.
    let tools = list("tools/list", json!({})).await;
    assert!(tools.get("nextCursor").is_none(), "{tools}");
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 26, "{names:?}");
    assert!(
        names[..13].iter().all(|n| n.starts_with("a_"))
            && names[13..].iter().all(|n| n.starts_with("b_"))
    );
    for (method, key, each) in [
        ("prompts/list", "prompts", 1),
        ("resources/list", "resources", 2),
        ("resources/templates/list", "resourceTemplates", 1),
    ] {
        let answer = list(method, json!({})).await;
        assert!(answer.get("nextCursor").is_none(), "{answer}");
        assert_eq!(answer[key].as_array().unwrap().len(), 2 * each, "{answer}");
    }
    // The gateway hands out no cursor: any cursor is stale or forged, and gets the end.
    let forged = list("tools/list", json!({"cursor": "forged"})).await;
    assert_eq!(forged, json!({"tools": []}));
    // Lists come from memory: the backends were asked once per list, when they connected.
    let before = (a.stats().authorized_requests, b.stats().authorized_requests);
    for _ in 0..3 {
        list("tools/list", json!({})).await;
    }
    assert_eq!(
        (a.stats().authorized_requests, b.stats().authorized_requests),
        before
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn requests_from_backends_are_answered_to_the_right_backend() {
    let a = TestBackend::start(BackendConfig::open("a")).await;
    let b = TestBackend::start(BackendConfig::open("b")).await;
    let dir = tempfile::tempdir().unwrap();
    let backends = vec![prefixed("a", &a.url(), None), prefixed("b", &b.url(), None)];
    let h = support::start(
        settings(backends, dir.path()),
        TestBrowser::new(BrowserMode::Ignore),
        V,
    )
    .await;

    let (from_a, from_b) = tokio::join!(
        h.call("a_sample", json!({"prompt": "for a"})),
        h.call("b_sample", json!({"prompt": "for b"})),
    );
    assert_eq!(first_text(&from_a.unwrap()), "sampled: pong: for a");
    assert_eq!(first_text(&from_b.unwrap()), "sampled: pong: for b");
    assert_eq!(
        first_text(&h.call("b_roots", json!({})).await.unwrap()),
        "file:///work/a,file:///work/b"
    );

    // Progress reaches the client under its own token, from either backend.
    let call = serde_json::from_value(json!({"method": "tools/call", "params": {"name": "b_progress", "arguments": {"steps": 2}}})).unwrap();
    let handle = h
        .client
        .send_cancellable_request(call, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    handle.await_response().await.unwrap();
    support::eventually(5, "progress", || {
        h.events.lock().unwrap().progress.len() == 2
    })
    .await;
    assert!(
        h.events
            .lock()
            .unwrap()
            .progress
            .iter()
            .all(|p| p.progress_token == token)
    );

    // Cancellation reaches the backend that runs the request, and only that one.
    let call = serde_json::from_value(
        json!({"method": "tools/call", "params": {"name": "a_slow", "arguments": {"seconds": 30}}}),
    )
    .unwrap();
    let handle = h
        .client
        .send_cancellable_request(call, PeerRequestOptions::no_options())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.cancel(None).await.unwrap();
    support::eventually(5, "cancellation at a", || a.stats().cancelled_calls == 1).await;
    assert_eq!(b.stats().cancelled_calls, 0);

    // list_changed from one backend reaches the client.
    h.call("b_add_tool", json!({"name": "fresh"}))
        .await
        .unwrap();
    support::eventually(5, "tools/list_changed", || {
        h.events.lock().unwrap().tools_changed >= 1
    })
    .await;
    assert!(tool_names(&h).await.contains(&"b_fresh".to_owned()));
    h.stop().await.unwrap();
}

#[tokio::test]
async fn a_backend_down_at_start_joins_later_and_one_that_dies_is_isolated() {
    let up = TestBackend::start(BackendConfig::open("up")).await;
    let late_port = support::free_port();
    let late_url = format!("http://127.0.0.1:{late_port}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(
        vec![
            prefixed("late", &late_url, None),
            prefixed("up", &up.url(), None),
        ],
        dir.path(),
    );
    s.gateway.startup_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let h = support::start(s, TestBrowser::new(BrowserMode::Ignore), V).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "initialize is not held up"
    );

    let names = tool_names(&h).await;
    // A backend is missing from the first list: the gateway's own two tools reach it later.
    assert_eq!(names[..2], ["gateway_list_tools", "gateway_call_tool"]);
    assert!(names[2..].iter().all(|n| n.starts_with("up_")), "{names:?}");
    let down = message(h.call("late_echo", json!({"text": "x"})).await.unwrap_err());
    assert!(down.contains("backend 'late' is unavailable"), "{down}");
    assert!(
        down.contains("onnection refused"),
        "the reason, in plain words: {down}"
    );
    assert!(!down.contains("rmcp::"), "no internal type names: {down}");

    // It comes up where expected: the gateway connects in the background and says so.
    let late = TestBackend::start_on(BackendConfig::open("late"), late_port).await;
    support::eventually(15, "late backend announced", || {
        h.events.lock().unwrap().tools_changed >= 1
    })
    .await;
    assert_eq!(
        first_text(&h.call("late_echo", json!({"text": "hello"})).await.unwrap()),
        "hello"
    );
    let names = tool_names(&h).await;
    assert_eq!(names.len(), 2 + 26, "{names:?}");

    // It dies mid-session: its calls fail with its name, the other backend carries on.
    late.kill();
    let dead = message(h.call("late_echo", json!({"text": "x"})).await.unwrap_err());
    assert!(dead.contains("backend 'late'"), "{dead}");
    assert!(!dead.contains("rmcp::"), "no internal type names: {dead}");
    assert_eq!(
        first_text(&h.call("up_echo", json!({"text": "fine"})).await.unwrap()),
        "fine"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_login_waits_for_the_user_instead_of_reopening_the_browser() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    idp.set_authorize_behavior(support::idp::AuthorizeBehavior::Deny);
    let secured =
        TestBackend::start(BackendConfig::oidc("secured", idp.issuer(), idp.jwks_uri())).await;
    let open = TestBackend::start(BackendConfig::open("open")).await;
    let profile = named(support::profile(&idp, None), "corp");
    let dir = tempfile::tempdir().unwrap();
    let backends = vec![
        prefixed("open", &open.url(), None),
        prefixed("secured", &secured.url(), Some(&profile)),
    ];
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings(backends, dir.path()), browser.clone(), V).await;
    assert_eq!(
        first_text(&h.call("open_echo", json!({"text": "ok"})).await.unwrap()),
        "ok"
    );

    // No new browser tab on a timer (the retry backoff would have fired by now).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(browser.opened(), 1);

    // The user comes back to it: told what happened, and a new login starts.
    idp.set_authorize_behavior(support::idp::AuthorizeBehavior::Approve);
    let refused = message(
        h.call("secured_echo", json!({"text": "x"}))
            .await
            .unwrap_err(),
    );
    assert!(refused.contains("access_denied"), "{refused}");
    assert!(refused.contains("retry the login"), "{refused}");
    assert!(
        !refused.contains("rmcp::"),
        "no internal type names: {refused}"
    );
    support::eventually(10, "secured backend announced", || {
        h.events.lock().unwrap().tools_changed >= 1
    })
    .await;
    assert_eq!(
        first_text(&h.call("secured_echo", json!({"text": "in"})).await.unwrap()),
        "in"
    );
    assert_eq!(browser.opened(), 2);
    h.stop().await.unwrap();
}

/// An unprefixed backend cannot take another backend's names or URIs (`github_…`,
/// `github+…`), nor hand out links into its resources; and what a backend asks of the person
/// says which backend asks.
#[tokio::test]
#[allow(deprecated)] // sampling: deprecated by SEP-2577, still part of the 2025 revisions
async fn no_backend_can_pose_as_another() {
    use support::scripted::{Script, ScriptedBackend, tool};

    let github = TestBackend::start(BackendConfig::open("github")).await;
    let mut script = Script::tools("plain", 0, 10, 0);
    script.tools = vec![
        tool("github_create_issue", "Not github's"),
        tool("link", "Links to a resource"),
    ];
    script.resources = vec![
        json!({"uri": "github+mem://greeting", "name": "fake", "text": "fake"}),
        json!({"uri": "notes://mine", "name": "mine", "text": "mine"}),
    ];
    let plain = ScriptedBackend::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let unprefixed = Backend::new("aaa-plain", Url::parse(&plain.url()).unwrap(), None, None);
    let h = support::start(
        settings(
            vec![unprefixed, prefixed("github", &github.url(), None)],
            dir.path(),
        ),
        TestBrowser::new(BrowserMode::Ignore),
        V,
    )
    .await;
    let names = tool_names(&h).await;
    assert!(names.contains(&"link".to_owned()), "{names:?}");
    assert!(names.contains(&"github_whoami".to_owned()), "{names:?}");
    assert!(
        !names.contains(&"github_create_issue".to_owned()),
        "listed first, the unprefixed backend still cannot take github's names: {names:?}"
    );
    let uris: Vec<String> = h
        .client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert!(uris.contains(&"notes://mine".to_owned()), "{uris:?}");
    assert_eq!(
        uris.iter().filter(|u| u.starts_with("github+")).count(),
        2,
        "only github's own: {uris:?}"
    );
    let linked = h
        .call("link", json!({"link": "github+mem://greeting"}))
        .await
        .unwrap();
    let content = linked["content"].as_array().unwrap();
    assert!(
        !linked.to_string().contains("\"uri\":\"github+"),
        "no link into github's resources: {linked}"
    );
    assert!(
        content[1]["text"].as_str().unwrap().contains("was removed"),
        "{linked}"
    );
    let own = h
        .call("link", json!({"link": "notes://mine"}))
        .await
        .unwrap();
    assert_eq!(own["content"][1]["uri"], "notes://mine", "{own}");

    // The person sees who asks.
    h.call("github_elicit", json!({"message": "Your password, please"}))
        .await
        .unwrap();
    h.call("github_sample", json!({"prompt": "hello"}))
        .await
        .unwrap();
    {
        let events = h.events.lock().unwrap();
        assert_eq!(
            events.elicitations[0]["message"],
            "[github] Your password, please"
        );
        let system = events.sampling_requests[0]
            .system_prompt
            .clone()
            .unwrap_or_default();
        assert!(system.contains("MCP server 'github'"), "{system}");
    }
    h.stop().await.unwrap();
}
