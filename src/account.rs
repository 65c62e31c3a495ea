//! The commands people reach for around sign-in: `login`, `logout` and `status`.
//!
//! - `login [BACKEND...]` signs in ahead of time from a terminal, one sign-in per profile, so
//!   that a desktop client's first start finds tokens waiting (and its start-up limits never
//!   meet a person typing a password). It asks for every resource the profile's backends need.
//! - `logout [BACKEND...] [--all]` forgets the cached tokens, revoking the refresh token at the
//!   provider when it offers revocation (RFC 7009); `--all` also removes token files of
//!   profiles no longer configured.
//! - `status [--json]` shows, per backend, the profile, issuer, token state and scopes, and
//!   whether the backend answers with the token — never opening a browser: a token comes from
//!   the cache, a refresh, or a service account's own credentials.
//!
//! Each takes the configuration as the proxy does (`--config`, the drop-in's env vars and
//! flags). Exit status: 0 when everything asked for is in order, 1 when something is not (a
//! sign-in failed, a revocation failed, a backend refuses), 2 for a usage or configuration
//! error.

use std::{collections::BTreeMap, path::Path, process::ExitCode, sync::Arc};

use serde::Serialize;
use serde_json::json;

use crate::{
    auth::{
        LoggedOut, Revocation, TokenManager,
        browser::{Browser, SystemBrowser},
        cache::{AccessToken, unix_now},
        resource::Challenge,
    },
    clients,
    config::{Backend, Settings},
    proxy,
};

/// The backends named on the command line (all when none), or the unknown name and the
/// known ones.
fn select<'a>(settings: &'a Settings, names: &[String]) -> Result<Vec<&'a Backend>, String> {
    if names.is_empty() {
        return Ok(settings.backends.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            settings
                .backends
                .iter()
                .find(|b| b.name == *name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        settings.backends.iter().map(|b| b.name.as_str()).collect();
                    format!("no backend named '{name}' (backends: {})", known.join(", "))
                })
        })
        .collect()
}

fn managers(settings: &Settings, browser: Arc<dyn Browser>, interactive: bool) -> Managers {
    let managers = proxy::token_managers(settings, &clients::identity_provider(), &browser);
    if interactive {
        return managers;
    }
    // Rebuilt so that no person is ever asked: status only looks.
    managers
        .into_iter()
        .map(|(name, manager)| {
            let profile = Arc::new(manager.profile().clone());
            let backends: Vec<&Backend> = settings
                .backends
                .iter()
                .filter(|b| b.profile.as_ref().is_some_and(|p| p.name == name))
                .collect();
            let quiet = TokenManager::new(
                profile,
                &settings.cache_dir,
                clients::identity_provider(),
                Arc::clone(&browser),
                Arc::default(),
            )
            .for_backends(&backends, &settings.backends)
            .non_interactive();
            (name, Arc::new(quiet))
        })
        .collect()
}

/// Each profile's token manager, by profile name.
type Managers = BTreeMap<String, Arc<TokenManager>>;

/// The backends named (a usage error, exit 2, for an unknown one) and every profile's manager,
/// which may ask a person to sign in.
fn prepare<'a>(
    settings: &'a Settings,
    names: &[String],
) -> Result<(Vec<&'a Backend>, Managers), ExitCode> {
    let selected = select(settings, names).map_err(|e| {
        eprintln!("authful-mcp-proxy: {e}");
        ExitCode::from(2)
    })?;
    Ok((selected, managers(settings, Arc::new(SystemBrowser), true)))
}

/// "valid for 59 min", "expired".
fn validity(access: &AccessToken) -> String {
    match access.seconds_left(unix_now()) {
        None => "valid (no expiry given)".into(),
        Some(left) if left <= 0 => "expired".into(),
        Some(left) if left < 120 => format!("valid for {left} s"),
        Some(left) => format!("valid for {} min", left / 60),
    }
}

