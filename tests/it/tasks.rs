//! Tasks through the proxy, in both modes, in the revision both sides speak
//! (`support/tasks_backend.rs`):
//! - the experimental tasks of 2025-11-25: the backend's `capabilities.tasks` and a tool's
//!   `execution` reach the client as the backend said them, a call's `params.task` reaches the
//!   backend, and the task's answers come back as they were — the parts rmcp's types would
//!   drop. A client of 2026-07-28 sees none of it.
//! - the tasks extension of 2026-07-28, between a client and a backend of that revision.

use authful_mcp_proxy::config::{Gateway, Mode, Settings};
use serde_json::{Value, json};

use crate::support::{
    self, BrowserMode, TestBrowser,
    desktop::ListOnce,
    prefixed,
    tasks_backend::{self, TasksBackend},
};

fn modes(url: &str, dir: &std::path::Path) -> Vec<(Settings, &'static str)> {
    let backends = vec![prefixed("old", url, None)];
    vec![
        (support::settings(url, None, dir), ""),
        (
            Settings {
                cache_dir: dir.to_path_buf(),
                mode: Mode::of(&backends),
                backends,
                gateway: Gateway::default(),
            },
            "old_",
        ),
    ]
}

#[tokio::test]
async fn tasks_of_2025_cross_the_proxy_as_the_backend_said_them() {
    let backend = TasksBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (settings, prefix) in modes(&backend.url(), dir.path()) {
        let before = backend.calls().len();
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let init = client.initialize("2025-11-25").await;
        assert_eq!(
            init["result"]["capabilities"]["tasks"],
            tasks_backend::capabilities()["tasks"],
            "{prefix}: {init}"
        );
        let tools = client.list_once("tools/list").await;
        assert_eq!(tools[0]["name"], format!("{prefix}research"));
        assert_eq!(
            tools[0]["execution"],
            json!({"taskSupport": "optional"}),
            "{tools:?}"
        );
        assert!(tools[0].get("_meta").is_none(), "{tools:?}");

        let started = client
            .request(
                "tools/call",
                json!({"name": format!("{prefix}research"), "arguments": {}, "task": {"ttl": 60000}}),
            )
            .await;
        assert_eq!(
            started["result"],
            json!({"task": tasks_backend::task("working")}),
            "{started}"
        );
        let sent: Vec<Value> = backend.calls().into_iter().skip(before).collect();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["task"], json!({"ttl": 60000}), "{sent:?}");
        assert!(
            sent[0]
                .get("_meta")
                .is_none_or(|m| m.get("authful-mcp-proxy/2025-11-25").is_none())
        );

        let about = json!({"taskId": "task-1"});
        let got = client.request("tasks/get", about.clone()).await;
        assert_eq!(got["result"], tasks_backend::task("completed"), "{got}");
        let result = client.request("tasks/result", about.clone()).await;
        assert_eq!(
            result["result"]["content"][0]["text"], "researched as a task",
            "{result}"
        );
        let listed = client.request("tasks/list", json!({})).await;
        assert_eq!(
            listed["result"],
            json!({"tasks": [tasks_backend::task("completed")]}),
            "{listed}"
        );
        let cancelled = client.request("tasks/cancel", about).await;
        assert_eq!(
            cancelled["result"],
            tasks_backend::task("cancelled"),
            "{cancelled}"
        );

        // Without `task`, the same tool answers at once.
        let plain = client.call(&format!("{prefix}research"), json!({})).await;
        assert_eq!(
            plain["result"]["content"][0]["text"], "researched at once",
            "{plain}"
        );
        client.stop().await;
    }
}

/// A client of 2026-07-28 has tasks only as the extension: none of 2025-11-25's reach it.
#[tokio::test]
async fn a_client_of_2026_sees_no_tasks_of_2025() {
    let backend = TasksBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    for (settings, _) in modes(&backend.url(), dir.path()) {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let listed = client.request("tools/list", json!({"_meta": meta})).await;
        let tool = &listed["result"]["tools"][0];
        assert!(
            tool.get("execution").is_none() && tool.get("_meta").is_none(),
            "{listed}"
        );
        let discovered = client
            .request("server/discover", json!({"_meta": meta}))
            .await;
        let capabilities = &discovered["result"]["capabilities"];
        assert!(
            capabilities.get("tasks").is_none() && capabilities.get("experimental").is_none(),
            "{discovered}"
        );
        client.stop().await;
    }
}

/// Client and backend of 2026-07-28 with the tasks extension: the client declares it, the call
/// is answered with a task (`resultType: "task"`), and `tasks/get` — routed by the task's id in
/// the gateway — gives the backend's answer.
#[tokio::test]
async fn the_tasks_extension_of_2026_passes_between_client_and_backend_of_2026() {
    let backend = TasksBackend::start_2026().await;
    let dir = tempfile::tempdir().unwrap();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": {tasks_backend::TASKS_EXTENSION: {}}
        },
    });
    for (settings, prefix) in modes(&backend.url(), dir.path()) {
        let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Ignore));
        let discovered = client
            .request("server/discover", json!({"_meta": meta}))
            .await;
        assert!(discovered.get("result").is_some(), "{discovered}");
        let started = client
            .request(
                "tools/call",
                json!({"_meta": meta, "name": format!("{prefix}research"), "arguments": {}}),
            )
            .await;
        let mut expected = tasks_backend::task_2026("working", json!({}));
        expected["resultType"] = json!("task");
        assert_eq!(started["result"], expected, "{prefix}: {started}");
        let got = client
            .request("tasks/get", json!({"_meta": meta, "taskId": "t26"}))
            .await;
        assert_eq!(got["result"]["status"], "completed", "{got}");
        assert_eq!(
            got["result"]["result"]["content"][0]["text"], "researched as a task",
            "{got}"
        );
        client.stop().await;
    }
}
