//! No access token, refresh token, authorization code or client secret in anything the binary
//! prints or logs, nor in the errors its client gets — at every log level, through a login,
//! refreshes, a token the backend rejects, and a token endpoint that fails.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};

use crate::support::{
    self, BrowserMode, Client,
    backend::{BackendConfig, ResourceMetadata, TestBackend},
    binary,
    idp::{DeviceFlowConfig, FakeIdp, IdpConfig, TokenFault},
};

const SECRET: &str = "client-secret-do-not-print";

/// Calls `tool` without arguments; 30 s for an answer.
async fn call(client: &Client, tool: &str) -> Result<Value, String> {
    support::call_within(client, Duration::from_secs(30), tool, json!({})).await
}

/// The access and refresh tokens in the token cache under `home`.
pub(crate) fn cached_tokens(home: &Path) -> Vec<String> {
    let dir = home.join(".fastmcp/oauth-mcp-client-cache");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_tokens.json"))
        .filter_map(|e| serde_json::from_slice::<Value>(&std::fs::read(e.path()).ok()?).ok())
        .flat_map(|t| {
            let bound = t["bound"].as_object().cloned().unwrap_or_default();
            ["access_token", "refresh_token"]
                .map(|k| t[k].as_str().unwrap_or_default().to_owned())
                .into_iter()
                .chain(
                    bound
                        .values()
                        .map(|b| b["access_token"].as_str().unwrap_or_default().to_owned()),
                )
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[tokio::test]
async fn nothing_secret_is_printed_logged_or_answered_at_any_log_level() {
    for level in [
        &["--silent"][..],
        &[],
        &["--debug"],
        &["--debug", "--log-file"],
    ] {
        let idp = FakeIdp::start(IdpConfig {
            client_secret: Some(SECRET.into()),
            // 30 s tokens are refreshed before every use: many tokens go by.
            access_token_ttl: Duration::from_secs(30),
            ..IdpConfig::default()
        })
        .await;
        let backend =
            TestBackend::start(BackendConfig::oidc("secured", idp.issuer(), idp.jwks_uri())).await;
        let home = tempfile::tempdir().unwrap();
        let log_file = home.path().join("proxy.log");
        let mut args: Vec<&str> = level.to_vec();
        if args.last() == Some(&"--log-file") {
            args.push(log_file.to_str().unwrap());
        }
        let mut envs = binary::drop_in_env(&idp, &backend);
        envs.push(("OIDC_CLIENT_SECRET", SECRET.to_owned()));
        let (mut child, stderr, browser) =
            binary::spawn(home.path(), &args, &envs, BrowserMode::Complete);
        let client = binary::connect(&mut child).await;
        let mut secrets = vec![SECRET.to_owned()];
        let mut answers = Vec::new();

        // A login, then refreshes.
        answers.push(call(&client, "whoami").await.expect("whoami after login"));
        secrets.extend(cached_tokens(home.path()));
        answers.push(
            call(&client, "whoami")
                .await
                .expect("whoami after a refresh"),
        );
        secrets.extend(cached_tokens(home.path()));
        // The backend rejects the token: renewed, retried.
        backend.revoke_seen_tokens();
        answers.push(call(&client, "whoami").await.expect("whoami after a 401"));
        secrets.extend(cached_tokens(home.path()));
        // The token endpoint fails: the client gets an error.
        idp.fail_token_requests(&[TokenFault::HtmlServerError; 3]);
        let error = call(&client, "whoami")
            .await
            .expect_err("the provider is down");
        answers.push(Value::String(error));
        answers.push(
            call(&client, "whoami")
                .await
                .expect("whoami once it is back"),
        );
        secrets.extend(cached_tokens(home.path()));

        client.cancel().await.unwrap();
        let code = binary::exit_code(&mut child, 10).await;
        assert_eq!(code, Some(0), "{level:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;

        for callback in &browser.lock().unwrap().callbacks {
            let url = url::Url::parse(callback).unwrap();
            let code = url.query_pairs().find(|(k, _)| k == "code").unwrap().1;
            secrets.push(code.into_owned());
        }
        assert!(
            secrets.len() >= 8,
            "{level:?}: too few secrets seen: {}",
            secrets.len()
        );
        let mut everything: Vec<String> = stderr.lock().unwrap().clone();
        everything.extend(
            std::fs::read_to_string(&log_file)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned),
        );
        everything.extend(answers.iter().map(Value::to_string));
        if level.contains(&"--debug") {
            assert!(everything.len() > 20, "{level:?}: debug logs expected");
        }
        for line in &everything {
            for secret in &secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "{level:?}: a secret in: {line}"
                );
            }
        }
        backend.shutdown();
        idp.shutdown();
    }
}

/// The other flows, at debug level: a device sign-in (tokens bound to a backend's resource), a
/// service account with a client secret, and `logout`, which revokes — none of their tokens
/// or the secret in any output.
#[tokio::test]
async fn nothing_secret_is_printed_by_the_other_flows_or_logout() {
    let people = FakeIdp::start(IdpConfig {
        device_flow: Some(DeviceFlowConfig::default()),
        ..IdpConfig::default()
    })
    .await;
    let robots = FakeIdp::start(IdpConfig {
        client_secret: Some(SECRET.into()),
        client_credentials: true,
        ..IdpConfig::default()
    })
    .await;
    let docs = TestBackend::start(
        BackendConfig::oidc("docs", people.issuer(), people.jwks_uri())
            .with_resource_metadata(ResourceMetadata::default()),
    )
    .await;
    let ci = TestBackend::start(BackendConfig::oidc(
        "ci",
        robots.issuer(),
        robots.jwks_uri(),
    ))
    .await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("gateway.yaml");
    let yaml = format!(
        "oidc_profiles:\n  people:\n    issuer_url: {}\n    client_id: {}\n    flow: device\n  \
         robots:\n    issuer_url: {}\n    client_id: {}\n    client_secret: ${{ROBOT_SECRET}}\n    \
         flow: client_credentials\nbackends:\n  docs:\n    url: {}\n    oidc_profile: people\n  \
         ci:\n    url: {}\n    oidc_profile: robots\n",
        people.issuer(),
        people.client_id(),
        robots.issuer(),
        robots.client_id(),
        docs.url(),
        ci.url()
    );
    std::fs::write(&config, yaml).unwrap();
    let config = config.to_str().unwrap();
    let envs = [("ROBOT_SECRET", SECRET.to_owned())];
    let (mut child, stderr, _) = binary::spawn(
        home.path(),
        &["--debug", "--config", config],
        &envs,
        BrowserMode::Ignore,
    );
    let client = binary::connect(&mut child).await;
    let mut answers = vec![
        call(&client, "ci_whoami")
            .await
            .expect("the service account"),
    ];
    support::eventually(20, "a device authorization", || {
        !people.stats().device_authorizations.is_empty()
    })
    .await;
    let code = people.stats().device_authorizations[0].user_code.clone();
    assert!(people.approve_device(&code));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match call(&client, "docs_whoami").await {
            Ok(answer) => {
                answers.push(answer);
                break;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                answers.push(Value::String(e));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let secrets: Vec<String> = std::iter::once(SECRET.to_owned())
        .chain(cached_tokens(home.path()))
        .collect();
    assert!(secrets.len() >= 4, "{secrets:?}");
    client.cancel().await.unwrap();
    assert_eq!(binary::exit_code(&mut child, 10).await, Some(0));

    let (mut logout, logout_lines, _) = binary::spawn(
        home.path(),
        &["--debug", "--config", config, "logout"],
        &envs,
        BrowserMode::Ignore,
    );
    assert_eq!(binary::exit_code(&mut logout, 20).await, Some(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(people.stats().revocations.len(), 1);

    let mut everything: Vec<String> = stderr.lock().unwrap().clone();
    everything.extend(logout_lines.lock().unwrap().iter().cloned());
    everything.extend(answers.iter().map(Value::to_string));
    assert!(everything.len() > 20, "debug logs expected");
    for line in &everything {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "a secret in: {line}");
        }
    }
}
