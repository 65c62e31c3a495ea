//! `authful-mcp-proxy logout [BACKEND...] [--all]`: forgetting the cached tokens.
//!
//! Each profile of the backends named (all by default) has its token file deleted and its
//! refresh token revoked at the provider when the provider offers revocation (RFC 7009), which
//! ends the whole grant there; when it offers none, the output says that the refresh token
//! stays valid there until it expires. `--all` also removes the token files of profiles no
//! longer in the configuration.

use std::path::{Path, PathBuf};

use crate::{
    auth::{LoggedOut, Revocation},
    config::Settings,
    error_text::printable,
};

use super::{Outcome, selection::prepare};

/// Logs out of the profiles of the backends `names` names (all when empty), and with `all`
/// removes other profiles' token files. Exit status: 0 done, 1 a revocation or deletion
/// failed, 2 for a name the configuration does not have.
pub async fn run(settings: Settings, names: &[String], all: bool) -> Outcome {
    let (selected, managers) = match prepare(&settings, names) {
        Ok(prepared) => prepared,
        Err(outcome) => return outcome,
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
        eprintln!("profile '{}': {}", profile.name, printable(&outcome));
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
        Outcome::Failed
    } else {
        Outcome::Success
    }
}

/// Removes the token files (and their locks) in `dir` other than `kept` (already handled);
/// returns how many token files went.
fn remove_other_token_files(dir: &Path, kept: &[PathBuf]) -> std::io::Result<usize> {
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
