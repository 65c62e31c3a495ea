//! One backend as its profile's [`TokenManager`](super::TokenManager) sees it: where it is,
//! which resource indicator (RFC 8707) its tokens are bound to, what its protected resource
//! metadata (RFC 9728) said, and when it last made the proxy sign in again for more scopes.
//!
//! A manager's [`Targets`] are never empty: one per backend of its profile, or — for a manager
//! that serves no particular backend — one whose tokens are bound to no resource. A target
//! travels as a [`TargetId`], which only those targets hand out: it cannot name a backend the
//! manager does not know, and a name it does not know is an error where the name comes in
//! ([`TokenManager::access`](super::TokenManager::access)), not a quiet fallback to another
//! backend's tokens.
//!
//! Metadata is read once and kept: in memory, and its resource in the cache file, so that
//! later runs need not ask. A read that failed (no answer, a server error) is not an answer:
//! it is tried again after [`RETRY_FAILED_READ`], and until then the backend counts as having
//! told nothing.

use std::{
    ops::Index,
    sync::Mutex,
    time::{Duration, Instant},
};

use url::Url;

use super::resource::{MetadataError, Owners, ResourceMetadata};
use crate::config::Resource;

/// How long after a failed metadata read the next one is tried: not at every request (each
/// read may wait seconds for a backend that is down), and not never.
pub const RETRY_FAILED_READ: Duration = Duration::from_secs(30);

/// What is known of a backend's metadata.
#[derive(Debug, Clone)]
enum Read {
    /// Not read yet.
    Unknown,
    /// Read: what it publishes (`None`: nothing).
    Known(Option<ResourceMetadata>),
    /// Read: what it publishes cannot be used (about another server, say).
    Unusable,
    /// The last read failed; not tried again before this.
    Failed(Instant),
}

/// A backend whose tokens a profile provides.
#[derive(Debug)]
pub struct Target {
    /// The backend's name, for messages.
    pub backend: String,
    /// Its URL; `None` for a manager that serves no particular backend.
    pub url: Option<Url>,
    /// Its `resource` setting.
    pub setting: Resource,
    /// The resources the other configured backends own, which its metadata may not claim.
    pub owners: Owners,
    read: Mutex<Read>,
    /// When it last made the proxy sign in for more scopes.
    last_step_up: Mutex<Option<Instant>>,
    /// The scopes its challenge to a request without a token names (read once, for a profile
    /// whose server says the scopes).
    challenge_scopes: std::sync::OnceLock<Vec<String>>,
}

impl Target {
    /// A target for `backend` at `url`.
    pub fn new(backend: &str, url: Option<Url>, setting: Resource, owners: Owners) -> Self {
        Self {
            backend: backend.to_owned(),
            url,
            setting,
            owners,
            read: Mutex::new(Read::Unknown),
            last_step_up: Mutex::new(None),
            challenge_scopes: std::sync::OnceLock::new(),
        }
    }

    /// The scopes its challenge named, once read.
    pub fn challenge_scopes(&self) -> Option<&[String]> {
        self.challenge_scopes.get().map(Vec::as_slice)
    }

    /// Keeps the scopes its challenge named.
    pub fn heard_challenge(&self, scopes: Vec<String>) {
        let _ = self.challenge_scopes.set(scopes);
    }

    /// The scopes it asks for, MCP's order: those its challenge names, else those its
    /// metadata publishes, else none. `None` while neither has been read.
    pub fn wanted_scopes(&self) -> Option<Vec<String>> {
        match self.challenge_scopes() {
            Some(named) if !named.is_empty() => Some(named.to_vec()),
            _ => self
                .known()
                .map(|m| m.map(|m| m.scopes_supported).unwrap_or_default()),
        }
    }

    /// Whether its tokens may be bound to what its metadata names.
    pub fn binds_to_metadata(&self) -> bool {
        matches!(self.setting, Resource::Auto | Resource::Own)
    }

    /// What its metadata said, if it has been read: `Some(None)` when it publishes nothing
    /// usable. `None` while unread, or while a failed read waits to be tried again.
    pub fn known(&self) -> Option<Option<ResourceMetadata>> {
        match &*self.read.lock().ok()? {
            Read::Known(metadata) => Some(metadata.clone()),
            Read::Unusable => Some(None),
            Read::Unknown | Read::Failed(_) => None,
        }
    }

