//! The on-disk token cache: one JSON file per (issuer, client id), written atomically with
//! owner-only permissions.

use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What a login or refresh leaves behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// Issuer the tokens come from.
    pub issuer: String,
    /// Client they were issued to.
    pub client_id: String,
    /// Bearer token sent to backends.
    pub access_token: Secret,
    /// Token used to get the next access token without a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// When the access token expires, in seconds since the Unix epoch; unknown when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Scopes granted, as the provider reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl StoredTokens {
    /// Seconds of validity left, `None` when the expiry is unknown.
    pub fn seconds_left(&self, now: u64) -> Option<i64> {
        self.expires_at
            .map(|at| i64::try_from(at).unwrap_or(i64::MAX) - i64::try_from(now).unwrap_or(0))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One cache file.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

/// Keeps letters, digits and `-`; every other run of characters becomes one `_`, as the seed
/// names its files (`https://auth.example.com` -> `https_auth_example_com`).
fn sanitize(text: &str) -> String {
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
    /// The cache file for `issuer` and `client_id` inside `dir`, e.g.
    /// `https_auth_example_com_realms_corp_my-client_tokens.json`.
    pub fn new(dir: &Path, issuer: &str, client_id: &str) -> Self {
        let name = format!("{}_{}_tokens.json", sanitize(issuer), sanitize(client_id));
        Self {
            path: dir.join(name),
        }
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached tokens; a missing file is `None`, and so is an unreadable or corrupt one
    /// (with a warning), which the next login overwrites.
    pub fn load(&self) -> Option<StoredTokens> {
        if let Some(dir) = self.path.parent() {
            tighten(dir, 0o700);
        }
        tighten(&self.path, 0o600);
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("Ignoring token cache {}: {e}", self.path.display());
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(tokens) => Some(tokens),
            Err(e) => {
                tracing::warn!(
                    "Ignoring corrupt token cache {} ({e}); a new login will replace it",
                    self.path.display()
                );
                None
            }
        }
    }

    /// Writes the tokens: a temp file beside the target, flushed, then renamed over it, so a
    /// crash never leaves a half-written file. File 0600, directory 0700.
    pub fn save(&self, tokens: &StoredTokens) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let json = serde_json::to_vec_pretty(tokens)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map_or_else(|| "tokens".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let result = (|| {
            let mut file = private_file(&tmp, true)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Takes the cache's inter-process lock, waiting up to `wait` for another process that
    /// is renewing the same tokens. Renewing under the lock means a rotated refresh token is
    /// never used twice (providers revoke the whole grant when that happens). `None`, with a
    /// warning, when the lock cannot be had: better a possible race than a stuck proxy.
    pub async fn lock(&self, wait: Duration) -> Option<CacheLock> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = self.path.with_extension("lock");
        let file = create_private_dir(dir).and_then(|()| private_file(&path, false));
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

/// Takes group and other permissions away from an existing `path` (a cache created by hand,
/// or by an older tool, with a loose umask), with a warning; missing paths are left alone.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 || meta.file_type().is_symlink() {
        return;
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(
            "{} was readable by other users (mode {current:o}); changed to {mode:o}",
            path.display()
        ),
        Err(e) => tracing::warn!(
            "{} is readable by other users (mode {current:o}) and could not be changed: {e}",
            path.display()
        ),
    }
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) {}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        tighten(dir, 0o700);
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Opens (creating) a file only its owner can read: `truncate` for a fresh token file, not for
/// the lock file, whose content does not matter but whose identity does.
fn private_file(path: &Path, truncate: bool) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> StoredTokens {
        StoredTokens {
            issuer: "https://auth.example.com".into(),
            client_id: "cid".into(),
            access_token: Secret::new("at"),
            refresh_token: Some(Secret::new("rt")),
            expires_at: Some(1_900_000_000),
            scope: None,
        }
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_of_an_existing_cache_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = TokenCache::new(&dir, "https://auth.example.com", "cid");
        cache.save(&tokens()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(cache.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load().is_some());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(cache.path()), 0o600);
        // A save into a loose directory tightens it too.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        cache.save(&tokens()).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn file_is_named_from_issuer_and_client() {
        let cache = TokenCache::new(
            Path::new("/c"),
            "https://auth.example.com/realms/x/",
            "my app",
        );
        assert_eq!(
            cache.path(),
            Path::new("/c/https_auth_example_com_realms_x_my_app_tokens.json")
        );
    }

    #[test]
    fn save_then_load_round_trips_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("nested").join("cache");
        let cache = TokenCache::new(&cache_dir, "https://auth.example.com", "cid");
        assert_eq!(cache.load(), None);
        let saved = tokens();
        cache.save(&saved).unwrap();
        assert_eq!(cache.load(), Some(saved));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(cache.path()), 0o600);
            assert_eq!(mode(&cache_dir), 0o700);
        }
        let leftovers: Vec<_> = fs::read_dir(&cache_dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file may remain");
    }

    #[test]
    fn corrupt_file_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path(), "https://auth.example.com", "cid");
        fs::write(cache.path(), b"{not json").unwrap();
        assert_eq!(cache.load(), None);
        cache.save(&tokens()).unwrap();
        assert!(cache.load().is_some());
    }
}
