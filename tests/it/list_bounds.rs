//! A backend cannot make a complete list endless or unbounded: the walk through its pages stops
//! at 1,000 pages, 10,000 items, 16 MiB of items, or a cursor handed out twice; the client
//! gets what was read, at once, and a warning says what was cut. In the drop-in and the
//! gateway alike, over the real server loop.

use std::time::Duration;

use authful_mcp_proxy::config::{Gateway, Settings};

use crate::support::{
    self, BrowserMode, TestBrowser,
    desktop::{ListOnce, names},
    logs, prefixed,
    scripted::{Paging, Script, ScriptedBackend},
};

async fn drop_in_lists(script: Script) -> (Vec<String>, String, ScriptedBackend) {
    let (logs, _guard) = logs::capture();
    let backend = ScriptedBackend::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(&backend.url(), None, dir.path());
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    client.stop().await;
    (tools, logs.text(), backend)
}

#[tokio::test]
async fn a_backend_that_pages_forever_is_cut_at_a_thousand_pages() {
    let mut script = Script::tools("endless", 0, 5, 0);
    script.paging = Paging::Endless;
    let (tools, logs, backend) = drop_in_lists(script).await;
    assert_eq!(tools.len(), 5000);
    assert_eq!(backend.pages_served(), 1000);
    assert!(
        logs.contains(
            "Backend 'default': tools/list stopped after 5000 tools, because it has more than \
             1000 pages; the rest is left out"
        ),
        "{logs}"
    );
}

#[tokio::test]
async fn a_cursor_handed_out_twice_ends_the_walk() {
    let mut script = Script::tools("loop", 8, 5, 0);
    script.paging = Paging::RepeatCursor;
    let (tools, logs, backend) = drop_in_lists(script).await;
    // The page served again adds nothing: each name is listed once.
    assert_eq!(tools, ["tool_0", "tool_1", "tool_2", "tool_3", "tool_4"]);
    assert_eq!(backend.pages_served(), 2);
    assert!(
        logs.contains("because it handed out the cursor \"p1\" a second time"),
        "{logs}"
    );
}

#[tokio::test]
async fn more_than_ten_thousand_items_are_cut() {
    let (tools, logs, _backend) = drop_in_lists(Script::tools("many", 12_000, 1000, 0)).await;
    assert_eq!(tools.len(), 10_000);
    assert_eq!(tools.last().map(String::as_str), Some("tool_9999"));
    assert!(
        logs.contains("because it has more than 10000 tools"),
        "{logs}"
    );
}

#[tokio::test]
async fn more_than_sixteen_mebibytes_of_items_are_cut() {
    let (tools, logs, _backend) = drop_in_lists(Script::tools("huge", 20, 2, 1024 * 1024)).await;
    assert_eq!(tools.len(), 15, "{} tools", tools.len());
    assert!(
        logs.contains("because its tools take more than 16 MiB"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_gateway_bounds_the_walk_too_and_serves_the_other_backends() {
    let (logs, _guard) = logs::capture();
    let mut endless = Script::tools("endless", 0, 20, 0);
    endless.paging = Paging::Endless;
    let endless = ScriptedBackend::start(endless).await;
    let fine = ScriptedBackend::start(Script::tools("fine", 3, 2, 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::Gateway,
        backends: vec![
            prefixed("endless", &endless.url(), None),
            prefixed("fine", &fine.url(), None),
        ],
        gateway: Gateway {
            startup_timeout: Duration::from_secs(1),
            ..Gateway::default()
        },
    };
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    assert_eq!(
        tools.len(),
        20_000 / 2 + 3,
        "10,000 of the endless backend's, 3 of fine's"
    );
    assert_eq!(
        tools[tools.len() - 3..],
        ["fine_tool_0", "fine_tool_1", "fine_tool_2"]
    );
    let text = logs.text();
    assert!(
        text.contains("Backend 'endless': tools/list stopped after 10000 tools"),
        "{text}"
    );
    client.stop().await;
}
