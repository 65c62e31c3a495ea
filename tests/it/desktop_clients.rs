//! The drop-in and the gateway as desktop clients really use them, through the real server loop
//! on OS pipes: a client that reads one page of each list, never lists again on
//! `list_changed`, and gives each answer 60 s (Claude Desktop); people who take seconds to log
//! in; backends that page their lists, join late, or never answer a list; clients of other
//! protocol eras; an MCP App behind a prefix; and the order of progress and answers.

use std::time::Duration;

use authful_mcp_proxy::{
    config::{Backend, FallbackTools, Gateway, Settings},
    glob::{Glob, ToolFilter},
    naming::Naming,
};
use serde_json::{Value, json};
use url::Url;

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
    desktop::{ListOnce, names},
    faults::{Fault, FaultProxy},
    idp::{FakeIdp, IdpConfig},
    named, prefixed,
    scripted::{Script, ScriptedBackend, tool},
};

fn gateway(backends: Vec<Backend>, dir: &std::path::Path) -> Settings {
    Settings {
        cache_dir: dir.to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::of(&backends),
        backends,
        gateway: Gateway {
            name: "desk".into(),
            startup_timeout: Duration::from_secs(1),
            ..Gateway::default()
        },
    }
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {answer}"))
        .to_owned()
}

fn structured(answer: &Value) -> Value {
    answer["result"]["structuredContent"].clone()
}

