//! Owner-only files and directories: a token file (or the remembered lists of a backend) is
//! read and written only where no other user can reach it.
//!
//! What it guards against: another user planting or reading files (a directory not owned by
//! the user, or writable by others, is refused; files are opened without following symbolic
//! links, and written through a fresh, exclusively created temporary file under a random name).
//! A file or directory readable by others (made by hand, or by an older tool, with a loose
//! umask) is tightened, with a warning.

use std::{
    fs, io,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

/// A fresh name for a temporary file in `dir` to be renamed over `path`: nobody can have
/// prepared a file of that name, as its last part is random.
pub(crate) fn temp_name(dir: &Path, path: &Path) -> PathBuf {
    dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        path.file_name()
            .map_or_else(|| "tokens".into(), |n| n.to_string_lossy()),
        std::process::id(),
        random()
    ))
}

/// A random number for temp file names (std's hasher keys are random per process; the counter
/// makes each call differ).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A cache directory must belong to the user and be writable by nobody else: otherwise
/// another user could plant files or links in it, or swap the token file.
#[cfg(unix)]
pub(crate) fn check_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(format!(
                "cannot read the token cache directory {}: {e}",
                dir.display()
            ));
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "the token cache directory {} belongs to another user (uid {}, you are uid {me}); \
             set cache_dir (or AUTHFUL_MCP_CACHE_DIR) to a directory of your own",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "the token cache directory {} is writable by other users (mode {mode:o}); run \
             `chmod 700 {}` or set cache_dir to another directory",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_dir(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// Takes group and other read permissions away from an existing `path` (a cache created by
/// hand, or by an older tool, with a loose umask), with a warning; missing paths and links are
/// left alone.
#[cfg(unix)]
pub(crate) fn tighten(path: &Path, mode: u32) {
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
pub(crate) fn tighten(_path: &Path, _mode: u32) {}

#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
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
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// How [`open_private`] opens a file.
pub(crate) enum Open {
    /// Create it, or fail if anything is there already: a fresh temp file.
    CreateNew,
    /// Create it if missing, keep its content: the lock file, whose identity matters.
    Create,
}

/// Opens for writing a file only its owner can read, never through a symbolic link.
pub(crate) fn open_private(path: &Path, how: Open) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    match how {
        Open::CreateNew => options.create_new(true),
        Open::Create => options.create(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Reads a file, never through a symbolic link.
pub(crate) fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    read_private_bounded(path, usize::MAX)
}

/// Reads a file of at most `limit` bytes, never through a symbolic link; a longer one is an
/// error, read no further than the limit.
pub(crate) fn read_private_bounded(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut bytes = Vec::new();
    let allowed = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    options.open(path)?.take(allowed).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::other(format!("over {limit} bytes")));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` in `dir`: a fresh temp file beside it, created exclusively under a
/// random name, flushed, then renamed over it, so a crash never leaves a half-written file and
/// nobody can have prepared the temp file. File 0600, directory 0700; a directory that others
/// own or may write is refused.
pub(crate) fn replace(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    // Checked first: creating (or tightening) must not paper over a directory others write.
    check_dir(dir).map_err(io::Error::other)?;
    create_private_dir(dir)?;
    let tmp = temp_name(dir, path);
    let result = (|| {
        let mut file = open_private(&tmp, Open::CreateNew)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
