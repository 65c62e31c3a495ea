//! What a client gets at start-up, through the real server loop on OS pipes and a client that
//! behaves like Claude Desktop (or says it is Codex): a second start answers `initialize` and
//! the first lists at once from what the backends listed last time, while a person signs in; a
//! call to a remembered tool waits for that sign-in; fresh lists that differ are announced and
//! replace the remembered ones; `remember_lists: false` keeps nothing; and Codex, with nothing
//! remembered, gets its first list within its one second and reaches a backend that is still
//! signing in through the gateway's own tools.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use authful_mcp_proxy::config::{Backend, Gateway, Settings};
use serde_json::{Value, json};

use crate::support::{
    self, BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
    desktop::{ListOnce, names},
    idp::{FakeIdp, IdpConfig},
    named, prefixed,
    scripted::{Paging, Script, ScriptedBackend},
};

/// A gateway whose `initialize` would wait 5 s for a login, and its first list 45 s.
fn gateway(backends: Vec<Backend>, dir: &Path, remember: bool) -> Settings {
    Settings {
        cache_dir: dir.to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::of(&backends),
        backends,
        gateway: Gateway {
            name: "desk".into(),
            remember_lists: remember,
            ..Gateway::default()
        },
    }
}

/// The entries written (not the temporary files one is being written through).
fn remembered_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("remembered"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes the token files: the next start must sign in again.
fn forget_tokens(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with("_tokens.json")
        {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

fn tools_changed(client: &ListOnce) -> usize {
    client
        .arrivals()
        .iter()
        .filter(|a| a.message["method"] == "notifications/tools/list_changed")
        .count()
}

struct World {
    idp: FakeIdp,
    secured: TestBackend,
    open: TestBackend,
    dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let idp = FakeIdp::start(IdpConfig::default()).await;
        let secured =
            TestBackend::start(BackendConfig::oidc("corp", idp.issuer(), idp.jwks_uri())).await;
        let open = TestBackend::start(BackendConfig::open("open")).await;
        let dir = tempfile::tempdir().unwrap();
        Self {
            idp,
            secured,
            open,
            dir,
        }
    }

    fn settings(&self, profile: &std::sync::Arc<authful_mcp_proxy::config::Profile>) -> Settings {
        gateway(
            vec![
                prefixed("corp", &self.secured.url(), Some(profile)),
                prefixed("open", &self.open.url(), None),
            ],
            self.dir.path(),
            true,
        )
    }

    /// A first run that signs in and lists everything, leaving both backends remembered.
    async fn first_run(&self, settings: &Settings) -> Vec<String> {
        let mut client = ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Complete));
        client.initialize("2025-11-25").await;
        let tools = names(&client.list_once("tools/list").await);
        client.stop().await;
        support::eventually(10, "both backends remembered", || {
            remembered_files(self.dir.path()).len() == 2
        })
        .await;
        tools
    }
}

