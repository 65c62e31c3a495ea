//! When a backend may make the proxy sign in again for more scopes (RFC 6750
//! `insufficient_scope`, MCP's scope step-up), and which scopes each backend's tokens carry.
//!
//! A backend is not trusted. Left alone, one that answers `insufficient_scope` with a new scope
//! at each call would open a browser tab per call — even while the client sits idle, through
//! the lists the gateway reads again after `list_changed` — and pile the scopes onto every
//! backend of the profile. So a step-up sign-in happens only:
//!
//! - on a `403` whose challenge says `error="insufficient_scope"` (not on any other `403`);
//! - for a request the client made, never for one the proxy makes on its own: nobody is
//!   asked to sign in while nobody is asking for anything;
//! - at most once per backend per `login_timeout`;
//! - for scopes in the backend's published `scopes_supported`, when it publishes them (unless
//!   the profile's server says the scopes: `auth: oauth`, whose tokens are its alone).
//!
//! The scopes a backend asked for are kept for that backend's resource alone: the other
//! backends' tokens are still asked for with the configured scopes (a refresh may narrow the
//! scope of its grant, RFC 6749 §6), so no backend receives a token wider than it needs.

use std::time::Duration;

use super::{
    AuthError,
    cache::StoredTokens,
    scopes::union,
    target::TargetId,
    tokens::{TokenManager, newer},
};
use crate::{error_text::duration_words, secret::Secret};

/// What a backend's `insufficient_scope` asks for, and what the proxy knows around it.
pub struct Ask<'a> {
    /// The scopes the challenge names.
    pub scopes: &'a [String],
    /// Whether the client made the request (not the proxy on its own).
    pub from_client: bool,
    /// The backend's published `scopes_supported`; empty when it publishes none.
    pub published: &'a [String],
    /// How long ago this backend last made the proxy sign in for scopes.
    pub since_last: Option<Duration>,
    /// The profile's `login_timeout`: the least time between two such sign-ins.
    pub login_timeout: Duration,
}

impl Ask<'_> {
    /// Why no sign-in may happen for it, if that is so.
    pub fn refusal(&self) -> Option<String> {
        if !self.from_client {
            return Some(
                "the request was the proxy's own (its handshake, or a list read again in the \
                 background), and a sign-in only ever starts for a request you make; if the \
                 backend needs them for everything, add them to the profile's `scopes`"
                    .to_owned(),
            );
        }
        let outside: Vec<&str> = self
            .scopes
            .iter()
            .filter(|s| !self.published.is_empty() && !self.published.contains(s))
            .map(String::as_str)
            .collect();
        if !outside.is_empty() {
            return Some(format!(
                "{} {} not among the scopes its metadata publishes ({}), so the proxy does not \
                 ask the provider for {}",
                outside.join(" "),
                if outside.len() == 1 { "is" } else { "are" },
                self.published.join(" "),
                if outside.len() == 1 { "it" } else { "them" },
            ));
        }
        if let Some(ago) = self.since_last
            && ago < self.login_timeout
        {
            return Some(format!(
                "it made the proxy sign in for scopes {} ago, and gets at most one such sign-in \
                 per {} (login_timeout); try again after that, or add the scopes to the \
                 profile's `scopes`",
                duration_words(ago),
                duration_words(self.login_timeout)
            ));
        }
        None
    }
}

impl TokenManager {
    /// The backend of `target` needs `scopes` that `rejected` lacks. If it may have them (see
    /// [`step_up`](super::step_up)): a token of its resource that asks for them too — by a
    /// refresh when the grant holds them, else by a new sign-in.
    pub(super) async fn step_up(
        &self,
        target: TargetId,
        rejected: &Secret,
        scopes: &[String],
        from_client: bool,
    ) -> Result<Secret, AuthError> {
        let t = &self.targets[target];
        let mut current = self.current.lock().await;
        let resource = self.resource(target, current.as_mut()).await?;
        if let Some(newer) = newer(current.as_ref(), resource.as_deref(), rejected) {
            // Another request stepped up meanwhile.
            return Ok(newer);
        }
        let needed = self.scopes_for(current.as_ref(), resource.as_deref());
        let grant = current
            .as_ref()
            .map(|t| t.scopes.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.profile.scopes.clone());
        if scopes
            .iter()
            .all(|s| needed.contains(s) && grant.contains(s))
        {
            // The token was asked for with them: another sign-in would ask the same.
            let granted = current
                .as_ref()
                .and_then(|t| t.access(resource.as_deref()))
                .and_then(|a| a.scope);
            return Err(still_refused(
                &t.backend,
                scopes,
                granted.as_deref(),
                &self.issuer_label(),
            ));
        }
        // A server that says its own scopes may ask for any: the token is for it alone.
        let published = match self.profile.server_scopes {
            true => Vec::new(),
            false => self.published_scopes(target, current.as_mut()).await?,
        };
        let ask = Ask {
            scopes,
            from_client,
            published: &published,
            since_last: t.since_step_up(),
            login_timeout: self.profile.login_timeout,
        };
        if let Some(reason) = ask.refusal() {
            tracing::warn!(
                "Backend '{}' asks for the scopes {}; no new sign-in: {reason}",
                t.backend,
                scopes.join(" ")
            );
            return Err(AuthError::StepUpRefused {
                backend: t.backend.clone(),
                scopes: scopes.join(" "),
                reason,
            });
        }
        t.stepped_up();
        let wanted = union(&needed, scopes);
        tracing::info!(
            "Backend '{}' needs the scopes {}; asking profile '{}' for a token of its resource \
             with {}",
            t.backend,
            scopes.join(" "),
            self.profile.name,
            wanted.join(" ")
        );
        let _renewing = self.cache.lock(self.lock_wait()).await;
        let provider = self.provider(current.as_mut()).await?;
        let refreshed = match wanted.iter().all(|s| grant.contains(s)) {
            true => {
                self.refresh(provider, current.as_ref(), resource.as_deref(), &wanted)
                    .await?
            }
            false => None,
        };
        let (granted, grant_scopes) = match refreshed {
            Some(granted) => (granted, grant),
            None => {
                let granted = self
                    .new_grant(provider, &mut current, target, &wanted)
                    .await?;
                (granted, wanted.clone())
            }
        };
        let extra: Vec<String> = wanted
            .iter()
            .filter(|s| !self.profile.scopes.contains(s))
            .cloned()
            .collect();
        let token = self.keep(
            &mut current,
            target,
            resource.as_deref(),
            granted,
            &grant_scopes,
            provider.issuer(),
        );
        if let Some(tokens) = current.as_mut() {
            tokens
                .step_up
                .insert(resource.clone().unwrap_or_default(), extra);
            self.save(tokens);
        }
        Ok(token)
    }

