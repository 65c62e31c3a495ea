//! The on-disk token cache: one JSON file per profile (issuer, client id, scopes), written
//! atomically with owner-only permissions. This module holds [`TokenCache`], the file of one
//! profile: its name, reading it (and what is refused in it), writing it, removing it, and the
//! lock that keeps two processes from renewing the same tokens at once. Beside it:
//! - `stored`: what the file holds ([`StoredTokens`], [`AccessToken`]);
//!
//! What it guards against: two profiles sharing tokens (the readable part of a file name is a
//! lossy rewrite of issuer and client id, so a hash of both and of the scopes completes it, and
//! a file whose stored issuer or client differs is ignored); another user planting or reading
//! files (see [`private_files`](crate::private_files)).

mod stored;

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::private_files::{
    Open, check_dir, create_private_dir, open_private, read_private, replace, tighten,
};
pub use stored::{AccessToken, StoredTokens, unix_now};

use crate::config::Profile;

/// One profile's cache file.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
    /// The name earlier versions gave the file, without the hash: read once and moved.
    legacy: Option<PathBuf>,
    /// The issuer the tokens must come from; `None` for a profile whose backends name it (the
    /// file then holds the server its first sign-in pinned).
    issuer: Option<String>,
    client_id: String,
}

/// The readable stand-in for the issuer of a profile that names none.
const BACKENDS_ISSUER: &str = "issuer-named-by-backends";

/// Keeps letters, digits and `-`; every other run of characters becomes one `_`, as the Python original
/// names its files (`https://auth.example.com` -> `https_auth_example_com`).
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

impl TokenCache {
    /// The cache file of `profile`, whose backends are at `backends`, inside `dir`, e.g.
    /// `https_auth_example_com_realms_corp_my-client_1a2b3c4d_tokens.json`: the Python
    /// original's readable name, then 8 hex digits of the SHA-256 of issuer, client id and
    /// scopes. A profile that names no issuer (its backends do) has a file of its own name,
    /// whose key holds the backends' URLs: two such profiles of one client id on different
    /// servers never read each other's tokens.
    pub fn new(dir: &Path, profile: &Profile, backends: &[&url::Url]) -> Self {
        let (client_id, scopes) = (profile.client_label(), &profile.scopes);
        match &profile.issuer_url {
            Some(issuer) => Self::for_key(dir, issuer, client_id, scopes),
            None => {
                let mut urls: Vec<&str> = backends.iter().map(|u| u.as_str()).collect();
                urls.sort_unstable();
                urls.dedup();
                let readable = format!("{BACKENDS_ISSUER}/{}", profile.name);
                let key = (&readable, client_id, scopes, urls);
                let mut cache = Self::keyed(dir, &readable, client_id, &key);
                // No file of an earlier naming is taken: without the URLs in its key, it may
                // hold another server's tokens.
                cache.legacy = None;
                cache.issuer = None;
                cache
            }
        }
    }

    /// The cache file for `issuer`, `client_id` and `scopes` inside `dir`.
    pub fn for_key(dir: &Path, issuer: &str, client_id: &str, scopes: &[String]) -> Self {
        Self::keyed(dir, issuer, client_id, &(issuer, client_id, scopes))
    }

    /// The file named after `issuer` and `client_id`, and a hash of `key`.
    fn keyed(dir: &Path, issuer: &str, client_id: &str, key: &impl Serialize) -> Self {
        let readable = format!("{}_{}", sanitize(issuer), sanitize(client_id));
        // JSON keeps the parts apart: no two different keys encode alike.
        let key = serde_json::to_vec(key).unwrap_or_default();
        let hash: String = Sha256::digest(&key)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            path: dir.join(format!("{readable}_{hash}_tokens.json")),
            legacy: Some(dir.join(format!("{readable}_tokens.json"))),
            issuer: Some(issuer.to_owned()),
            client_id: client_id.to_owned(),
        }
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the file lives in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Whether the directory is safe to keep tokens in: owned by the user and writable by
    /// nobody else (a missing one is created safe). The message says how to fix it.
    pub fn check(&self) -> Result<(), String> {
        check_dir(self.dir())
    }

    /// The cached tokens; a missing file is `None`, and so is an unreadable, corrupt or
    /// foreign one (with a warning), which the next login overwrites.
    pub fn load(&self) -> Option<StoredTokens> {
        if let Err(problem) = self.check() {
            tracing::warn!("Not reading the token cache: {problem}");
            return None;
        }
        tighten(self.dir(), 0o700);
        match self.read(&self.path) {
            Some(tokens) => Some(tokens),
            None => self.migrate(),
        }
    }

