//! `authful-mcp-proxy login [BACKEND...]`: signing in ahead of time, from a terminal.
//!
//! One sign-in per profile of the backends named (all by default), asking for the resources of
//! every backend of the profile, so that a desktop client's first start finds tokens waiting —
//! and its start-up limits never meet a person typing a password. Progress goes to stderr.

use crate::{config::Settings, error_text::printable};

use super::{Outcome, selection::prepare};

/// Signs in for the backends `names` names (all when empty). Exit status: 0 when every profile
/// asked for holds a usable token, 1 when a sign-in failed, 2 for a name the configuration
/// does not have.
pub async fn run(settings: Settings, names: &[String]) -> Outcome {
    let (selected, managers) = match prepare(&settings, names) {
        Ok(prepared) => prepared,
        Err(outcome) => return outcome,
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
        let signed_in = match manager.access(&backend.name) {
            Ok(access) => access.token().await,
            Err(e) => Err(e),
        };
        match signed_in {
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
                // The error may quote the provider or the backend.
                let e = printable(&e.to_string());
                eprintln!("backend '{}': sign-in failed: {e}", backend.name);
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} backend(s) have no usable token");
        Outcome::Failed
    } else {
        Outcome::Success
    }
}
