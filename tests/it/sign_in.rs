//! The ways to sign in beyond the browser, through the real proxy loop: the device flow (its
//! code reaches the person through the MCP client; polling as the provider allows), service
//! accounts (client credentials with a secret or a signed assertion), a login URL only
//! printed (remote shells), extra authorization parameters, and a provider that issues no
//! refresh token.

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::config::{
    AssertionAlgorithm, AssertionAudience, ClientAssertion, Flow, Profile, Resource,
};
use serde_json::{Value, json};

use crate::support::{
    self, BrowserLog, BrowserMode, Harness, TestBrowser,
    backend::{BackendConfig, TestBackend},
    desktop::ListOnce,
    first_text,
    idp::{
        CLIENT_KID, CLIENT_RSA_PEM, ClientKey, DeviceFlowConfig, DevicePollOutcome, FakeIdp,
        IdpConfig, RequestKind,
    },
    logs, prefixed,
};

const V: &str = "2025-11-25";

fn with(profile: Arc<Profile>, change: impl FnOnce(&mut Profile)) -> Arc<Profile> {
    let mut profile = (*profile).clone();
    change(&mut profile);
    Arc::new(profile)
}

/// A drop-in session whose `initialize` does not wait long for a sign-in.
async fn start(
    backend: &TestBackend,
    profile: Arc<Profile>,
    dir: &std::path::Path,
) -> (Harness, Arc<TestBrowser>) {
    let mut settings = support::settings(&backend.url(), Some(profile), dir);
    settings.gateway.startup_timeout = Duration::from_millis(500);
    let browser = TestBrowser::new(BrowserMode::Complete);
    (support::start(settings, browser.clone(), V).await, browser)
}

/// What the client was told as log messages, as text.
#[allow(deprecated)] // logging: deprecated by SEP-2577, still part of the 2025 revisions
fn told(h: &Harness) -> Vec<String> {
    h.events
        .lock()
        .unwrap()
        .logs
        .iter()
        .map(|l| l.data.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The user code in a notice: "... enter the code ABCD-EFGH ...".
fn user_code(notice: &str) -> Option<String> {
    let after = notice.split("enter the code ").nth(1)?;
    Some(after.split([' ', ';', '(']).next()?.to_owned())
}

async fn device_idp(device: DeviceFlowConfig) -> (FakeIdp, TestBackend, tempfile::TempDir) {
    support::oidc_backend(IdpConfig {
        device_flow: Some(device),
        ..IdpConfig::default()
    })
    .await
}

/// The person reads the code the client shows (a log message, as the desktop app presents
/// it), enters it at the provider, and the waiting call goes through; the proxy polls no
/// faster than the provider allows, and no browser opens.
#[tokio::test]
async fn a_device_code_reaches_the_person_through_the_client() {
    let (idp, backend, dir) = device_idp(DeviceFlowConfig::default()).await;
    let profile = with(support::profile(&idp, None), |p| p.flow = Flow::Device);
    let (h, browser) = start(&backend, profile, dir.path()).await;
    let call = tokio::spawn({
        let client = h.client.peer().clone();
        async move {
            let params =
                serde_json::from_value(json!({"name": "whoami", "arguments": {}})).unwrap();
            client.call_tool(params).await
        }
    });
    support::eventually(10, "the device code shown to the client", || {
        told(&h).iter().any(|t| user_code(t).is_some())
    })
    .await;
    let notice = told(&h)
        .into_iter()
        .find(|t| user_code(t).is_some())
        .unwrap();
    assert!(
        notice.contains(&format!("{}/device", idp.issuer())),
        "{notice}"
    );
    // Entering the code: the verification page, as a person's browser on another device.
    let code = user_code(&notice).unwrap();
    let page = reqwest::get(format!("{}/device?user_code={code}", idp.issuer()))
        .await
        .unwrap();
    assert!(page.status().is_success());
    let who = call.await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(who).unwrap()["structuredContent"]["sub"],
        "user-123"
    );
    assert_eq!(browser.opened(), 0);
    let stats = idp.stats();
    assert_eq!(stats.device_grants, 1);
    assert!(
        stats
            .device_polls
            .iter()
            .all(|p| p.outcome != DevicePollOutcome::SlowDown),
        "{:?}",
        stats.device_polls
    );
    for pair in stats.device_polls.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900),
            "polled faster than the interval: {:?}",
            stats.device_polls
        );
    }
    h.stop().await.unwrap();
}

