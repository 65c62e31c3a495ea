//! Cross-app access (SEP-990, enterprise-managed authorization): a profile whose tokens come
//! from the person's identity at the company identity provider, with no sign-in at its own
//! server.
//!
//! A new grant is two requests, no browser:
//!
//! 1. at the company identity provider, the person's ID token is exchanged (RFC 8693) for an
//!    identity assertion grant (an ID-JAG) naming this profile's authorization server as its
//!    audience and the backend's resource;
//! 2. at this profile's server, that grant is traded for an access token (RFC 7523 JWT bearer
//!    grant), with the profile's client credentials.
//!
//! The ID token comes from the sign-in of the identity provider's own profile — its tokens
//! on disk, refreshed (or signed in again) when the ID token has expired — or from a file an
//! SSO agent keeps (owner-only, read at each exchange). It goes only back to the provider that
//! issued it; the grant goes only to the server it names. Such a profile has no refresh token:
//! when its access token expires, the exchange runs again.

use std::{path::Path, sync::Arc};

use base64::Engine;

use super::{
    AuthError,
    cache::unix_now,
    client_auth::read_private_credential,
    oidc::{Granted, Provider},
    registration::Registrations,
    target::TargetId,
    tokens::TokenManager,
};
use crate::{config::IdentityAssertion, secret::Secret};

/// An ID token with less than this many seconds left is renewed before it is exchanged.
const ID_TOKEN_MARGIN_SECS: u64 = 30;
/// The largest ID token file read.
const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;

/// The company identity provider of a cross-app access profile, once found.
pub(super) struct Idp {
    provider: Provider,
    /// The manager of its profile's sign-in, when that provides the ID token.
    manager: Option<Arc<TokenManager>>,
}

impl TokenManager {
    /// A new grant by cross-app access: the person's ID token exchanged at the identity
    /// provider for a grant to `provider`, traded there for a token with `scopes`, bound to
    /// `resource`.
    pub(super) async fn cross_app_grant(
        &self,
        assertion: &IdentityAssertion,
        provider: &Provider,
        scopes: &[String],
        resource: Option<&str>,
    ) -> Result<Granted, AuthError> {
        let idp = self.idp(assertion).await?;
        let id_token = match (&assertion.id_token_file, &idp.manager) {
            (Some(file), _) => read_id_token(file)?,
            // Boxed: the identity provider's manager renews through the same code as this one.
            (None, Some(manager)) => Box::pin(fresh_id_token(manager)).await?,
            (None, None) => {
                return Err(AuthError::IdentityAssertion {
                    issuer: idp.provider.issuer().to_owned(),
                    reason: "no ID token: name the identity provider's profile or an \
                             id_token_file"
                        .into(),
                });
            }
        };
        let grant = idp
            .provider
            .identity_assertion(&id_token, provider.issuer(), resource, scopes)
            .await?;
        let granted = provider.jwt_bearer(&grant, scopes, resource).await?;
        tracing::info!(
            "Profile '{}': a token from {} by cross-app access (an identity assertion of {})",
            self.profile.name,
            provider.issuer(),
            idp.provider.issuer()
        );
        Ok(granted)
    }

    /// The identity provider of `assertion`, discovered once.
    async fn idp(&self, assertion: &IdentityAssertion) -> Result<&Idp, AuthError> {
        self.idp
            .get_or_try_init(|| async {
                let profile = Arc::clone(&assertion.idp);
                let issuer = profile.issuer_url.clone().unwrap_or_default();
                let provider = Provider::discover(
                    Arc::clone(&profile),
                    &issuer,
                    self.http.clone(),
                    Registrations::new(self.cache.dir()),
                )
                .await?;
                let manager = assertion.id_token_file.is_none().then(|| {
                    Arc::new(TokenManager::new(
                        profile,
                        self.cache.dir(),
                        self.http.clone(),
                        Arc::clone(&self.browser),
                        Arc::clone(&self.login_gate),
                    ))
                });
                Ok(Idp { provider, manager })
            })
            .await
    }
}

/// The ID token of `manager`'s profile with time left: from its tokens, refreshed (or signed
/// in again) when it has expired.
async fn fresh_id_token(manager: &TokenManager) -> Result<Secret, AuthError> {
    let access = manager.access_token().await?;
    if let Some(id_token) = usable_id_token(manager) {
        return Ok(id_token);
    }
    manager
        .renew_rejected(TargetId::FIRST, &access, None)
        .await?;
    usable_id_token(manager).ok_or_else(|| AuthError::IdentityAssertion {
        issuer: manager.profile().issuer_label().to_owned(),
        reason: format!(
            "profile '{}' got no ID token with its tokens; its scopes must include openid",
            manager.profile().name
        ),
    })
}

/// The ID token on disk of `manager`'s profile, if it has time left.
fn usable_id_token(manager: &TokenManager) -> Option<Secret> {
    let id_token = manager.stored()?.id_token?;
    let left = expiry(id_token.expose())?.saturating_sub(unix_now());
    (left > ID_TOKEN_MARGIN_SECS).then_some(id_token)
}

/// The `exp` of a JWT, read without checking its signature: only to know when to renew it
/// (the provider that issued it checks it).
fn expiry(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_u64()
}

/// The ID token in `path`: the user's file alone, one JWT.
fn read_id_token(path: &Path) -> Result<Secret, AuthError> {
    let unusable = |reason: String| AuthError::IdentityAssertion {
        issuer: String::from("(the identity provider)"),
        reason: format!("cannot read the ID token file {}: {reason}", path.display()),
    };
    let bytes = read_private_credential(
        path,
        "the ID token file",
        |problem| AuthError::IdentityAssertion {
            issuer: String::from("(the identity provider)"),
            reason: problem,
        },
        unusable,
    )?;
    if bytes.len() > MAX_ID_TOKEN_BYTES {
        return Err(unusable(format!("over {MAX_ID_TOKEN_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| unusable("not text".into()))?;
    let token = text.trim();
    if token.split('.').count() != 3 || token.chars().any(|c| c.is_whitespace()) {
        return Err(unusable("not one JWT".into()));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_of_a_jwt_is_read_from_its_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":1234}"#);
        assert_eq!(expiry(&format!("h.{payload}.s")), Some(1234));
        assert_eq!(expiry("not a jwt"), None);
    }
}
