//! Where a profile's tokens come from and go to, as far as the backends have a say: each
//! backend's protected resource metadata (RFC 9728) read, kept and judged — which resource its
//! tokens are bound to, and which server the backends of an issuer-less profile agree on — and
//! the profile's authority chosen once (configured, pinned in the tokens on disk, or agreed),
//! with its provider discovered there (OIDC discovery, once per process).
//!
//! Judging is where a backend's say ends. For a profile with `issuer_url`, metadata that
//! trusts other servers is not used. For one pinned to the server of its first sign-in, a
//! backend that names only others is an error naming both ([`authority`]). Metadata is read
//! again when a backend refuses a token, so that a change is noticed where it matters; a read
//! that fails is tried again rather than taken for "none" ([`target`](super::target)).

use std::sync::Arc;

use super::{
    AuthError,
    authority::{self, Authority, Source, Suggestion, same_issuer},
    cache::StoredTokens,
    oidc::Provider,
    registration::Registrations,
    resource::{self, MetadataError, ResourceMetadata},
    target::TargetId,
    tokens::TokenManager,
};
use crate::error_text::untrusted;

impl TokenManager {
    /// The server the profile is bound to, if known yet: configured, chosen in this process,
    /// or pinned in the tokens on disk.
    pub(super) fn pin(&self, tokens: Option<&StoredTokens>) -> Option<String> {
        self.profile
            .issuer_url
            .clone()
            .or_else(|| self.authority.get().map(|a| a.issuer.clone()))
            .or_else(|| tokens.map(|t| t.issuer.clone()))
    }

    /// The server every backend of an issuer-less profile names (their metadata read side
    /// by side).
    pub(super) async fn agree(&self) -> Result<Authority, AuthError> {
        let reads =
            self.targets
                .iter()
                .filter(|(_, t)| t.url.is_some())
                .map(|(id, t)| async move {
                    // Read again after a failure, whatever its pause: a sign-in about to start
                    // is worth one more try, and a person is waiting on it.
                    let servers = match t.known() {
                        Some(known) => Ok(known),
                        None => self.fetch(id, None).await,
                    }
                    .map(|m| m.map(|m| m.authorization_servers).unwrap_or_default());
                    (t.backend.as_str(), servers)
                });
        let suggestions: Vec<Suggestion<'_>> = futures::future::join_all(reads)
            .await
            .into_iter()
            .map(|(backend, servers)| Suggestion { backend, servers })
            .collect();
        authority::agree(&self.profile.name, &suggestions)
    }

    /// The resource indicator of `target` as far as known without asking the backend.
    pub(super) fn known_resource(
        &self,
        target: TargetId,
        tokens: Option<&StoredTokens>,
    ) -> Option<String> {
        let t = &self.targets[target];
        let discovered = match t.known() {
            // An error (a pinned server another one replaced) surfaces on the token path.
            Some(known) => Some(
                self.judge(target, known, self.pin(tokens).as_deref())
                    .ok()
                    .flatten()
                    .map(|m| m.resource),
            ),
            None => t
                .url
                .as_ref()
                .and_then(|url| tokens?.discovered.get(url.as_str()).cloned()),
        };
        t.resource(discovered)
    }

    /// The resource indicator of `target`, reading its metadata first if nothing says yet
    /// whether it has any (once: the answer is kept in the cache file).
    pub(super) async fn resource(
        &self,
        target: TargetId,
        mut tokens: Option<&mut StoredTokens>,
    ) -> Result<Option<String>, AuthError> {
        if self.targets[target].binds_to_metadata() {
            self.metadata(target, tokens.as_deref_mut()).await?;
        }
        Ok(self.known_resource(target, tokens.as_deref()))
    }