    /// Reads one file, without following a symbolic link; tokens of another issuer or client
    /// count as absent.
    fn read(&self, path: &Path) -> Option<StoredTokens> {
        tighten(path, 0o600);
        let bytes = match read_private(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("Ignoring token cache {}: {e}", path.display());
                return None;
            }
        };
        let tokens: StoredTokens = match serde_json::from_slice(&bytes) {
            Ok(tokens) => tokens,
            Err(e) => {
                tracing::warn!(
                    "Ignoring corrupt token cache {} ({e}); a new login will replace it",
                    path.display()
                );
                return None;
            }
        };
        let issuer_differs = self.issuer.as_ref().is_some_and(|i| *i != tokens.issuer);
        // A client the proxy registered has the id the server gave it (the file is named
        // `registered`).
        let client_differs = tokens.client_id != self.client_id && self.client_id != "registered";
        if issuer_differs || client_differs {
            tracing::warn!(
                "Ignoring token cache {}: it holds tokens of issuer {} and client {}, not of {} \
                 and {}",
                path.display(),
                tokens.issuer,
                tokens.client_id,
                self.issuer
                    .as_deref()
                    .unwrap_or("the issuer the backends name"),
                self.client_id
            );
            return None;
        }
        Some(tokens)
    }

    /// A file of the naming without hash, left by an earlier version: moved to this name, so
    /// nobody logs in again for nothing.
    fn migrate(&self) -> Option<StoredTokens> {
        let legacy = self.legacy.as_ref()?;
        let tokens = self.read(legacy)?;
        match self.save(&tokens) {
            Ok(()) => {
                let _ = fs::remove_file(legacy);
                tracing::info!(
                    "Moved the token cache {} to {}",
                    legacy.display(),
                    self.path.display()
                );
            }
            Err(e) => tracing::warn!(
                "Could not move the token cache to {}: {e}",
                self.path.display()
            ),
        }
        Some(tokens)
    }

    /// Writes the tokens: a fresh temp file beside the target, created exclusively under a
    /// random name, flushed, then renamed over it, so a crash never leaves a half-written file
    /// and nobody can have prepared the temp file. File 0600, directory 0700.
    pub fn save(&self, tokens: &StoredTokens) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(tokens)?;
        replace(self.dir(), &self.path, &json)
    }

    /// Deletes the file (a missing one is fine).
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Takes the cache's inter-process lock, waiting up to `wait` for another process that
    /// is renewing the same tokens. Renewing under the lock means a rotated refresh token is
    /// never used twice (providers revoke the whole grant when that happens). `None`, with a
    /// warning, when the lock cannot be had: better a possible race than a stuck proxy.
    pub async fn lock(&self, wait: Duration) -> Option<CacheLock> {
        let dir = self.dir();
        let path = self.path.with_extension("lock");
        let file = check_dir(dir)
            .map_err(io::Error::other)
            .and_then(|()| create_private_dir(dir))
            .and_then(|()| open_private(&path, Open::Create));
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!("Cannot lock {}: {e}", path.display());
                return None;
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Some(CacheLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(fs::TryLockError::WouldBlock) => {
                    tracing::warn!(
                        "Another process still holds {} after {} s; going on without it",
                        path.display(),
                        wait.as_secs()
                    );
                    return None;
                }
                Err(fs::TryLockError::Error(e)) => {
                    tracing::warn!("Cannot lock {}: {e}", path.display());
                    return None;
                }
            }
        }
    }
}

/// The inter-process lock on one cache file; released when dropped (or when the process
/// dies, as the operating system drops it with the file handle).
pub struct CacheLock {
    _file: fs::File,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const ISSUER: &str = "https://auth.example.com";

    fn scopes() -> Vec<String> {
        vec!["openid".into(), "profile".into()]
    }

    fn cache(dir: &Path) -> TokenCache {
        TokenCache::for_key(dir, ISSUER, "cid", &scopes())
    }