/// A provider that advertises too short an interval answers `slow_down`: the proxy waits five
/// seconds more from then on, and the sign-in still succeeds.
#[tokio::test]
async fn slow_down_makes_the_proxy_poll_five_seconds_slower() {
    let device = DeviceFlowConfig {
        enforced_interval: Some(Duration::from_secs(2)),
        ..DeviceFlowConfig::default()
    };
    let (idp, backend, dir) = device_idp(device).await;
    let profile = with(support::profile(&idp, None), |p| {
        p.flow = Flow::Device;
        p.login_timeout = Duration::from_secs(30);
    });
    let (h, _browser) = start(&backend, profile, dir.path()).await;
    let client = h.client.peer().clone();
    let call = tokio::spawn(async move {
        let params = serde_json::from_value(json!({"name": "whoami", "arguments": {}})).unwrap();
        client.call_tool(params).await
    });
    support::eventually(15, "a slow_down", || {
        idp.stats()
            .device_polls
            .iter()
            .any(|p| p.outcome == DevicePollOutcome::SlowDown)
    })
    .await;
    let code = idp.stats().device_authorizations[0].user_code.clone();
    assert!(idp.approve_device(&code));
    call.await.unwrap().unwrap();
    let polls = idp.stats().device_polls;
    let slowed = polls
        .iter()
        .position(|p| p.outcome == DevicePollOutcome::SlowDown)
        .unwrap();
    let next = &polls[slowed + 1];
    assert!(
        next.at.duration_since(polls[slowed].at) >= Duration::from_millis(5900),
        "the next poll came too soon: {polls:?}"
    );
    assert_eq!(
        polls
            .iter()
            .filter(|p| p.outcome == DevicePollOutcome::SlowDown)
            .count(),
        1,
        "{polls:?}"
    );
    h.stop().await.unwrap();
}

/// Nobody enters the code: the proxy stops polling when the code expires, and the waiting
/// call fails saying what happened and what to do.
#[tokio::test]
async fn an_unentered_device_code_ends_at_its_expiry() {
    let device = DeviceFlowConfig {
        expires_in: Duration::from_secs(3),
        ..DeviceFlowConfig::default()
    };
    let (idp, backend, dir) = device_idp(device).await;
    let profile = with(support::profile(&idp, None), |p| p.flow = Flow::Device);
    let (h, _browser) = start(&backend, profile, dir.path()).await;
    let started = std::time::Instant::now();
    let error = h.call("whoami", json!({})).await.unwrap_err().to_string();
    assert!(error.contains("device code was not entered"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let polls = idp.stats().device_polls.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        idp.stats().device_polls.len(),
        polls,
        "no polling after the expiry"
    );
    h.stop().await.unwrap();
}

/// The person declines on the device: the waiting call fails saying so, and polling stops.
#[tokio::test]
async fn a_declined_device_sign_in_fails_the_request() {
    let (idp, backend, dir) = device_idp(DeviceFlowConfig::default()).await;
    let profile = with(support::profile(&idp, None), |p| p.flow = Flow::Device);
    let (h, _browser) = start(&backend, profile, dir.path()).await;
    let client = h.client.peer().clone();
    let call = tokio::spawn(async move {
        let params = serde_json::from_value(json!({"name": "whoami", "arguments": {}})).unwrap();
        client.call_tool(params).await
    });
    support::eventually(10, "a device authorization", || {
        !idp.stats().device_authorizations.is_empty()
    })
    .await;
    let code = idp.stats().device_authorizations[0].user_code.clone();
    assert!(idp.deny_device(&code));
    let error = call.await.unwrap().unwrap_err().to_string();
    assert!(error.contains("declined"), "{error}");
    let polls = idp.stats().device_polls.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(idp.stats().device_polls.len(), polls);
    h.stop().await.unwrap();
}

/// A service account with a client secret: no person, no browser, the token's subject is the
/// client itself, and no refresh token is needed (a new grant when it expires).
#[tokio::test]
async fn client_credentials_with_a_secret_need_no_person() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig {
        client_secret: Some("s3cret".into()),
        client_credentials: true,
        ..IdpConfig::default()
    })
    .await;
    // Every token is inside the renewal margin: each call needs a new grant.
    idp.set_access_token_ttl(Duration::from_secs(30));
    let profile = with(support::profile(&idp, Some("s3cret")), |p| {
        p.flow = Flow::ClientCredentials;
        p.scopes = vec!["mcp:tools".into()];
    });
    let (h, browser) = start(&backend, profile, dir.path()).await;
    for _ in 0..2 {
        let who = h.call("whoami", json!({})).await.unwrap();
        assert_eq!(who["structuredContent"]["sub"], idp.client_id());
    }
    assert_eq!(browser.opened(), 0);
    let stats = idp.stats();
    assert!(stats.client_credentials_grants >= 2, "{stats:?}");
    let requests = stats.of(RequestKind::ClientCredentials);
    assert_eq!(requests[0].scope.as_deref(), Some("mcp:tools"));
    assert_eq!(requests[0].client_auth.as_deref(), Some("basic"));
    h.stop().await.unwrap();
}