#[tokio::test]
async fn the_drop_in_answers_one_page_with_every_item_of_a_paging_backend() {
    let paging = TestBackend::start(BackendConfig::open("paging").with_page_size(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&paging.url(), None, dir.path());
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    client.initialize("2025-06-18").await;
    let tools = client.list_once("tools/list").await;
    assert_eq!(tools.len(), 13, "{:?}", names(&tools));
    assert_eq!(names(&tools)[..3], ["whoami", "echo", "add"]);
    assert_eq!(client.list_once("resources/list").await.len(), 2);
    assert_eq!(client.list_once("prompts/list").await.len(), 1);
    assert_eq!(client.list_once("resources/templates/list").await.len(), 1);
    // Every answer is whole: no list carries a cursor.
    for arrival in client.arrivals() {
        assert!(
            arrival.message["result"].get("nextCursor").is_none(),
            "{}",
            arrival.message
        );
    }
    // The last of 13 tools was on page 7 of the backend: it is callable from the one page.
    let answer = client.call("touch", json!({"uri": "mem://greeting"})).await;
    assert_eq!(text_of(&answer), "not subscribed");
    client.stop().await;
}

/// A first login that takes longer than `startup_timeout`: the drop-in answers `initialize`
/// in time for Claude Code (30 s) under its own name, the first list waits for the login, and
/// the client hears `list_changed` once the backend is there.
#[tokio::test]
async fn the_drop_in_answers_initialize_while_a_person_logs_in() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let secured = TestBackend::start(
        BackendConfig::oidc("secured", idp.issuer(), idp.jwks_uri()).with_page_size(2),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = support::settings(
        &secured.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    settings.gateway.startup_timeout = Duration::from_secs(1);
    let pause = Duration::from_secs(3);
    let mut client = ListOnce::start(
        settings.clone(),
        TestBrowser::new(BrowserMode::CompleteAfter(pause)),
    );
    let init = client.initialize("2025-11-25").await;
    let initialized = client.elapsed();
    assert!(initialized < Duration::from_secs(2), "{initialized:?}");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "authful-mcp-proxy",
        "{init}"
    );
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true);
    // The session stays alive meanwhile: what needs no backend is answered at once.
    let asked = client.elapsed();
    let ping = client.request("ping", json!({})).await;
    let level = client
        .request("logging/setLevel", json!({"level": "error"}))
        .await;
    assert!(
        ping["result"].is_object() && level["result"].is_object(),
        "{ping} {level}"
    );
    assert!(client.elapsed() - asked < Duration::from_secs(1));
    let tools = client.list_once("tools/list").await;
    assert!(client.elapsed() >= pause, "{:?}", client.elapsed());
    assert_eq!(tools.len(), 13);
    let who = client.call("whoami", json!({})).await;
    assert_eq!(structured(&who)["sub"], support::idp::DEFAULT_SUBJECT);
    // The log level the client set during the login reached the backend once it was there.
    support::eventually(5, "the log level at the backend", || {
        secured.stats().log_level.as_deref() == Some("error")
    })
    .await;
    let announced: Vec<Value> = client
        .arrivals()
        .into_iter()
        .filter_map(|a| a.message["method"].as_str().map(|m| json!(m)))
        .collect();
    assert!(
        announced.contains(&json!("notifications/tools/list_changed")),
        "{announced:?}"
    );
    client.stop().await;

    // With the tokens cached, the drop-in is transparent again: the backend's own identity.
    let mut client = ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Ignore));
    let init = client.initialize("2025-11-25").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "secured", "{init}");
    client.stop().await;

    // A login slower than the first list's wait: that list says why, later requests work.
    let slower = tempfile::tempdir().unwrap();
    settings.cache_dir = slower.path().to_path_buf();
    settings.gateway.first_list_timeout = Duration::from_secs(1);
    let mut client = ListOnce::start(
        settings,
        TestBrowser::new(BrowserMode::CompleteAfter(pause)),
    );
    client.initialize("2025-11-25").await;
    let first = client.request("tools/list", json!({})).await;
    let message = first["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("still waiting for you to log in to"),
        "{first}"
    );
    let who = client.call("whoami", json!({})).await;
    assert_eq!(
        structured(&who)["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    client.stop().await;
}

/// Two identity providers, a person who needs 3 s for each login, and `initialize` answered
/// after 1 s (`startup_timeout`): both logins are pending at once (two tabs), and the one tool
/// list the client reads has every backend after about one login's time, not two.
#[tokio::test]
async fn the_first_list_waits_for_two_slow_logins_side_by_side() {
    let corp_idp = FakeIdp::start(IdpConfig::default()).await;
    let partner_idp = FakeIdp::start(IdpConfig {
        client_id: "partner-client".into(),
        ..IdpConfig::default()
    })
    .await;
    let oidc = |name: &str, idp: &FakeIdp| {
        BackendConfig::oidc(name, idp.issuer(), idp.jwks_uri()).with_page_size(3)
    };
    let corp = TestBackend::start(oidc("corp", &corp_idp)).await;
    let partner = TestBackend::start(oidc("partner", &partner_idp)).await;
    let corp_profile = named(support::profile(&corp_idp, None), "corp");
    let partner_profile = named(support::profile(&partner_idp, None), "partner");
    let dir = tempfile::tempdir().unwrap();
    let settings = gateway(
        vec![
            prefixed("corp", &corp.url(), Some(&corp_profile)),
            prefixed("partner", &partner.url(), Some(&partner_profile)),
        ],
        dir.path(),
    );
    let pause = Duration::from_secs(3);
    let browser = TestBrowser::new(BrowserMode::CompleteAfter(pause));
    let mut client = ListOnce::start(settings, browser.clone());

    let init = client.initialize("2025-11-25").await;
    let initialized = client.elapsed();
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    assert!(
        initialized < Duration::from_secs(3),
        "initialize stays fast: {initialized:?}"
    );
    // As Claude Desktop does: every list at once, right after initialize, each read once.
    let tools = client.send_request("tools/list", json!({})).await;
    let prompts = client.send_request("prompts/list", json!({})).await;
    let resources = client.send_request("resources/list", json!({})).await;
    let tools = client.answer_to(tools).await;
    let listed = client.elapsed();
    let tools = names(tools["result"]["tools"].as_array().unwrap());
    assert_eq!(
        tools.len(),
        26,
        "both backends, no tool of the gateway's own: {tools:?}"
    );
    assert!(
        tools.contains(&"corp_whoami".to_owned()) && tools.contains(&"partner_touch".to_owned())
    );
    let prompts = client.answer_to(prompts).await;
    assert_eq!(
        prompts["result"]["prompts"].as_array().unwrap().len(),
        2,
        "{prompts}"
    );
    let resources = client.answer_to(resources).await;
    assert_eq!(
        resources["result"]["resources"].as_array().unwrap().len(),
        4
    );
    assert!(listed >= pause, "after a login: {listed:?}");
    // One after the other, they would take 6 s: the margin is for a busy machine.
    assert!(
        listed < pause * 2 - Duration::from_millis(500),
        "two logins side by side: {listed:?}"
    );
    eprintln!(
        "two {pause:?} logins: initialize after {initialized:?}, complete first tool list after {listed:?}"
    );
    let who = client.call("partner_whoami", json!({})).await;
    assert_eq!(
        structured(&who)["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    assert_eq!(browser.opened(), 2);
    client.stop().await;
}

/// A login that ends after `first_list_timeout`: the first list comes without that backend
/// but with the gateway's two tools, which reach it once it is ready, filters and all, for a
/// client that never lists again.
#[tokio::test]
async fn a_backend_that_joins_after_the_first_list_is_reached_through_the_gateway_tools() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let open = TestBackend::start(BackendConfig::open("open")).await;
    let slow = TestBackend::start(BackendConfig::oidc("slow", idp.issuer(), idp.jwks_uri())).await;
    let profile = named(support::profile(&idp, None), "corp");
    let dir = tempfile::tempdir().unwrap();
    let mut late = prefixed("slow", &slow.url(), Some(&profile));
    late.tools = ToolFilter {
        allow: Vec::new(),
        deny: vec![Glob::new("fail").unwrap()],
    };
    let mut settings = gateway(vec![prefixed("open", &open.url(), None), late], dir.path());
    settings.gateway.first_list_timeout = Duration::from_secs(2);
    let browser = TestBrowser::new(BrowserMode::CompleteAfter(Duration::from_secs(4)));
    let mut client = ListOnce::start(settings, browser);
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    let first_list = client.elapsed();
    assert!(first_list < Duration::from_secs(4), "{first_list:?}");
    assert_eq!(tools[..2], ["gateway_list_tools", "gateway_call_tool"]);
    assert_eq!(tools.len(), 2 + 13, "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("slow_")), "{tools:?}");

    // The client never lists again; the model asks the gateway instead, until `slow` is ready.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let overview = loop {
        let answer = client.call("gateway_list_tools", json!({})).await;
        let overview = structured(&answer);
        if overview["backends"][1]["ready"] == true {
            break overview;
        }
        assert!(tokio::time::Instant::now() < deadline, "{overview}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        overview,
        json!({"backends": [
            {"backend": "open", "ready": true, "tools": 13, "in_first_tool_list": true},
            {"backend": "slow", "ready": true, "tools": 12, "in_first_tool_list": false},
        ]})
    );
    let listing = structured(
        &client
            .call("gateway_list_tools", json!({"backend": "slow"}))
            .await,
    );
    let slow_tools: Vec<&str> = listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(slow_tools.len(), 12, "{listing}");
    assert!(slow_tools.contains(&"slow_whoami") && !slow_tools.contains(&"slow_fail"));
    assert_eq!(
        listing["tools"][1]["inputSchema"]["required"],
        json!(["text"])
    );

    let who = client
        .call("gateway_call_tool", json!({"name": "slow_whoami"}))
        .await;
    assert_eq!(
        structured(&who)["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    let echoed = client
        .call(
            "gateway_call_tool",
            json!({"name": "slow_echo", "arguments": {"text": "late but here"}}),
        )
        .await;
    assert_eq!(text_of(&echoed), "late but here");
    // The filter holds on this path too.
    let denied = client
        .call("gateway_call_tool", json!({"name": "slow_fail"}))
        .await;
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown tool: slow_fail"),
        "{denied}"
    );
    // The tools stay, and the client heard list_changed (which it ignores).
    assert!(
        client
            .arrivals()
            .iter()
            .any(|a| a.message["method"] == "notifications/tools/list_changed")
    );
    let again = names(&client.list_once("tools/list").await);
    assert_eq!(again[..2], ["gateway_list_tools", "gateway_call_tool"]);
    assert_eq!(again.len(), 2 + 13 + 12);
    client.stop().await;
}

/// `first_list_timeout: 0`: the first list does not wait for a login in progress.
#[tokio::test]
async fn a_first_list_timeout_of_zero_does_not_wait() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let open = TestBackend::start(BackendConfig::open("open")).await;
    let slow = TestBackend::start(BackendConfig::oidc("slow", idp.issuer(), idp.jwks_uri())).await;
    let profile = named(support::profile(&idp, None), "corp");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = gateway(
        vec![
            prefixed("open", &open.url(), None),
            prefixed("slow", &slow.url(), Some(&profile)),
        ],
        dir.path(),
    );
    settings.gateway.first_list_timeout = Duration::ZERO;
    let browser = TestBrowser::new(BrowserMode::CompleteAfter(Duration::from_secs(3)));
    let mut client = ListOnce::start(settings, browser);
    client.initialize("2025-11-25").await;
    let asked = client.elapsed();
    let tools = names(&client.list_once("tools/list").await);
    assert!(
        client.elapsed() - asked < Duration::from_millis(500),
        "{:?}",
        client.elapsed() - asked
    );
    assert_eq!(tools.len(), 2 + 13, "{tools:?}");
    client.stop().await;
}

#[tokio::test]
async fn the_gateway_tools_can_be_always_or_never_there() {
    let open = TestBackend::start(BackendConfig::open("open")).await;
    let dir = tempfile::tempdir().unwrap();
    for (mode, expected) in [(FallbackTools::Always, 2 + 13), (FallbackTools::Never, 13)] {
        // A backend that is down at the start: `auto` would add the tools.
        let down = format!("http://127.0.0.1:{}/mcp", support::free_port());
        let mut settings = gateway(
            vec![
                prefixed("down", &down, None),
                prefixed("open", &open.url(), None),
            ],
            dir.path(),
        );
        settings.gateway.fallback_tools = mode;
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        client.initialize("2025-11-25").await;
        let tools = names(&client.list_once("tools/list").await);
        assert_eq!(tools.len(), expected, "{mode:?}: {tools:?}");
        let listed = client.call("gateway_list_tools", json!({})).await;
        match mode {
            FallbackTools::Never => assert_eq!(listed["error"]["code"], -32602, "{listed}"),
            _ => assert_eq!(
                structured(&listed)["backends"][0]["ready"],
                false,
                "{listed}"
            ),
        }
        client.stop().await;
    }
}

/// A backend that takes `tools/list` and never answers: the first list is served with the
/// others after that backend's `request_timeout`, and a warning names it; the log level and
/// completions are bounded the same way.
#[tokio::test]
async fn a_backend_that_never_answers_its_list_does_not_hold_the_others() {
    let (logs, _guard) = support::logs::capture();
    let fine = TestBackend::start(BackendConfig::open("fine")).await;
    let behind = TestBackend::start(BackendConfig::open("silent")).await;
    let silent = FaultProxy::start(&behind.url()).await;
    for method in ["tools/list", "logging/setLevel", "completion/complete"] {
        silent.arm(method, Fault::Hang, 100);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut quiet = prefixed("silent", &silent.url(), None);
    quiet.request_timeout = Some(Duration::from_secs(1));
    let mut client = ListOnce::start(
        gateway(vec![prefixed("fine", &fine.url(), None), quiet], dir.path()),
        TestBrowser::new(BrowserMode::Ignore),
    );
    client.initialize("2025-11-25").await;
    let asked = client.elapsed();
    let tools = names(&client.list_once("tools/list").await);
    let waited = client.elapsed() - asked;
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(tools.len(), 13, "{tools:?}");
    assert!(tools.iter().all(|t| t.starts_with("fine_")), "{tools:?}");
    let text = logs.text();
    assert!(
        text.contains(
            "Listing tools without backend 'silent': backend 'silent' did not answer within 1 s"
        ),
        "{text}"
    );
    // Its prompts still list (only tools/list hangs), and the call path still works.
    let prompts = names(&client.list_once("prompts/list").await);
    assert_eq!(prompts, ["fine_greet", "silent_greet"]);

    let started = client.elapsed();
    let level = client
        .request("logging/setLevel", json!({"level": "error"}))
        .await;
    assert!(level["result"].is_object(), "{level}");
    assert!(client.elapsed() - started < Duration::from_secs(4));
    assert_eq!(fine.stats().log_level.as_deref(), Some("error"));
    let completion = client
        .request(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "silent_greet"},
                   "argument": {"name": "name", "value": "a"}}),
        )
        .await;
    let message = completion["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("backend 'silent' did not answer within 1 s"),
        "{completion}"
    );
    client.stop().await;
}

/// `initialize` never echoes a version the proxy does not speak, in either mode.
#[tokio::test]
async fn unknown_protocol_versions_get_the_newest_supported_one() {
    let everything = TestBackend::start(BackendConfig::open("everything")).await;
    let other = TestBackend::start(BackendConfig::open("other")).await;
    let dir = tempfile::tempdir().unwrap();
    let modes = [
        (
            "drop-in",
            support::settings(&everything.url(), None, dir.path()),
        ),
        (
            "gateway",
            gateway(
                vec![
                    prefixed("everything", &everything.url(), None),
                    prefixed("other", &other.url(), None),
                ],
                dir.path(),
            ),
        ),
    ];
    for (mode, settings) in modes {
        for (asked, answered) in [
            ("2025-01-01", "2025-11-25"),
            ("2099-12-31", "2025-11-25"),
            ("2026-07-28", "2025-11-25"),
            ("2025-06-18", "2025-06-18"),
            ("2024-11-05", "2024-11-05"),
        ] {
            let mut client =
                ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Ignore));
            let init = client.initialize(asked).await;
            assert_eq!(
                init["result"]["protocolVersion"], answered,
                "{mode} {asked}: {init}"
            );
            client.stop().await;
        }
    }
}