/// The second start: `initialize` and the whole first tool list come at once (well before the
/// 3-s login ends, which would otherwise hold them), a call to a remembered tool waits for the
/// login and goes through, and nothing is announced, as nothing changed.
#[tokio::test]
async fn a_second_start_lists_at_once_and_a_call_waits_for_the_login() {
    let world = World::start().await;
    let profile = named(support::profile(&world.idp, None), "corp");
    let settings = world.settings(&profile);
    let listed_first = world.first_run(&settings).await;
    assert!(
        listed_first.contains(&"corp_whoami".to_owned()),
        "{listed_first:?}"
    );

    forget_tokens(world.dir.path());
    let login = Duration::from_secs(3);
    let browser = TestBrowser::new(BrowserMode::CompleteAfter(login));
    let mut client = ListOnce::start(settings, browser.clone());
    let init = client.initialize("2025-11-25").await;
    let initialized = client.elapsed();
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let tools = names(&client.list_once("tools/list").await);
    let listed = client.elapsed();
    assert_eq!(tools, listed_first, "the same list, in the same order");
    assert!(
        listed < login,
        "initialize after {initialized:?}, the whole list after {listed:?}: before the login ends"
    );

    let who = client.call("corp_whoami", json!({})).await;
    assert_eq!(
        who["result"]["structuredContent"]["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    assert!(client.elapsed() >= login, "the call waited for the login");
    assert_eq!(browser.opened(), 1);
    // The fresh lists were read after the login: they are what was remembered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tools_changed(&client),
        0,
        "nothing changed, nothing announced"
    );
    eprintln!(
        "remembered: initialize after {initialized:?}, complete tool list after {listed:?}, \
         first call after {:?} (a {login:?} login)",
        client.elapsed()
    );
    client.stop().await;
}

/// A remembered tool the backend no longer has: listed at first, then the fresh list replaces
/// it (announced with `list_changed`, and written for the next start), and calling it names
/// no backend's tool any more.
#[tokio::test]
async fn fresh_lists_that_differ_are_announced_and_replace_the_remembered_ones() {
    let world = World::start().await;
    let profile = named(support::profile(&world.idp, None), "corp");
    let settings = world.settings(&profile);
    world.first_run(&settings).await;
    // What the open backend had last time: one tool more than now.
    let file = remembered_files(world.dir.path())
        .into_iter()
        .find(|f| {
            let entry: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            entry["introduction"]["serverInfo"]["name"] == "open"
        })
        .expect("the open backend's file");
    let mut entry: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut ghost = entry["tools"][0].clone();
    ghost["name"] = json!("ghost");
    entry["tools"].as_array_mut().unwrap().push(ghost);
    std::fs::write(&file, serde_json::to_vec(&entry).unwrap()).unwrap();

    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Complete));
    client.initialize("2025-11-25").await;
    let first = names(&client.list_once("tools/list").await);
    assert!(first.contains(&"open_ghost".to_owned()), "{first:?}");
    support::eventually(10, "tools/list_changed", || tools_changed(&client) == 1).await;
    let fresh = names(&client.list_once("tools/list").await);
    assert!(!fresh.contains(&"open_ghost".to_owned()), "{fresh:?}");
    assert_eq!(fresh.len(), first.len() - 1, "{fresh:?}");
    let gone = client.call("open_ghost", json!({})).await;
    assert!(
        gone.get("error").is_some() || gone["result"]["isError"] == true,
        "{gone}"
    );
    client.stop().await;
    support::eventually(10, "the fresh list written", || {
        !std::fs::read_to_string(&file).unwrap().contains("ghost")
    })
    .await;
}

/// A list whose second page fails is served as far as it goes, but it is not the backend's
/// list: nothing is remembered, so the next start does not answer with half of it.
#[tokio::test]
async fn a_list_cut_by_a_failing_page_is_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let mut script = Script::tools("cut", 4, 2, 10);
    script.paging = Paging::FailAfterFirst;
    let backend = ScriptedBackend::start(script).await;
    let settings = gateway(
        vec![prefixed("cut", &backend.url(), None)],
        dir.path(),
        true,
    );
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Complete));
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    assert!(tools.contains(&"cut_tool_0".to_owned()), "{tools:?}");
    assert!(backend.pages_served() >= 2, "the second page was asked for");
    client.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        remembered_files(dir.path()).is_empty(),
        "a partial list was remembered"
    );
}

/// `remember_lists: false`: nothing is written, and the first list waits for the backends.
#[tokio::test]
async fn remember_lists_false_keeps_nothing() {
    let world = World::start().await;
    let profile = named(support::profile(&world.idp, None), "corp");
    let mut settings = world.settings(&profile);
    settings.gateway.remember_lists = false;
    let mut client = ListOnce::start(settings, TestBrowser::new(BrowserMode::Complete));
    client.initialize("2025-11-25").await;
    let tools = names(&client.list_once("tools/list").await);
    assert!(tools.contains(&"corp_whoami".to_owned()), "{tools:?}");
    client.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(remembered_files(world.dir.path()).is_empty());
}