/// A service account with a key pair (RFC 7523): every token request carries a fresh assertion
/// signed with the private key — the provider refuses a replayed one — for the audience the
/// provider expects (its token endpoint, or its issuer identifier as RFC 7523bis asks).
#[tokio::test]
async fn client_credentials_with_a_signed_assertion() {
    for audience in [AssertionAudience::TokenEndpoint, AssertionAudience::Issuer] {
        let (idp, backend, dir) = support::oidc_backend(IdpConfig {
            client_credentials: true,
            client_key: Some(ClientKey::test()),
            ..IdpConfig::default()
        })
        .await;
        idp.set_access_token_ttl(Duration::from_secs(30));
        let key_file = dir.path().join("client-key.pem");
        std::fs::write(&key_file, CLIENT_RSA_PEM).unwrap();
        // A private key is the user's alone (the proxy refuses one others can read).
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let profile = with(support::profile(&idp, None), |p| {
            p.flow = Flow::ClientCredentials;
            p.scopes = Vec::new();
            p.client_assertion = Some(ClientAssertion {
                key_file: key_file.clone(),
                algorithm: AssertionAlgorithm::RS256,
                key_id: Some(CLIENT_KID.into()),
                audience: audience.clone(),
            });
        });
        let (h, browser) = start(&backend, profile, dir.path()).await;
        for _ in 0..3 {
            let who = h.call("whoami", json!({})).await.unwrap();
            assert_eq!(who["structuredContent"]["sub"], idp.client_id());
        }
        assert_eq!(browser.opened(), 0);
        let stats = idp.stats();
        let requests = stats.of(RequestKind::ClientCredentials);
        assert!(requests.len() >= 3, "{audience:?}: {requests:?}");
        assert!(
            requests
                .iter()
                .all(|r| r.client_auth.as_deref() == Some("private_key_jwt") && r.error.is_none()),
            "{audience:?}: {requests:?}"
        );
        h.stop().await.unwrap();
    }
}

/// `open_browser: false` (a remote shell): no browser is started; the URL is printed, and the
/// client is told it too, so the person can open it where they are.
#[tokio::test]
async fn a_login_url_can_be_shown_without_opening_a_browser() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let profile = with(support::profile(&idp, None), |p| p.open_browser = false);
    let (h, browser) = start(&backend, profile, dir.path()).await;
    let client = h.client.peer().clone();
    let call = tokio::spawn(async move {
        let params = serde_json::from_value(json!({"name": "whoami", "arguments": {}})).unwrap();
        client.call_tool(params).await
    });
    support::eventually(10, "the login URL shown to the client", || {
        told(&h).iter().any(|t| t.contains("/authorize?"))
    })
    .await;
    let notice = told(&h)
        .into_iter()
        .find(|t| t.contains("/authorize?"))
        .unwrap();
    let url = notice.rsplit(' ').next().unwrap().to_owned();
    support::complete_login(
        &url,
        BrowserMode::Complete,
        Arc::new(std::sync::Mutex::new(BrowserLog::default())),
    )
    .await;
    call.await.unwrap().unwrap();
    assert_eq!(browser.opened(), 0);
    h.stop().await.unwrap();
}

/// A profile's extra authorization parameters reach the provider, beside the proxy's own.
#[tokio::test]
async fn extra_authorize_parameters_reach_the_provider() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let profile = with(support::profile(&idp, None), |p| {
        p.authorize_params = vec![
            ("prompt".into(), "consent".into()),
            ("login_hint".into(), "ada@example.com".into()),
        ];
    });
    let (h, _browser) = start(&backend, profile, dir.path()).await;
    assert_eq!(
        first_text(&h.call("echo", json!({"text": "hi"})).await.unwrap()),
        "hi"
    );
    let stats = idp.stats();
    assert_eq!(stats.last_authorize_param("prompt"), Some("consent"));
    assert_eq!(
        stats.last_authorize_param("login_hint"),
        Some("ada@example.com")
    );
    assert!(stats.last_authorize_param("code_challenge").is_some());
    h.stop().await.unwrap();
}