/// MCP Apps behind a prefix: the tool's link to its UI resource names the exposed URI, the
/// resource reads back from the right backend, and the extension is announced both ways.
#[tokio::test]
async fn an_mcp_app_behind_a_prefix_links_to_its_exposed_ui_resource() {
    let view = "ui://weather/view.html";
    let mut script = Script::tools("weather-server", 0, 10, 0);
    let mut show = tool("show_forecast", "Shows the forecast in an interactive view");
    show["_meta"] = json!({"ui": {"resourceUri": view, "visibility": ["model", "app"]}});
    script.tools = vec![show, tool("plain", "No UI")];
    script.resources = vec![json!({
        "uri": view,
        "name": "forecast view",
        "mimeType": "text/html;profile=mcp-app",
        "text": "<html><body>forecast</body></html>",
        "_meta": {"ui": {"csp": {"connectDomains": ["https://api.weather.example"]}}}
    })];
    script.extensions = Some(json!({"io.modelcontextprotocol/ui": {}}));
    let app = ScriptedBackend::start(script).await;
    let other = TestBackend::start(BackendConfig::open("other")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = ListOnce::start(
        gateway(
            vec![
                prefixed("other", &other.url(), None),
                prefixed("weather", &app.url(), None),
            ],
            dir.path(),
        ),
        TestBrowser::new(BrowserMode::Ignore),
    );
    let init = client.initialize("2025-11-25").await;
    assert_eq!(
        init["result"]["capabilities"]["extensions"],
        json!({"io.modelcontextprotocol/ui": {}}),
        "{init}"
    );
    let tools = client.list_once("tools/list").await;
    let show = tools
        .iter()
        .find(|t| t["name"] == "weather_show_forecast")
        .expect("the app's tool");
    assert_eq!(
        show["_meta"]["ui"]["resourceUri"],
        "weather+ui://weather/view.html"
    );
    assert_eq!(show["_meta"]["ui"]["visibility"], json!(["model", "app"]));
    let resources = client.list_once("resources/list").await;
    let listed = resources
        .iter()
        .find(|r| r["uri"] == "weather+ui://weather/view.html")
        .expect("the UI resource, under the prefix");
    assert_eq!(listed["mimeType"], "text/html;profile=mcp-app");
    let read = client
        .request(
            "resources/read",
            json!({"uri": "weather+ui://weather/view.html"}),
        )
        .await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], "weather+ui://weather/view.html", "{read}");
    assert_eq!(contents["text"], "<html><body>forecast</body></html>");
    assert_eq!(
        contents["_meta"]["ui"]["csp"]["connectDomains"][0],
        "https://api.weather.example"
    );
    // The client's own MCP Apps support reached the backend.
    let ran = text_of(&client.call("weather_show_forecast", json!({})).await);
    assert!(ran.contains("text/html;profile=mcp-app"), "{ran}");
    client.stop().await;
}