    /// Whether it publishes metadata that cannot be used (as opposed to none at all).
    pub fn unusable(&self) -> bool {
        matches!(self.read.lock().as_deref(), Ok(Read::Unusable))
    }

    /// Whether its metadata should be read now: never read, or a failed read is due again.
    pub fn due(&self) -> bool {
        match self.read.lock().as_deref() {
            Ok(Read::Unknown) => true,
            Ok(Read::Failed(at)) => at.elapsed() >= RETRY_FAILED_READ,
            Ok(Read::Known(_) | Read::Unusable) | Err(_) => false,
        }
    }

    /// Keeps the outcome of a read: an answer is kept, a failure is tried again later.
    pub fn remember(&self, outcome: &Result<Option<ResourceMetadata>, MetadataError>) {
        let read = match outcome {
            Ok(metadata) => Read::Known(metadata.clone()),
            Err(MetadataError::Unusable(_)) => Read::Unusable,
            Err(MetadataError::Unavailable(_)) => Read::Failed(Instant::now()),
        };
        if let Ok(mut slot) = self.read.lock() {
            *slot = read;
        }
    }

    /// The resource indicator its tokens are bound to, given what its metadata said
    /// (`discovered`: `None` when unknown, `Some(None)` when it publishes none).
    pub fn resource(&self, discovered: Option<Option<String>>) -> Option<String> {
        match &self.setting {
            Resource::Off => None,
            Resource::Url(resource) => Some(resource.clone()),
            Resource::Auto => discovered.flatten(),
            Resource::Own => discovered
                .flatten()
                .or_else(|| self.url.as_ref().map(Url::to_string)),
        }
    }

    /// How long ago it last made the proxy sign in for more scopes.
    pub fn since_step_up(&self) -> Option<Duration> {
        self.last_step_up.lock().ok()?.map(|at| at.elapsed())
    }

    /// Notes a sign-in for more scopes now.
    pub fn stepped_up(&self) {
        if let Ok(mut at) = self.last_step_up.lock() {
            *at = Some(Instant::now());
        }
    }
}

/// Which of its manager's targets a backend is. Only [`Targets`] hand one out, so it names one
/// of theirs; an [`Access`](super::Access) keeps it together with its manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetId(usize);

impl TargetId {
    /// The first target, which every manager has: its first backend, or the one bound to no
    /// resource.
    pub const FIRST: Self = Self(0);
}

/// The backends a manager provides tokens for: never none.
#[derive(Debug)]
pub struct Targets(Vec<Target>);

impl Targets {
    /// The one target of a manager that serves no particular backend: tokens bound to no
    /// resource.
    pub fn unbound() -> Self {
        Self(vec![Target::new(
            "",
            None,
            Resource::Off,
            Owners::default(),
        )])
    }

    /// `targets`, or [`Targets::unbound`] when there are none.
    pub fn new(targets: Vec<Target>) -> Self {
        if targets.is_empty() {
            return Self::unbound();
        }
        Self(targets)
    }

    /// The target of the backend named `backend`.
    pub fn find(&self, backend: &str) -> Option<TargetId> {
        self.0
            .iter()
            .position(|t| t.backend == backend)
            .map(TargetId)
    }

    /// Each target with its id, in order.
    pub fn iter(&self) -> impl Iterator<Item = (TargetId, &Target)> {
        self.0.iter().enumerate().map(|(i, t)| (TargetId(i), t))
    }

    /// The backends' names, for messages: `a, b`, or `none`.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self
            .0
            .iter()
            .map(|t| t.backend.as_str())
            .filter(|name| !name.is_empty())
            .collect();
        if names.is_empty() {
            return "none".to_owned();
        }
        names.join(", ")
    }
}

impl Index<TargetId> for Targets {
    type Output = Target;

    /// The target `id` names. A manager uses only the ids of its own targets (an
    /// [`Access`](super::Access) keeps its id with its manager), so it is one of them.
    fn index(&self, id: TargetId) -> &Target {
        &self.0[id.0]
    }
}
