//! `login`, `logout` and `status`, as a person runs them in a terminal: the real binary, the
//! fake provider and a token-validating backend.

use std::path::Path;

use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::support::{
    BrowserMode,
    backend::{BackendConfig, TestBackend},
    binary,
    idp::{AuthorizeBehavior, FakeIdp, IdpConfig, RevokedToken},
};

/// What one command did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: Vec<String>,
    logins: usize,
}

async fn run(home: &Path, args: &[&str], envs: &[(&str, String)]) -> Run {
    let (mut child, lines, browser) = binary::spawn(home, args, envs, BrowserMode::Complete);
    let code = binary::exit_code(&mut child, 30).await;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    // The stderr reader may still be collecting the last lines.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stderr = lines.lock().unwrap().clone();
    let logins = browser.lock().unwrap().urls.len();
    Run {
        code,
        stdout,
        stderr,
        logins,
    }
}

async fn stack() -> (FakeIdp, TestBackend, tempfile::TempDir) {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let backend =
        TestBackend::start(BackendConfig::oidc("tickets", idp.issuer(), idp.jwks_uri())).await;
    (idp, backend, tempfile::tempdir().unwrap())
}

fn status_of(run: &Run) -> Value {
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}): {}", run.stdout));
    json["backends"][0].clone()
}

/// A person's day: `login` in a terminal (one browser login), `status` (the token and the
/// backend answering), `logout` (the refresh token revoked at the provider, the cache file
/// gone), and `status` again, which never opens a browser.
#[tokio::test]
async fn login_status_logout() {
    let (idp, backend, home) = stack().await;
    let env = binary::drop_in_env(&idp, &backend);

    let login = run(home.path(), &["login"], &env).await;
    assert_eq!(login.code, Some(0), "{:?}", login.stderr);
    assert_eq!(login.logins, 1);
    assert!(
        login
            .stderr
            .iter()
            .any(|l| l.contains("backend 'default': signed in")),
        "{:?}",
        login.stderr
    );

    let status = run(home.path(), &["status", "--json"], &env).await;
    assert_eq!(
        status.code,
        Some(0),
        "{} {:?}",
        status.stdout,
        status.stderr
    );
    let line = status_of(&status);
    assert_eq!(line["token"], "valid");
    assert_eq!(line["answers"], true);
    assert_eq!(line["issuer"], idp.issuer());
    assert_eq!(line["profile"], "default");
    assert!(
        line["scopes"]
            .as_str()
            .unwrap_or_default()
            .contains("openid")
    );
    assert_eq!(status.logins, 0);

    let text = run(home.path(), &["status"], &env).await;
    assert_eq!(text.code, Some(0));
    assert!(
        text.stdout.contains("token    valid for"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("answers (tickets, MCP 2025-11-25)"),
        "{}",
        text.stdout
    );

    let cache: Vec<_> = std::fs::read_dir(home.path().join(".fastmcp/oauth-mcp-client-cache"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        cache
            .iter()
            .any(|p| p.to_string_lossy().ends_with("_tokens.json")),
        "{cache:?}"
    );

    let logout = run(home.path(), &["logout"], &env).await;
    assert_eq!(logout.code, Some(0), "{:?}", logout.stderr);
    assert!(
        logout.stderr.iter().any(|l| l.contains("revoked")),
        "{:?}",
        logout.stderr
    );
    let revocations = idp.stats().revocations;
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].found, RevokedToken::RefreshToken);
    let left: Vec<_> = cache
        .iter()
        .filter(|p| p.exists() && p.to_string_lossy().ends_with("_tokens.json"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let after = run(home.path(), &["status", "--json"], &env).await;
    assert_eq!(after.code, Some(1));
    assert_eq!(status_of(&after)["token"], "none");
    assert_eq!(status_of(&after)["answers"], false);
    assert_eq!(after.logins, 0, "status never opens a browser");
}

/// `login` for a backend the configuration does not have: a usage error naming the ones it
/// has; a refused login: exit 1.
#[tokio::test]
async fn login_exit_codes() {
    let (idp, backend, home) = stack().await;
    let env = binary::drop_in_env(&idp, &backend);
    let unknown = run(home.path(), &["login", "tickets"], &env).await;
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown
            .stderr
            .iter()
            .any(|l| l.contains("no backend named 'tickets'") && l.contains("default")),
        "{:?}",
        unknown.stderr
    );
    idp.set_authorize_behavior(AuthorizeBehavior::Deny);
    let refused = run(home.path(), &["login"], &env).await;
    assert_eq!(refused.code, Some(1), "{:?}", refused.stderr);
    assert!(
        refused.stderr.iter().any(|l| l.contains("access_denied")),
        "{:?}",
        refused.stderr
    );
}

/// `logout --all` also removes token files of profiles no longer configured.
#[tokio::test]
async fn logout_all_removes_stray_token_files() {
    let (idp, backend, home) = stack().await;
    let env = binary::drop_in_env(&idp, &backend);
    let cache = home.path().join(".fastmcp/oauth-mcp-client-cache");
    std::fs::create_dir_all(&cache).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let stray = cache.join("https_old_example_com_app_0badc0de_tokens.json");
    std::fs::write(&stray, "{}").unwrap();
    let plain = run(home.path(), &["logout"], &env).await;
    assert_eq!(plain.code, Some(0), "{:?}", plain.stderr);
    assert!(stray.exists(), "only --all touches other profiles' files");
    let all = run(home.path(), &["logout", "--all"], &env).await;
    assert_eq!(all.code, Some(0), "{:?}", all.stderr);
    assert!(!stray.exists());
    assert!(
        all.stderr
            .iter()
            .any(|l| l.contains("removed 1 other token file")),
        "{:?}",
        all.stderr
    );
}

/// `status` meets a backend as the proxy does: a token the backend refuses is renewed once (a
/// refresh; no browser), and the refusal of the renewed one is reported with the backend's
/// challenge; a backend that wants scopes the token lacks is reported as the proxy's own
/// handshake meets it, without a sign-in for them.
#[tokio::test]
async fn status_reports_refusals_as_the_proxy_meets_them() {
    let idp = FakeIdp::start(IdpConfig::default()).await;
    let elsewhere = TestBackend::start(
        BackendConfig::oidc("tickets", idp.issuer(), idp.jwks_uri()).with_audience("elsewhere"),
    )
    .await;
    let scoped =
        TestBackend::start(BackendConfig::oidc("admin", idp.issuer(), idp.jwks_uri())).await;
    scoped.set_required_scopes(&["tickets:admin"]);
    for (backend, refusal) in [
        (&elsewhere, "  backend  refuses: HTTP 401: invalid_token"),
        (&scoped, "  backend  refuses: HTTP 403: "),
    ] {
        let home = tempfile::tempdir().unwrap();
        let env = binary::drop_in_env(&idp, backend);
        let login = run(home.path(), &["login"], &env).await;
        assert_eq!(login.code, Some(0), "{:?}", login.stderr);
        let status = run(home.path(), &["status"], &env).await;
        assert_eq!(status.code, Some(1), "{}", status.stdout);
        assert!(status.stdout.contains(refusal), "{}", status.stdout);
        assert_eq!(status.logins, 0, "status never opens a browser");
    }
}