    /// `target`'s metadata as the profile may use it, read from the backend unless known (in
    /// memory, or its resource in the cache file).
    pub(super) async fn metadata(
        &self,
        target: TargetId,
        tokens: Option<&mut StoredTokens>,
    ) -> Result<Option<ResourceMetadata>, AuthError> {
        let t = &self.targets[target];
        if t.known().is_none()
            && let Some(url) = &t.url
        {
            let cached = tokens
                .as_deref()
                .and_then(|s| s.discovered.get(url.as_str()));
            match cached {
                // Known from an earlier run, judged then; the servers are not needed now.
                Some(resource) => {
                    t.remember(&Ok(resource.clone().map(|resource| ResourceMetadata {
                        resource,
                        authorization_servers: Vec::new(),
                        scopes_supported: Vec::new(),
                    })))
                }
                None if t.due() => {
                    let _ = self.fetch(target, None).await;
                }
                None => {}
            }
        }
        let pin = self.pin(tokens.as_deref());
        let usable = self.judge(target, t.known().flatten(), pin.as_deref())?;
        if let (Some(tokens), Some(url), Some(_)) = (tokens, &t.url, t.known()) {
            tokens
                .discovered
                .insert(url.to_string(), usable.as_ref().map(|m| m.resource.clone()));
        }
        Ok(usable)
    }

    /// Reads `target`'s metadata from the backend (at `hint` first, if on its origin) and
    /// keeps the outcome: an answer, or a failure to try again later.
    pub(super) async fn fetch(
        &self,
        target: TargetId,
        hint: Option<&str>,
    ) -> Result<Option<ResourceMetadata>, MetadataError> {
        let t = &self.targets[target];
        let Some(url) = t.url.as_ref() else {
            return Ok(None);
        };
        let outcome = resource::discover(&self.http, url, hint, &t.owners).await;
        match &outcome {
            Err(problem) => tracing::warn!("Backend '{}': {problem}", t.backend),
            Ok(Some(m)) => {
                if let Some(issuer) = &self.profile.issuer_url
                    && !m.authorization_servers.is_empty()
                    && !m
                        .authorization_servers
                        .iter()
                        .any(|a| same_issuer(a, issuer))
                {
                    tracing::warn!(
                        "Backend '{}' trusts the authorization servers {:?}, not {issuer} of \
                         profile '{}': its metadata is not used",
                        t.backend,
                        m.authorization_servers
                            .iter()
                            .map(|s| untrusted(s))
                            .collect::<Vec<_>>(),
                        self.profile.name
                    );
                }
            }
            Ok(None) => {}
        }
        t.remember(&outcome);
        outcome
    }

    /// `metadata` of `target` as the profile may use it: metadata that trusts other servers
    /// than a configured issuer is not used; for a profile pinned to `pin`, a backend naming
    /// only other servers is an error naming both.
    pub(super) fn judge(
        &self,
        target: TargetId,
        metadata: Option<ResourceMetadata>,
        pin: Option<&str>,
    ) -> Result<Option<ResourceMetadata>, AuthError> {
        let Some(metadata) = metadata else {
            return Ok(None);
        };
        let servers = &metadata.authorization_servers;
        match (&self.profile.issuer_url, pin) {
            (Some(issuer), _) => {
                let trusted = servers.is_empty() || servers.iter().any(|s| same_issuer(s, issuer));
                Ok(trusted.then_some(metadata))
            }
            (None, Some(pin)) => {
                authority::check_pin(
                    &self.profile.name,
                    &self.targets[target].backend,
                    &servers.iter().map(|s| untrusted(s)).collect::<Vec<_>>(),
                    pin,
                    self.cache.path(),
                )?;
                Ok(Some(metadata))
            }
            (None, None) => Ok(Some(metadata)),
        }
    }

