//! What a token file holds: the grant of one profile ([`StoredTokens`]: its refresh token, the
//! resources and scopes it covers, what the backends' metadata said) and the access tokens it
//! gave ([`AccessToken`]), one unbound and one per resource indicator (RFC 8707), so that each
//! backend receives only its own. Files of earlier versions, which hold one unbound token,
//! stay readable.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// An access token, when it expires and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessToken {
    /// Bearer token sent to backends.
    #[serde(rename = "access_token")]
    pub token: Secret,
    /// When it expires, in seconds since the Unix epoch; unknown when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Scopes granted, as the provider reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl AccessToken {
    /// Seconds of validity left, `None` when the expiry is unknown.
    pub fn seconds_left(&self, now: u64) -> Option<i64> {
        self.expires_at
            .map(|at| i64::try_from(at).unwrap_or(i64::MAX) - i64::try_from(now).unwrap_or(0))
    }
}

/// What a profile's logins and refreshes leave behind: one grant (its refresh token) and the
/// access tokens it gave, one per resource indicator (RFC 8707).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// Issuer the tokens come from.
    pub issuer: String,
    /// Client they were issued to.
    pub client_id: String,
    /// The access token bound to no resource (the only kind files of earlier versions hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// The ID token of the latest sign-in or refresh that carried one: the person's identity,
    /// exchanged for identity assertion grants by cross-app access profiles (SEP-990), and
    /// sent nowhere but to the provider that issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
    /// Token used to get the next access token without a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// When `access_token` expires, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Scopes granted with `access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Access tokens bound to a resource indicator, by resource: each backend receives only
    /// its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bound: BTreeMap<String, AccessToken>,
    /// The resource indicators the grant covers (asked for at login): a refresh may ask for
    /// any of these, where providers refuse others (`invalid_target`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The scopes the grant's sign-in asked for: the configured ones, and those of the backend
    /// whose step-up it was, if it was one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The scopes backends asked for beyond the configured ones (a step-up), by the resource
    /// their tokens are bound to (`""`: no resource): only that resource's tokens carry them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_up: BTreeMap<String, Vec<String>>,
    /// What each backend's protected resource metadata says its resource is (RFC 9728), by
    /// backend URL; `null` for a backend that publishes none. Read once, not at every start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub discovered: BTreeMap<String, Option<String>>,
}

impl StoredTokens {
    /// Nothing yet, from `issuer` for `client_id`.
    pub fn new(issuer: &str, client_id: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            access_token: None,
            id_token: None,
            refresh_token: None,
            expires_at: None,
            scope: None,
            bound: BTreeMap::new(),
            resources: Vec::new(),
            scopes: Vec::new(),
            step_up: BTreeMap::new(),
            discovered: BTreeMap::new(),
        }
    }

    /// The access token for `resource` (none: the unbound one).
    pub fn access(&self, resource: Option<&str>) -> Option<AccessToken> {
        match resource {
            Some(resource) => self.bound.get(resource).cloned(),
            None => self.access_token.clone().map(|token| AccessToken {
                token,
                expires_at: self.expires_at,
                scope: self.scope.clone(),
            }),
        }
    }

    /// Keeps `access` as the token for `resource`.
    pub fn set_access(&mut self, resource: Option<&str>, access: AccessToken) {
        match resource {
            Some(resource) => {
                self.bound.insert(resource.to_owned(), access);
            }
            None => {
                self.access_token = Some(access.token);
                self.expires_at = access.expires_at;
                self.scope = access.scope;
            }
        }
    }

    /// The scopes a backend bound to `resource` asked for beyond the configured ones.
    pub fn step_up_scopes(&self, resource: Option<&str>) -> &[String] {
        self.step_up
            .get(resource.unwrap_or_default())
            .map_or(&[], Vec::as_slice)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files of earlier versions hold one unbound token; they stay readable, and tokens bound
    /// to resources are kept apart from it.
    #[test]
    fn tokens_are_kept_per_resource_and_old_files_stay_readable() {
        let old = r#"{"issuer":"https://auth.example.com","client_id":"cid","access_token":"at","refresh_token":"rt","expires_at":1900000000}"#;
        let mut tokens: StoredTokens = serde_json::from_str(old).unwrap();
        assert_eq!(
            tokens,
            StoredTokens {
                access_token: Some(Secret::new("at")),
                refresh_token: Some(Secret::new("rt")),
                expires_at: Some(1_900_000_000),
                ..StoredTokens::new("https://auth.example.com", "cid")
            }
        );
        let bound = AccessToken {
            token: Secret::new("for-a"),
            expires_at: Some(1_900_000_100),
            scope: Some("mcp:tools".into()),
        };
        tokens.set_access(Some("https://a.example/mcp"), bound.clone());
        assert_eq!(tokens.access(Some("https://a.example/mcp")), Some(bound));
        assert_eq!(tokens.access(Some("https://b.example/mcp")), None);
        assert_eq!(tokens.access(None).unwrap().token, Secret::new("at"));
        let again: StoredTokens =
            serde_json::from_slice(&serde_json::to_vec(&tokens).unwrap()).unwrap();
        assert_eq!(again, tokens);
    }
}