/// A provider that issues no refresh token: the user is told once, with the scope that
/// usually fixes it. Backends bound to different resources then need a login each (no refresh
/// token can fetch the second one's token); the token in hand serves until it expires, not
/// only until a minute before (a person would have to log in a minute early).
#[tokio::test]
async fn no_refresh_token_is_reported_once_with_the_fix() {
    let (captured, _guard) = logs::capture();
    let idp = FakeIdp::start(IdpConfig {
        refresh_tokens: false,
        ..IdpConfig::default()
    })
    .await;
    idp.set_access_token_ttl(Duration::from_secs(45));
    let bound = |name: &str, resource: &str| {
        let mut config = BackendConfig::oidc(name, idp.issuer(), idp.jwks_uri());
        config.audience = resource.to_owned();
        config
    };
    let a = TestBackend::start(bound("a", "urn:backend:a")).await;
    let b = TestBackend::start(bound("b", "urn:backend:b")).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = support::profile(&idp, None);
    let mut backends = vec![
        prefixed("a", &a.url(), Some(&profile)),
        prefixed("b", &b.url(), Some(&profile)),
    ];
    backends[0].resource = Resource::Url("urn:backend:a".into());
    backends[1].resource = Resource::Url("urn:backend:b".into());
    let settings = gateway_settings(backends, dir.path());
    let browser = TestBrowser::new(BrowserMode::Complete);
    let h = support::start(settings, browser.clone(), V).await;
    for tool in ["a_whoami", "b_whoami", "a_whoami", "b_whoami"] {
        h.call(tool, json!({})).await.unwrap();
    }
    assert_eq!(
        browser.opened(),
        2,
        "one login per resource, each token kept while valid"
    );
    let warnings: Vec<String> = captured
        .text()
        .lines()
        .filter(|l| l.contains("issued no refresh token"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("offline_access"), "{warnings:?}");
    h.stop().await.unwrap();
}

/// Gateway settings over `backends`.
pub fn gateway_settings(
    backends: Vec<authful_mcp_proxy::config::Backend>,
    dir: &std::path::Path,
) -> authful_mcp_proxy::config::Settings {
    authful_mcp_proxy::config::Settings {
        cache_dir: dir.to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::of(&backends),
        backends,
        gateway: authful_mcp_proxy::config::Gateway {
            startup_timeout: Duration::from_secs(5),
            ..authful_mcp_proxy::config::Gateway::default()
        },
    }
}

/// A device code nobody has entered yet (the person is away) holds back no other profile: the
/// browser login of a second provider goes through meanwhile, and the device sign-in is still
/// waiting for its person.
#[tokio::test]
async fn a_pending_device_code_holds_back_no_other_profile() {
    let (tv_idp, tv_backend, dir) = device_idp(DeviceFlowConfig::default()).await;
    let (web_idp, web_backend, _web_dir) = support::oidc_backend(IdpConfig::default()).await;
    let tv = with(support::profile(&tv_idp, None), |p| {
        p.name = "tv".into();
        p.flow = Flow::Device;
        p.login_timeout = Duration::from_secs(60);
    });
    let web = with(support::profile(&web_idp, None), |p| p.name = "web".into());
    let backends = vec![
        prefixed("tv", &tv_backend.url(), Some(&tv)),
        prefixed("web", &web_backend.url(), Some(&web)),
    ];
    let settings = authful_mcp_proxy::config::Settings {
        cache_dir: dir.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::of(&backends),
        backends,
        gateway: Default::default(),
    };
    let browser = TestBrowser::new(BrowserMode::Complete);
    let as_browser: Arc<dyn authful_mcp_proxy::auth::browser::Browser> = browser.clone();
    let managers = authful_mcp_proxy::auth::managers(
        &settings,
        &authful_mcp_proxy::clients::identity_provider(),
        &as_browser,
    );
    let tv_access = managers["tv"].access("tv").unwrap();
    let device = tokio::spawn(async move { tv_access.token().await });
    support::eventually(10, "the device code asked for", || {
        tv_idp.stats().device_authorizations.len() == 1
    })
    .await;
    let web_token = tokio::time::timeout(
        Duration::from_secs(10),
        managers["web"].access("web").unwrap().token(),
    )
    .await
    .expect("the browser login does not wait for the device code")
    .unwrap();
    assert!(!web_token.expose().is_empty());
    assert_eq!(browser.opened(), 1);
    assert!(!device.is_finished(), "the device sign-in still waits");
    device.abort();
}

/// What a client that takes URL elicitation declares.
fn url_elicitation() -> serde_json::Value {
    json!({"elicitation": {"form": {}, "url": {}}})
}

/// The `elicitation/create` requests the client received.
fn elicitations(client: &ListOnce) -> Vec<serde_json::Value> {
    client
        .arrivals()
        .into_iter()
        .filter(|a| a.message["method"] == "elicitation/create")
        .map(|a| a.message["params"].clone())
        .collect()
}

/// Codex, accepting URL elicitation, started with `settings` (`system`: the proxy's own
/// browser); returns it with the first page the proxy asked it to open.
async fn codex_asked_to_open_a_page(
    settings: authful_mcp_proxy::config::Settings,
    system: Arc<TestBrowser>,
) -> (ListOnce, Value) {
    let mut client = ListOnce::start(settings, system);
    client.answer_with("elicitation/create", json!({"action": "accept"}));
    client
        .initialize_with("codex-mcp-client", "2025-11-25", url_elicitation())
        .await;
    support::eventually(10, "the client asked to open a page", || {
        !elicitations(&client).is_empty()
    })
    .await;
    let asked = elicitations(&client).remove(0);
    (client, asked)
}

/// A client that takes URL elicitation (Codex, where the proxy has no browser to open) is asked
/// to open the login page; the person signs in there, the call goes through, and the proxy's
/// own browser never opens.
#[tokio::test]
async fn the_client_opens_the_login_page_where_it_takes_url_elicitation() {
    let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
    let settings = support::settings(
        &backend.url(),
        Some(support::profile(&idp, None)),
        dir.path(),
    );
    let system = TestBrowser::new(BrowserMode::Ignore);
    let (mut client, asked) = codex_asked_to_open_a_page(settings, system.clone()).await;
    assert_eq!(asked["mode"], "url", "{asked}");
    let url = asked["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&idp.issuer()), "{url}");
    assert!(
        !asked["elicitationId"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    // The person, in the window the client opened.
    let person = TestBrowser::new(BrowserMode::Complete);
    tokio::task::spawn_blocking(move || {
        authful_mcp_proxy::auth::browser::Browser::open(&*person, &url)
    })
    .await
    .unwrap()
    .unwrap();
    let who = client.call("whoami", json!({})).await;
    assert_eq!(
        who["result"]["structuredContent"]["sub"],
        support::idp::DEFAULT_SUBJECT,
        "{who}"
    );
    assert_eq!(system.opened(), 0, "the proxy's own browser stayed shut");
    client.stop().await;
}

/// A client that declares URL elicitation but cannot answer it, or declines (as some SDKs do
/// whatever they are asked), gets the system browser after all; one that does not declare it
/// is never asked.
#[tokio::test]
async fn the_system_browser_opens_where_the_client_cannot() {
    for (declares, declines) in [(true, false), (true, true), (false, false)] {
        let (idp, backend, dir) = support::oidc_backend(IdpConfig::default()).await;
        let settings = support::settings(
            &backend.url(),
            Some(support::profile(&idp, None)),
            dir.path(),
        );
        let system = TestBrowser::new(BrowserMode::Complete);
        let mut client = ListOnce::start(settings, system.clone());
        if declines {
            client.answer_with("elicitation/create", json!({"action": "decline"}));
        }
        // Without an answer of its own, the test client answers `{}`: not an elicitation's.
        let capabilities = if declares {
            url_elicitation()
        } else {
            json!({})
        };
        client
            .initialize_with("some-client", "2025-11-25", capabilities)
            .await;
        let who = client.call("whoami", json!({})).await;
        assert_eq!(
            who["result"]["structuredContent"]["sub"],
            support::idp::DEFAULT_SUBJECT,
            "{who}"
        );
        assert_eq!(system.opened(), 1);

        assert_eq!(elicitations(&client).len(), usize::from(declares));
        client.stop().await;
    }
}

/// A device code reaches a client that takes URL elicitation as its verification page, with the
/// code in the message.
#[tokio::test]
async fn a_device_code_page_is_handed_to_the_client() {
    let (idp, backend, dir) = device_idp(DeviceFlowConfig::default()).await;
    let profile = with(support::profile(&idp, None), |p| p.flow = Flow::Device);
    let settings = support::settings(&backend.url(), Some(profile), dir.path());
    let system = TestBrowser::new(BrowserMode::Ignore);
    let (client, asked) = codex_asked_to_open_a_page(settings, system.clone()).await;
    let code = idp.stats().device_authorizations[0].user_code.clone();
    assert!(
        asked["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/device", idp.issuer())),
        "{asked}"
    );
    assert!(
        asked["message"].as_str().unwrap().contains(&code),
        "{asked}"
    );
    assert_eq!(system.opened(), 0);
    client.stop().await;
}