    /// A backend refused a token: read its metadata again (at `hint`, if on its origin), in
    /// case it now names a resource the tokens must be bound to, or — for an issuer-less
    /// profile — another server than the pinned one.
    pub(super) async fn relearn(
        &self,
        target: TargetId,
        hint: Option<&str>,
        mut tokens: Option<&mut StoredTokens>,
    ) -> Result<(), AuthError> {
        let t = &self.targets[target];
        if !t.binds_to_metadata() && self.profile.issuer_url.is_some() {
            return Ok(());
        }
        let before = self.known_resource(target, tokens.as_deref());
        if let Err(MetadataError::Unavailable(_)) = self.fetch(target, hint).await {
            return Ok(());
        }
        let pin = self.pin(tokens.as_deref());
        let usable = self.judge(target, t.known().flatten(), pin.as_deref())?;
        if let (Some(tokens), Some(url)) = (tokens.as_deref_mut(), t.url.as_ref()) {
            tokens
                .discovered
                .insert(url.to_string(), usable.map(|m| m.resource));
        }
        let after = self.known_resource(target, tokens.as_deref());
        if after != before {
            tracing::info!(
                "Backend '{}' names its resource {}: its tokens are bound to it from now on",
                t.backend,
                after.as_deref().unwrap_or("(none)")
            );
        }
        Ok(())
    }

    /// The server the profile signs in at, for messages: its authority once chosen, else
    /// what the configuration says.
    pub(super) fn issuer_label(&self) -> String {
        self.authority
            .get()
            .map(|a| a.issuer.clone())
            .unwrap_or_else(|| self.profile.issuer_label().to_owned())
    }

    /// The server the profile's credentials belong to (see [`authority`]).
    pub(super) async fn authority(
        &self,
        tokens: Option<&mut StoredTokens>,
    ) -> Result<&Authority, AuthError> {
        if let Some(authority) = self.authority.get() {
            return Ok(authority);
        }
        let profile = &self.profile;
        let chosen = match (&profile.issuer_url, tokens.as_deref()) {
            (Some(issuer), _) => Authority {
                issuer: issuer.clone(),
                source: Source::Configured,
            },
            // Defence in depth: `resolve` refuses such a profile.
            (None, _) if profile.client_secret.is_some() || profile.client_assertion.is_some() => {
                return Err(AuthError::ConfidentialWithoutIssuer {
                    profile: profile.name.clone(),
                });
            }
            (None, Some(stored)) => Authority {
                issuer: stored.issuer.clone(),
                source: Source::Pinned,
            },
            (None, None) => {
                let agreed = match self.agree().await {
                    // MCP 2025-03-26: a server that runs OAuth itself and publishes no
                    // metadata is its own authorization server.
                    Err(AuthError::NoIssuer { .. }) if profile.own_oauth => self.own_server()?,
                    other => other?,
                };
                tracing::info!(
                    "Profile '{}' signs in at {}, {}",
                    profile.name,
                    agreed.issuer,
                    agreed.provenance().unwrap_or_default()
                );
                agreed
            }
        };
        Ok(self.authority.get_or_init(|| async { chosen }).await)
    }

    /// The server of a backend with `auth: oauth` that publishes no metadata: its own origin
    /// (MCP 2025-03-26). Not for one whose metadata is unusable: that names a server, just not
    /// one the proxy may use.
    fn own_server(&self) -> Result<Authority, AuthError> {
        let (backend, url) = self
            .targets
            .iter()
            .find_map(|(_, t)| Some((t.backend.clone(), t.url.clone()?)))
            .filter(|_| !self.targets.iter().any(|(_, t)| t.unusable()))
            .ok_or_else(|| AuthError::NoServerNamed {
                backend: self
                    .targets
                    .iter()
                    .map(|(_, t)| t.backend.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok(Authority {
            issuer: url.origin().ascii_serialization(),
            source: Source::NamedBy(vec![backend]),
        })
    }

    /// The provider, discovered once, at the profile's [`authority`](Self::authority).
    pub(super) async fn provider(
        &self,
        tokens: Option<&mut StoredTokens>,
    ) -> Result<&Provider, AuthError> {
        let issuer = self.authority(tokens).await?.issuer.clone();
        self.provider
            .get_or_try_init(|| {
                Provider::discover(
                    Arc::clone(&self.profile),
                    &issuer,
                    self.http.clone(),
                    Registrations::new(self.cache.dir()),
                )
            })
            .await
    }
}
