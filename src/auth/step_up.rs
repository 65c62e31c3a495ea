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
//! - for scopes in the backend's published `scopes_supported`, when it publishes them.
//!
//! The scopes a backend asked for are kept for that backend's resource alone: the other
//! backends' tokens are still asked for with the configured scopes (a refresh may narrow the
//! scope of its grant, RFC 6749 §6), so no backend receives a token wider than it needs.

use std::time::Duration;

use super::AuthError;
use crate::error_text::duration_words;

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

/// `scopes` with `more` added, each once, in order.
pub fn union(scopes: &[String], more: &[String]) -> Vec<String> {
    let mut all = scopes.to_vec();
    for scope in more {
        if !all.contains(scope) {
            all.push(scope.clone());
        }
    }
    all
}

/// The `scope` a refresh asks for, when the grant holds more than a backend needs: `needed`,
/// within the grant. `None` asks for the grant's own scopes, which is what it needs then.
pub fn narrowed(grant: &[String], needed: &[String]) -> Option<Vec<String>> {
    let wider = grant.iter().any(|s| !needed.contains(s));
    wider.then(|| {
        needed
            .iter()
            .filter(|s| grant.contains(s))
            .cloned()
            .collect()
    })
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
    fn a_refresh_narrows_a_wider_grant_to_what_the_backend_needs() {
        let grant = words("openid profile mcp:admin");
        assert_eq!(
            narrowed(&grant, &words("openid profile")),
            Some(words("openid profile"))
        );
        assert_eq!(narrowed(&grant, &grant), None);
        assert_eq!(
            narrowed(&words("openid"), &words("openid mcp:admin")),
            None,
            "never more than the grant"
        );
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