/// Every progress notification of a request reaches the client in the order sent and before
/// the request's answer; none comes after it (Cursor drops the connection over that).
#[tokio::test]
async fn progress_reaches_the_client_in_order_and_before_the_answer() {
    let everything = TestBackend::start(BackendConfig::open("everything")).await;
    let other = TestBackend::start(BackendConfig::open("other")).await;
    let dir = tempfile::tempdir().unwrap();
    let modes = [
        (
            "drop-in",
            "progress",
            support::settings(&everything.url(), None, dir.path()),
        ),
        (
            "gateway",
            "everything_progress",
            gateway(
                vec![
                    prefixed("everything", &everything.url(), None),
                    prefixed("other", &other.url(), None),
                ],
                dir.path(),
            ),
        ),
    ];
    for (mode, tool, settings) in modes {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        client.initialize("2025-11-25").await;
        for round in 0..5 {
            let token = format!("{mode}-{round}");
            let id = client
                .send_request(
                    "tools/call",
                    json!({"name": tool, "arguments": {"steps": 40, "interval_ms": 0, "padding": 20_000},
                           "_meta": {"progressToken": token}}),
                )
                .await;
            let answer = client.answer_to(id.clone()).await;
            assert_eq!(text_of(&answer), "done 40");
            // Give stragglers a moment to show up, if any were to.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let arrivals = client.arrivals();
            let answered_at = arrivals
                .iter()
                .position(|a| a.message.get("id") == Some(&id) && a.message.get("result").is_some())
                .unwrap();
            let progress: Vec<(usize, f64)> = arrivals
                .iter()
                .enumerate()
                .filter(|(_, a)| a.message["params"]["progressToken"] == token.as_str())
                .map(|(i, a)| (i, a.message["params"]["progress"].as_f64().unwrap()))
                .collect();
            let values: Vec<f64> = progress.iter().map(|(_, p)| *p).collect();
            let expected: Vec<f64> = (1..=40).map(f64::from).collect();
            assert_eq!(values, expected, "{mode} round {round}: in the order sent");
            assert!(
                progress.iter().all(|(i, _)| *i < answered_at),
                "{mode} round {round}: progress after the answer"
            );
        }
        client.stop().await;
    }
}

