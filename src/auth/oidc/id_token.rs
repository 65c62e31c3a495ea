//! ID token validation: signature, issuer, audience, and the nonce of the login that asked for
//! it (the device grant sends none).
//!
//! The provider's keys are read at the first ID token, not at discovery (a provider that
//! issues none need not publish keys that work). An ID token signed by a key the cached key
//! set lacks makes the proxy read the keys once more (and discovery, if that does not help),
//! so a provider that rotates its keys does not break every later login until a restart.

use std::str::FromStr;

use openidconnect::{
    ClaimsVerificationError, JsonWebKeySet, Nonce, SignatureVerificationError, core::CoreIdToken,
};

use super::Provider;
use crate::{
    auth::{AuthError, provider_http::send},
    error_text::chain,
};

impl Provider {
    /// Validates an ID token (signature, issuer, audience, and the nonce when the login sent
    /// one: the device grant has none), reading the provider's keys again when it was signed
    /// by a key the cached set lacks.
    pub(super) async fn validate(
        &self,
        id_token: &str,
        nonce: Option<&Nonce>,
    ) -> Result<(), AuthError> {
        let id_token = CoreIdToken::from_str(id_token)
            .map_err(|e| AuthError::IdToken(format!("not a JWT ({e})")))?;
        let unknown_key = |e: &ClaimsVerificationError| {
            matches!(
                e,
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey
                )
            )
        };
        for rediscover in [None, Some(false), Some(true)] {
            if let Some(rediscover) = rediscover {
                let never_read = self
                    .metadata
                    .read()
                    .is_ok_and(|m| m.jwks().keys().is_empty());
                if never_read {
                    // Read only now: a provider that issues no ID token needs none.
                    tracing::debug!("Reading the signing keys of {}", self.issuer);
                } else {
                    tracing::info!(
                        "The ID token of {} is signed by a key it has not published before; \
                         reading its {} again",
                        self.issuer,
                        if rediscover {
                            "discovery document"
                        } else {
                            "keys"
                        }
                    );
                }
                self.reload_keys(rediscover).await?;
            }
            let client = self.client()?;
            let verifier = client.id_token_verifier();
            let checked = match nonce {
                Some(nonce) => id_token.claims(&verifier, nonce).map(|_| ()),
                None => id_token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            };
            match checked {
                Ok(()) => return Ok(()),
                Err(e) if unknown_key(&e) && rediscover != Some(true) => continue,
                Err(e) => return Err(AuthError::IdToken(chain(&e))),
            }
        }
        Err(AuthError::IdToken("no key of the provider matches".into()))
    }

    /// Reads the provider's keys (again): its key set, or, with `rediscover` or if that fails,
    /// its whole discovery document first (which may name a new key set). Keys that cannot be
    /// read are an error naming where they were looked for.
    async fn reload_keys(&self, rediscover: bool) -> Result<(), AuthError> {
        let http = self.http.clone();
        let jwks_uri = match self.metadata.read() {
            Ok(metadata) => metadata.jwks_uri().clone(),
            Err(_) => return Ok(()),
        };
        let mut failure = None;
        if !rediscover {
            match JsonWebKeySet::fetch_async(&jwks_uri, &|r| send(http.clone(), r)).await {
                Ok(keys) => {
                    if let Ok(mut metadata) = self.metadata.write() {
                        *metadata = metadata.clone().set_jwks(keys);
                    }
                    return Ok(());
                }
                Err(e) => failure = Some(chain(&e)),
            }
        }
        let fresh = super::metadata::discover(&self.http, &self.issuer, false).await?;
        let jwks_uri = fresh.jwks_uri().clone();
        let keys = JsonWebKeySet::fetch_async(&jwks_uri, &|r| send(http.clone(), r))
            .await
            .map_err(|e| AuthError::Keys {
                issuer: self.issuer.clone(),
                jwks_uri: jwks_uri.url().to_string(),
                reason: failure.unwrap_or_else(|| chain(&e)),
            })?;
        if let Ok(mut metadata) = self.metadata.write() {
            *metadata = fresh.set_jwks(keys);
        }
        Ok(())
    }
}