/// `authful-mcp-proxy login [BACKEND...]`.
pub async fn login(settings: Settings, names: &[String]) -> ExitCode {
    let (selected, managers) = match prepare(&settings, names) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let mut failed = 0;
    let mut profiles: Vec<&str> = Vec::new();
    for backend in &selected {
        let Some(profile) = &backend.profile else {
            eprintln!(
                "backend '{}': no OIDC profile, nothing to sign in to",
                backend.name
            );
            continue;
        };
        if !profiles.contains(&profile.name.as_str()) {
            profiles.push(&profile.name);
            eprintln!(
                "profile '{}': signing in at {} ({} flow)",
                profile.name,
                profile.issuer_label(),
                profile.flow.as_str()
            );
        }
        let Some(manager) = managers.get(&profile.name) else {
            continue;
        };
        match manager.access(&backend.name).token().await {
            Ok(_) => {
                let state = manager
                    .stored()
                    .map(|t| {
                        let refreshable = if t.refresh_token.is_some() {
                            ", refreshable"
                        } else {
                            ""
                        };
                        format!("signed in at {}{refreshable}", t.issuer)
                    })
                    .unwrap_or_else(|| "signed in".into());
                eprintln!("backend '{}': {state}", backend.name);
            }
            Err(e) => {
                failed += 1;
                eprintln!("backend '{}': sign-in failed: {e}", backend.name);
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} backend(s) have no usable token");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `authful-mcp-proxy logout [BACKEND...] [--all]`.
pub async fn logout(settings: Settings, names: &[String], all: bool) -> ExitCode {
    let (selected, managers) = match prepare(&settings, names) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let mut failed = false;
    let mut done: Vec<&str> = Vec::new();
    let mut kept_files = Vec::new();
    for profile in selected.iter().filter_map(|b| b.profile.as_ref()) {
        if done.contains(&profile.name.as_str()) {
            continue;
        }
        done.push(&profile.name);
        let Some(manager) = managers.get(&profile.name) else {
            continue;
        };
        kept_files.push(manager.cache_path().to_path_buf());
        let outcome = match manager.log_out().await {
            Ok(LoggedOut::NothingCached) => "no tokens cached".to_owned(),
            Ok(LoggedOut::Forgotten(revocation)) => {
                let revoked = match revocation {
                    Revocation::Revoked => "the refresh token is revoked at the provider".into(),
                    Revocation::NoRefreshToken => "there was no refresh token".into(),
                    Revocation::Unsupported => "the provider offers no revocation: the refresh \
                                                token stays valid there until it expires"
                        .into(),
                    Revocation::Failed(reason) => {
                        failed = true;
                        format!(
                            "revoking the refresh token failed ({reason}): it stays valid at the \
                             provider until it expires"
                        )
                    }
                };
                format!("tokens forgotten; {revoked}")
            }
            Err(e) => {
                failed = true;
                format!("failed: {e}")
            }
        };
        eprintln!("profile '{}': {outcome}", profile.name);
    }
    if all {
        match remove_other_token_files(&settings.cache_dir, &kept_files) {
            Ok(0) => {}
            Ok(removed) => eprintln!(
                "removed {removed} other token file(s) from {}",
                settings.cache_dir.display()
            ),
            Err(e) => {
                failed = true;
                eprintln!("cannot clear {}: {e}", settings.cache_dir.display());
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Removes the token files (and their locks) in `dir` other than `kept` (already handled);
/// returns how many token files went.
fn remove_other_token_files(dir: &Path, kept: &[std::path::PathBuf]) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let is_tokens = name.ends_with("_tokens.json");
        if !(is_tokens || name.ends_with("_tokens.lock")) || kept.contains(&path) {
            continue;
        }
        std::fs::remove_file(&path)?;
        removed += usize::from(is_tokens);
    }
    Ok(removed)
}

/// One backend's line of `status`.
#[derive(Debug, Serialize)]
struct BackendStatus {
    backend: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'static str>,
    /// `none`, `valid`, `expired`, `refreshable` (expired, with a refresh token), `not needed`.
    token: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    answers: bool,
    check: String,
}

/// `authful-mcp-proxy status [--json]`.
pub async fn status(settings: Settings, json: bool) -> ExitCode {
    let managers = managers(&settings, Arc::new(SystemBrowser), false);
    let http = clients::backend();
    let mut lines = Vec::new();
    for backend in &settings.backends {
        let mut line = BackendStatus {
            backend: backend.name.clone(),
            url: backend.url.to_string(),
            profile: None,
            issuer: None,
            flow: None,
            token: "not needed",
            expires_at: None,
            scopes: None,
            resource: None,
            answers: false,
            check: String::new(),
        };
        let manager = backend.profile.as_ref().and_then(|p| managers.get(&p.name));
        let mut token = None;
        if let (Some(profile), Some(manager)) = (&backend.profile, manager) {
            line.profile = Some(profile.name.clone());
            line.flow = Some(profile.flow.as_str());
            let stored = manager.stored();
            line.issuer = stored
                .as_ref()
                .map(|t| t.issuer.clone())
                .or_else(|| profile.issuer_url.clone());
            let access = manager.access(&backend.name);
            let resource = access.resource();
            line.resource = resource.clone();
            let held = stored.as_ref().and_then(|t| t.access(resource.as_deref()));
            line.token = match (
                &held,
                stored.as_ref().and_then(|t| t.refresh_token.as_ref()),
            ) {
                (None, _) => "none",
                (Some(a), _) if a.seconds_left(unix_now()).is_none_or(|s| s > 0) => "valid",
                (Some(_), Some(_)) => "refreshable",
                (Some(_), None) => "expired",
            };
            if let Some(held) = &held {
                line.expires_at = held.expires_at;
                line.scopes = held.scope.clone();
            }
            match access.token().await {
                Ok(t) => token = Some(t),
                Err(e) => line.check = format!("not checked: {e}"),
            }
        }
        if backend.profile.is_none() || token.is_some() {
            match check(&http, backend, token.as_ref().map(|t| t.expose())).await {
                Ok(server) => {
                    line.answers = true;
                    line.check = format!("answers ({server})");
                }
                Err(e) => line.check = e,
            }
        }
        lines.push(line);
    }
    let all_answer = lines.iter().all(|l| l.answers);
    if json {
        let text = serde_json::to_string_pretty(&json!({ "backends": lines })).unwrap_or_default();
        println!("{text}");
    } else {
        for line in &lines {
            println!("{}  {}", line.backend, line.url);
            if let Some(profile) = &line.profile {
                println!(
                    "  profile  {profile} ({} flow), issuer {}",
                    line.flow.unwrap_or_default(),
                    line.issuer.as_deref().unwrap_or("not known yet")
                );
                let detail = match (line.token, line.expires_at) {
                    ("valid", Some(_)) => {
                        let access = AccessToken {
                            token: crate::secret::Secret::new(""),
                            expires_at: line.expires_at,
                            scope: None,
                        };
                        validity(&access)
                    }
                    (state, _) => state.to_owned(),
                };
                println!("  token    {detail}");
                if let Some(scopes) = &line.scopes {
                    println!("  scopes   {scopes}");
                }
                if let Some(resource) = &line.resource {
                    println!("  resource {resource}");
                }
            }
            println!("  backend  {}", line.check);
        }
    }
    if all_answer {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Asks `backend` to start an MCP session with `token`, and ends the session it opens:
/// `Ok(server name)` when it answers, or what it said.
async fn check(
    http: &reqwest::Client,
    backend: &Backend,
    token: Option<&str>,
) -> Result<String, String> {
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE,
            "capabilities": {},
            "clientInfo": {"name": "authful-mcp-proxy status", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let mut request = http
        .post(backend.url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/json, text/event-stream",
        )
        .json(&initialize)
        .timeout(std::time::Duration::from_secs(15));
    for (name, value) in &backend.headers {
        request = request.header(name.as_str(), value.expose());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("unreachable: {}", crate::error_text::chain(&e)))?;
    let status = response.status();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(Challenge::parse);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        let why = challenge
            .as_ref()
            .and_then(Challenge::describe)
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(format!("refuses: HTTP {}{why}", status.as_u16()));
    }
    // The answer is JSON or one SSE event; the server's name is all status needs.
    let body = response.text().await.unwrap_or_default();
    let name = body
        .lines()
        .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            v["result"]["serverInfo"]["name"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "an MCP server".into());
    if let Some(session) = session {
        let mut close = http
            .delete(backend.url.clone())
            .header("mcp-session-id", session);
        if let Some(token) = token {
            close = close.bearer_auth(token);
        }
        let _ = close.send().await;
    }
    Ok(name)
}
