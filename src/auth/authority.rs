//! Which authorization server a profile's credentials belong to.
//!
//! The rule: **credentials belong to an authorization server the user or the configuration
//! chose, never to a backend.** A client secret, a signed client assertion, a refresh token and
//! the browser's sign-in go to that server and no other. A backend may suggest one (its RFC
//! 9728 metadata names the servers it trusts); only the configuration, or the person at the
//! first sign-in, decides:
//!
//! - a profile with `issuer_url` signs in there, always; a backend naming another server is not
//!   listened to (its metadata is not used). A profile with a client secret or key must name
//!   one: [`resolve`](crate::config::resolve) refuses it otherwise.
//! - a profile without one (a public client) takes the server its backends name — every one of
//!   them must name the same — and the sign-in prompt says which backends named it, so the
//!   person who signs in is the one who decides. That server is then **pinned**: stored with
//!   the tokens, it serves every refresh, revocation and later sign-in, and a backend that later
//!   names another is an error that names both, never a silent switch (like an SSH host key
//!   that changed).

use super::{AuthError, resource::MetadataError};

/// The server a profile signs in at, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Its issuer identifier.
    pub issuer: String,
    /// Who chose it.
    pub source: Source,
}

/// Who chose a profile's authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The configuration (`issuer_url`).
    Configured,
    /// The first sign-in of a profile without one; stored with its tokens.
    Pinned,
    /// These backends name it, and no sign-in has happened there yet.
    NamedBy(Vec<String>),
}

impl Authority {
    /// What the sign-in prompt says about where the server comes from, if not from the
    /// configuration: the person signing in decides whether to trust it.
    pub fn provenance(&self) -> Option<String> {
        match &self.source {
            Source::Configured => None,
            Source::Pinned => Some("the server this profile first signed in at".to_owned()),
            Source::NamedBy(backends) => Some(format!(
                "the server that {} {} {} (the profile names no issuer_url); sign in only if \
                 you trust it",
                plural("backend", backends.len()),
                quoted(backends),
                if backends.len() == 1 { "names" } else { "name" }
            )),
        }
    }
}

/// What one backend says about where to sign in: the authorization servers its metadata names
/// (none when it publishes no metadata), or why that could not be read.
pub struct Suggestion<'a> {
    /// The backend.
    pub backend: &'a str,
    /// The servers it names.
    pub servers: Result<Vec<String>, MetadataError>,
}

/// Two issuer identifiers for the same server: equal but for a trailing `/`.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The server every backend of an issuer-less `profile` names: the first one the first backend
/// lists that every other backend lists too. An error when one could not be read now (said
/// which, to try again), when none names a server, or when they do not agree (naming each
/// backend and what it names).
pub fn agree(profile: &str, suggestions: &[Suggestion<'_>]) -> Result<Authority, AuthError> {
    let mut named: Vec<(&str, &[String])> = Vec::new();
    for suggestion in suggestions {
        match &suggestion.servers {
            Ok(servers) => named.push((suggestion.backend, servers)),
            Err(problem) => {
                return Err(AuthError::MetadataUnavailable {
                    profile: profile.to_owned(),
                    backend: suggestion.backend.to_owned(),
                    reason: problem.to_string(),
                });
            }
        }
    }
    if named.iter().all(|(_, servers)| servers.is_empty()) {
        return Err(AuthError::NoIssuer {
            profile: profile.to_owned(),
            backends: quoted(&named.iter().map(|(b, _)| *b).collect::<Vec<_>>()),
        });
    }
    let shared = named.iter().find_map(|(_, servers)| {
        servers.iter().find(|candidate| {
            named
                .iter()
                .all(|(_, theirs)| theirs.iter().any(|s| same_issuer(s, candidate)))
        })
    });
    match shared {
        Some(issuer) => Ok(Authority {
            issuer: issuer.clone(),
            source: Source::NamedBy(named.iter().map(|(b, _)| (*b).to_owned()).collect()),
        }),
        None => Err(AuthError::IssuersDisagree {
            profile: profile.to_owned(),
            named: named
                .iter()
                .map(|(backend, servers)| match servers.is_empty() {
                    true => format!("'{backend}' names none"),
                    false => format!("'{backend}' names {}", servers.join(", ")),
                })
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// Whether what `backend` names now fits the server the profile is pinned to: a backend that
/// names servers, none of them the pinned one, is an error naming both.
pub fn check_pin(
    profile: &str,
    backend: &str,
    servers: &[String],
    pinned: &str,
    cache: &std::path::Path,
) -> Result<(), AuthError> {
    if servers.is_empty() || servers.iter().any(|s| same_issuer(s, pinned)) {
        return Ok(());
    }
    Err(AuthError::IssuerChanged {
        profile: profile.to_owned(),
        backend: backend.to_owned(),
        named: servers.join(", "),
        pinned: pinned.to_owned(),
        cache: cache.display().to_string(),
    })
}

fn plural(word: &str, count: usize) -> String {
    match count {
        1 => word.to_owned(),
        _ => format!("{word}s"),
    }
}

/// `'a', 'b'`.
fn quoted(names: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{}'", n.as_ref())).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said<'a>(backend: &'a str, servers: &[&str]) -> Suggestion<'a> {
        Suggestion {
            backend,
            servers: Ok(servers.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn backends_that_agree_name_the_server_and_the_prompt_names_them() {
        let authority = agree(
            "p",
            &[
                said("a", &["https://as.example/"]),
                said("b", &["https://other.example", "https://as.example"]),
            ],
        )
        .unwrap();
        assert_eq!(authority.issuer, "https://as.example/");
        let provenance = authority.provenance().unwrap();
        assert!(
            provenance.contains("backends 'a', 'b' name"),
            "{provenance}"
        );
    }

    #[test]
    fn backends_that_disagree_are_an_error_naming_each() {
        let error = agree(
            "p",
            &[
                said("good", &["https://as.example"]),
                said("rogue", &["https://rogue.example"]),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("'good' names https://as.example")
                && error.contains("'rogue' names https://rogue.example"),
            "{error}"
        );
        // A backend that names none does not let another decide for it.
        let error = agree(
            "p",
            &[
                said("silent", &[]),
                said("rogue", &["https://rogue.example"]),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("'silent' names none"), "{error}");
    }

    #[test]
    fn a_backend_that_cannot_be_read_is_not_taken_for_one_that_names_none() {
        let error = agree(
            "p",
            &[
                said("a", &["https://as.example"]),
                Suggestion {
                    backend: "b",
                    servers: Err(MetadataError::Unavailable("HTTP 503".into())),
                },
            ],
        )
        .unwrap_err();
        assert!(
            matches!(&error, AuthError::MetadataUnavailable { backend, .. } if backend == "b"),
            "{error}"
        );
        assert!(matches!(
            agree("p", &[said("a", &[])]),
            Err(AuthError::NoIssuer { .. })
        ));
    }

    #[test]
    fn a_pinned_server_is_kept_and_another_is_an_error_naming_both() {
        let cache = std::path::Path::new("/c/tokens.json");
        assert!(check_pin("p", "a", &[], "https://as.example", cache).is_ok());
        assert!(
            check_pin(
                "p",
                "a",
                &["https://as.example/".into()],
                "https://as.example",
                cache
            )
            .is_ok()
        );
        let error = check_pin(
            "p",
            "a",
            &["https://rogue.example".into()],
            "https://as.example",
            cache,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("https://rogue.example")
                && error.contains("https://as.example")
                && error.contains("logout"),
            "{error}"
        );
    }
}