/// Two gateways of one configuration started together share the files: both write, and what
/// is there afterwards is whole and read at the next start.
#[tokio::test]
async fn two_processes_at_once_leave_sound_files() {
    let world = World::start().await;
    let profile = named(support::profile(&world.idp, None), "corp");
    let settings = world.settings(&profile);
    world.first_run(&settings).await;
    let mut one = ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Complete));
    let mut two = ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Complete));
    one.initialize("2025-11-25").await;
    two.initialize("2025-11-25").await;
    let (a, b) = (
        names(&one.list_once("tools/list").await),
        names(&two.list_once("tools/list").await),
    );
    assert_eq!(a, b);
    one.stop().await;
    two.stop().await;
    for file in remembered_files(world.dir.path()) {
        let entry: Value = serde_json::from_slice(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(entry["tools"].as_array().is_some_and(|t| !t.is_empty()));
    }
    let everything = std::fs::read_dir(world.dir.path().join("remembered")).unwrap();
    assert_eq!(everything.count(), 2, "no temp files left");
}

/// Codex, the first time (nothing remembered) and with a 3-s login: `initialize` and the first
/// tool list come within its one second, with the open backend's tools and the gateway's own;
/// a call through `gateway_call_tool` waits for the login and goes through; the backend is
/// announced with `list_changed` when it is there.
#[tokio::test]
async fn codex_gets_its_first_list_within_a_second_and_a_call_waits_for_the_login() {
    let world = World::start().await;
    let profile = named(support::profile(&world.idp, None), "corp");
    let login = Duration::from_secs(3);
    let browser = TestBrowser::new(BrowserMode::CompleteAfter(login));
    let mut client = ListOnce::start(world.settings(&profile), browser.clone());
    let init = client.initialize_as("codex-mcp-client", "2025-06-18").await;
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let tools = names(&client.list_once("tools/list").await);
    let listed = client.elapsed();
    assert!(
        listed < Duration::from_secs(1),
        "Codex leaves out a server slower than 1 s: {listed:?}"
    );
    assert!(tools.contains(&"open_echo".to_owned()), "{tools:?}");
    assert!(tools.contains(&"gateway_call_tool".to_owned()), "{tools:?}");
    assert!(
        !tools.contains(&"corp_whoami".to_owned()),
        "still signing in: {tools:?}"
    );
    let who = client
        .call(
            "gateway_call_tool",
            json!({"name": "corp_whoami", "arguments": {}}),
        )
        .await;
    assert_eq!(
        who["result"]["structuredContent"]["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    assert!(client.elapsed() >= login, "the call waited for the login");
    support::eventually(10, "the signed-in backend announced", || {
        tools_changed(&client) >= 1
    })
    .await;
    eprintln!("codex, cold: the first tool list after {listed:?}");
    client.stop().await;
}

/// The drop-in remembers too: the second start answers `initialize` as the server did and the
/// first tool list as it was, at once while a person signs in; a call waits for the login; once
/// connected, the lists are announced with `list_changed`.
#[tokio::test]
async fn the_drop_in_answers_as_its_server_did_while_a_person_signs_in() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let mut client = ListOnce::start(settings.clone(), TestBrowser::new(BrowserMode::Complete));
    let first_init = client.initialize("2025-11-25").await;
    let listed_first = names(&client.list_once("tools/list").await);
    client.stop().await;
    support::eventually(10, "the drop-in's list remembered", || {
        remembered_files(dir.path()).len() == 1
    })
    .await;

    forget_tokens(dir.path());
    let login = Duration::from_secs(3);
    let browser = TestBrowser::new(BrowserMode::CompleteAfter(login));
    let mut client = ListOnce::start(settings, browser.clone());
    let init = client.initialize("2025-11-25").await;
    assert_eq!(
        init["result"]["serverInfo"], first_init["result"]["serverInfo"],
        "the server's own identity: {init}"
    );
    assert_eq!(
        init["result"]["instructions"],
        first_init["result"]["instructions"]
    );
    let tools = names(&client.list_once("tools/list").await);
    let listed = client.elapsed();
    assert_eq!(tools, listed_first);
    assert!(
        listed < login,
        "the list after {listed:?}: before the login ends"
    );
    let who = client.call("whoami", json!({})).await;
    assert_eq!(
        who["result"]["structuredContent"]["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    support::eventually(10, "the lists announced once connected", || {
        tools_changed(&client) == 1
    })
    .await;
    assert_eq!(browser.opened(), 1);
    client.stop().await;
}