    /// Why the backend of `target` still refuses `token` for want of `scopes`.
    pub(super) async fn scope_refusal(
        &self,
        target: TargetId,
        token: &Secret,
        scopes: &[String],
    ) -> AuthError {
        let current = self.current.lock().await;
        let resource = self.known_resource(target, current.as_ref());
        let granted = current
            .as_ref()
            .and_then(|t| t.access(resource.as_deref()))
            .filter(|a| a.token == *token)
            .and_then(|a| a.scope);
        still_refused(
            &self.targets[target].backend,
            scopes,
            granted.as_deref(),
            &self.issuer_label(),
        )
    }

    /// The scopes the backend publishes (RFC 9728 `scopes_supported`), read afresh: a step-up
    /// is rare, and what it publishes now is what it stands by. Empty when it publishes none.
    pub(super) async fn published_scopes(
        &self,
        target: TargetId,
        tokens: Option<&mut StoredTokens>,
    ) -> Result<Vec<String>, AuthError> {
        if self.targets[target].url.is_none() {
            return Ok(Vec::new());
        }
        let _ = self.fetch(target, None).await;
        let pin = self.pin(tokens.as_deref());
        let metadata = self.judge(
            target,
            self.targets[target].known().flatten(),
            pin.as_deref(),
        )?;
        Ok(metadata.map(|m| m.scopes_supported).unwrap_or_default())
    }
}

/// Why a backend still refuses a token for want of `scopes`, whose sign-in asked for them: the
/// provider did not grant them (its `granted` scope lacks one), or the backend refuses a token
/// that has them. A token response without `scope` was granted what it asked (RFC 6749 §5.1).
pub fn still_refused(
    backend: &str,
    scopes: &[String],
    granted: Option<&str>,
    issuer: &str,
) -> AuthError {
    let holds = granted.is_none_or(|granted| {
        let granted: Vec<&str> = granted.split_whitespace().collect();
        scopes.iter().all(|s| granted.contains(&s.as_str()))
    });
    if holds {
        AuthError::ScopeRefusedByBackend {
            backend: backend.to_owned(),
            scopes: scopes.join(" "),
            issuer: issuer.to_owned(),
        }
    } else {
        AuthError::ScopeNotGranted {
            backend: backend.to_owned(),
            scopes: scopes.join(" "),
            issuer: issuer.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn ask<'a>(scopes: &'a [String], published: &'a [String]) -> Ask<'a> {
        Ask {
            scopes,
            from_client: true,
            published,
            since_last: None,
            login_timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_step_up_needs_the_client_a_published_scope_and_time_since_the_last() {
        let scopes = words("mcp:admin");
        let published = words("mcp:tools mcp:admin");
        assert_eq!(ask(&scopes, &published).refusal(), None);
        assert_eq!(ask(&scopes, &[]).refusal(), None, "nothing published");
        let background = Ask {
            from_client: false,
            ..ask(&scopes, &published)
        };
        assert!(background.refusal().unwrap().contains("proxy's own"));
        let unknown = words("mcp:admin evil:1");
        let refusal = ask(&unknown, &published).refusal().unwrap();
        assert!(refusal.starts_with("evil:1 is not among"), "{refusal}");
        let soon = Ask {
            since_last: Some(Duration::from_secs(20)),
            ..ask(&scopes, &published)
        };
        let refusal = soon.refusal().unwrap();
        assert!(
            refusal.contains("20 seconds ago") && refusal.contains("per 5 minutes"),
            "{refusal}"
        );
        let later = Ask {
            since_last: Some(Duration::from_secs(301)),
            ..ask(&scopes, &published)
        };
        assert_eq!(later.refusal(), None);
    }

    #[test]
    fn the_error_tells_a_withheld_scope_from_a_refused_token() {
        let scopes = words("mcp:admin");
        let withheld = still_refused("b", &scopes, Some("openid profile"), "https://as");
        assert!(matches!(withheld, AuthError::ScopeNotGranted { .. }));
        let refused = still_refused("b", &scopes, Some("openid mcp:admin"), "https://as");
        assert!(matches!(refused, AuthError::ScopeRefusedByBackend { .. }));
        let unsaid = still_refused("b", &scopes, None, "https://as");
        assert!(matches!(unsaid, AuthError::ScopeRefusedByBackend { .. }));
    }
}