/// `gateway.max_name_length` bounds every exposed tool and prompt name; shortened names route.
#[tokio::test]
async fn names_fit_the_name_budget_and_still_route() {
    let everything = TestBackend::start(BackendConfig::open("everything")).await;
    let dir = tempfile::tempdir().unwrap();
    let long = Backend::new(
        "long",
        Url::parse(&everything.url()).unwrap(),
        None,
        Some("a-rather-long-prefix"),
    );
    let mut settings = gateway(
        vec![long, prefixed("plain", &everything.url(), None)],
        dir.path(),
    );
    settings.gateway.max_name_length = 24;
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    let prompts = names(&client.list_once("prompts/list").await);
    for name in tools.iter().chain(&prompts) {
        assert!(name.chars().count() <= 24, "{name}");
    }
    assert!(
        tools.contains(&"plain_whoami".to_owned()),
        "short names stay: {tools:?}"
    );
    let shortened = |name: &&String| {
        let (head, hash) = name.split_at(name.len().saturating_sub(9));
        name.len() == 24
            && head == "a-rather-long-p"
            && hash.starts_with('_')
            && hash[1..].chars().all(|c| c.is_ascii_hexdigit())
    };
    assert_eq!(tools.iter().filter(shortened).count(), 11, "{tools:?}");
    // A shortened name routes to its own tool.
    let mut naming = Naming::new("long", Some("a-rather-long-prefix"), "_");
    naming.max_len = 24;
    let echo = naming.tool("echo").unwrap();
    assert!(tools.contains(&echo), "{echo} in {tools:?}");
    let answer = client.call(&echo, json!({"text": "routed"})).await;
    assert_eq!(text_of(&answer), "routed");
    let greet = prompts.iter().find(|p| p.starts_with("a-rather")).unwrap();
    let prompt = client
        .request(
            "prompts/get",
            json!({"name": greet, "arguments": {"name": "Ada"}}),
        )
        .await;
    assert!(prompt.to_string().contains("Hello, Ada!"), "{prompt}");
    client.stop().await;
}