    fn tokens() -> StoredTokens {
        StoredTokens {
            access_token: Some(Secret::new("at")),
            refresh_token: Some(Secret::new("rt")),
            expires_at: Some(1_900_000_000),
            ..StoredTokens::new(ISSUER, "cid")
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_file_keeps_the_readable_name_and_adds_a_hash_of_the_whole_key() {
        let cache = TokenCache::for_key(
            Path::new("/c"),
            "https://auth.example.com/realms/x/",
            "my app",
            &scopes(),
        );
        let name = cache
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let hash = name
            .strip_prefix("https_auth_example_com_realms_x_my_app_")
            .and_then(|rest| rest.strip_suffix("_tokens.json"))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }

    /// Issuer and client id that the readable part maps alike, and profiles that differ only
    /// in their scopes, never share a file.
    #[test]
    fn profiles_never_share_a_file() {
        let dir = Path::new("/c");
        let path = |issuer: &str, client: &str, scopes: &[&str]| {
            let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
            TokenCache::for_key(dir, issuer, client, &scopes)
                .path()
                .to_owned()
        };
        let a = path("https://idp/t", "x_y", &["openid"]);
        let b = path("https://idp/t/x", "y", &["openid"]);
        assert_ne!(
            a, b,
            "the readable names collide; the hash tells them apart"
        );
        assert_ne!(
            path("https://idp/t", "c", &["openid"]),
            path("https://idp/t", "c", &["openid", "admin"])
        );
        assert_eq!(a, path("https://idp/t", "x_y", &["openid"]), "stable");
    }

    #[test]
    fn save_then_load_round_trips_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("nested").join("cache");
        let cache = cache(&cache_dir);
        assert_eq!(cache.load(), None);
        let saved = tokens();
        cache.save(&saved).unwrap();
        assert_eq!(cache.load(), Some(saved));
        #[cfg(unix)]
        {
            assert_eq!(mode(cache.path()), 0o600);
            assert_eq!(mode(&cache_dir), 0o700);
            assert_eq!(
                mode(&dir.path().join("nested")),
                0o700,
                "parents it creates too"
            );
        }
        let leftovers: Vec<_> = fs::read_dir(&cache_dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file may remain");
    }

    #[test]
    fn a_file_of_another_issuer_or_client_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        for (issuer, client) in [("https://evil.example", "cid"), (ISSUER, "other")] {
            let foreign = StoredTokens {
                issuer: issuer.into(),
                client_id: client.into(),
                ..tokens()
            };
            fs::write(cache.path(), serde_json::to_vec(&foreign).unwrap()).unwrap();
            assert_eq!(cache.load(), None, "{issuer} {client}");
        }
    }

    #[test]
    fn a_file_of_the_old_naming_is_moved_to_the_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let legacy = dir.path().join("https_auth_example_com_cid_tokens.json");
        fs::write(&legacy, serde_json::to_vec(&tokens()).unwrap()).unwrap();
        assert_eq!(cache.load(), Some(tokens()), "no new login for nothing");
        assert!(!legacy.exists() && cache.path().exists());
        // An old file of another client with a colliding readable name is not taken.
        let other = TokenCache::for_key(dir.path(), "https://auth.example.com/cid", "", &[]);
        assert_eq!(other.load(), None);
    }

    #[test]
    fn corrupt_file_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        fs::write(cache.path(), b"{not json").unwrap();
        assert_eq!(cache.load(), None);
        cache.save(&tokens()).unwrap();
        assert!(cache.load().is_some());
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_cache_is_tightened_and_a_writable_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = cache(&dir);
        cache.save(&tokens()).unwrap();
        set_mode(&dir, 0o755);
        set_mode(cache.path(), 0o644);
        assert!(cache.load().is_some());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(cache.path()), 0o600);
        for loose in [0o777, 0o770, 0o722] {
            set_mode(&dir, loose);
            let problem = cache.check().unwrap_err();
            assert!(
                problem.contains("writable by other users")
                    && problem.contains(&format!("chmod 700 {}", dir.display())),
                "{problem}"
            );
            assert_eq!(cache.load(), None, "nothing is read from it");
            assert!(cache.save(&tokens()).is_err(), "nothing is written to it");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_directory_of_another_user_is_refused() {
        // Only root can hand a directory to another user; elsewhere there is nothing to test.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not root, cannot chown");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = cache(&dir);
        cache.save(&tokens()).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let problem = cache.check().unwrap_err();
        assert!(
            problem.contains("belongs to another user (uid 65534"),
            "{problem}"
        );
        assert_eq!(cache.load(), None);
    }

    /// Links planted where the token file, the lock or the old temp-file name would be are
    /// never followed: their targets are neither read nor written.
    #[cfg(unix)]
    #[test]
    fn planted_symlinks_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o700);
        let cache = cache(&dir);
        let victim = root.path().join("victim");
        let secret = serde_json::to_vec(&tokens()).unwrap();
        fs::write(&victim, &secret).unwrap();
        std::os::unix::fs::symlink(&victim, cache.path()).unwrap();
        assert_eq!(cache.load(), None, "a link as the token file is not read");
        let lock_path = cache.path().with_extension("lock");
        std::os::unix::fs::symlink(&victim, &lock_path).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(
            runtime
                .block_on(cache.lock(Duration::from_millis(10)))
                .is_none(),
            "a link as the lock is not opened"
        );
        // The temp file of earlier versions had a name anyone could guess.
        let guessable = dir.join(format!(
            ".{}.{}.tmp",
            cache.path().file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        std::os::unix::fs::symlink(&victim, &guessable).unwrap();
        let mut fresh = tokens();
        fresh.access_token = Some(Secret::new("new"));
        cache.save(&fresh).unwrap();
        assert_eq!(
            fs::read(&victim).unwrap(),
            secret,
            "the victim is untouched"
        );
        assert!(
            !fs::symlink_metadata(cache.path())
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(cache.load().unwrap().access_token, Some(Secret::new("new")));
    }
}
