//! What each backend listed and said of itself the last time it was connected, kept in the
//! cache directory, so that the next start answers `initialize` and the first lists at once
//! while the backends connect and their users sign in. Clients wait little for a server that
//! starts: Codex leaves out of the turn one whose tools are not listed within a second.
//!
//! One file per backend, `<cache_dir>/remembered/<hash>.json`. The hash is of what the entry
//! depends on — the backend's URL, prefix, tool filter, resource indicator, header names and
//! its profile (name, issuer, client id, scopes) — so changing any of them starts a new entry
//! for that backend alone, and two configurations that declare the same backend share it. The
//! file holds a format version, that fingerprint (checked again on reading), the backend's
//! `initialize` answer (capabilities, instructions, server info, protocol version) and its four
//! lists as the backend gave them, before prefixes and filters. No token, secret or header
//! value is in it.
//!
//! Files are owner-only and written atomically (see [`crate::private_files`]),
//! so processes of the same configuration can share them: the last fresh read wins. A file
//! that is damaged, over [`MAX_BYTES`], of another format version or another fingerprint is
//! ignored, and replaced at the next fresh read. Entries not written for [`FORGET_AFTER`] are
//! deleted when another is written, so removed backends do not pile up.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerPeerInfo, Tool};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    config::Backend,
    lists::{Kind, Lists},
    private_files,
};

/// The format of the files; another one is ignored. (1 wrote a list never read as empty.)
const VERSION: u32 = 2;

/// The largest file read or written: the four lists at their bounds, and room for the rest.
pub const MAX_BYTES: usize = 4 * crate::lists::LIMITS.bytes + 1024 * 1024;

/// Entries not written for this long are deleted when another is written.
pub const FORGET_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// A backend as it was when last connected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    /// Its answer to `initialize`.
    pub introduction: Option<ServerPeerInfo>,
    /// Each list, as last read whole; `None` if it never was (then it is never served from
    /// here: a list the proxy did not read is unknown, not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<Prompt>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<Resource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<ResourceTemplate>>,
}

impl Remembered {
    /// What `introduction` and `lists` hold.
    pub fn of(introduction: Option<ServerPeerInfo>, lists: &Lists) -> Self {
        fn all<T: Clone>(list: &Option<Arc<Vec<T>>>) -> Option<Vec<T>> {
            list.as_deref().cloned()
        }
        Self {
            introduction,
            tools: all(&lists.tools),
            prompts: all(&lists.prompts),
            resources: all(&lists.resources),
            templates: all(&lists.templates),
        }
    }

    /// The kinds of list that differ in `other`.
    pub fn changed(&self, other: &Remembered) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|kind| match kind {
                Kind::Tools => self.tools != other.tools,
                Kind::Prompts => self.prompts != other.prompts,
                Kind::Resources => self.resources != other.resources,
                Kind::Templates => self.templates != other.templates,
            })
            .collect()
    }

    /// The lists, as a keeper holds them.
    pub fn lists(&self) -> Lists {
        Lists {
            tools: self.tools.clone().map(Arc::new),
            prompts: self.prompts.clone().map(Arc::new),
            resources: self.resources.clone().map(Arc::new),
            templates: self.templates.clone().map(Arc::new),
        }
    }
}

/// The file as written.
#[derive(Serialize, Deserialize)]
struct Entry {
    version: u32,
    fingerprint: String,
    #[serde(flatten)]
    remembered: Remembered,
}

/// Where one backend's entry lives.
#[derive(Debug, Clone)]
pub struct Memory {
    dir: PathBuf,
    path: PathBuf,
    fingerprint: String,
}

impl Memory {
    /// The entry of `backend` in `cache_dir`.
    pub fn of(cache_dir: &Path, backend: &Backend) -> Self {
        let fingerprint = fingerprint(backend);
        let dir = cache_dir.join("remembered");
        let path = dir.join(format!("{}.json", &fingerprint[..32]));
        Self {
            dir,
            path,
            fingerprint,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the entry holds, if it is there and sound; anything else is `None`, said at debug
    /// level only (a first start has no entry; a damaged one is replaced soon).
    pub fn recall(&self) -> Option<Remembered> {
        let bytes = match private_files::read_private_bounded(&self.path, MAX_BYTES) {
            Ok(bytes) => bytes,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::debug!("Not using {}: {e}", self.path.display());
                }
                return None;
            }
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) if entry.version == VERSION && entry.fingerprint == self.fingerprint => {
                Some(entry.remembered)
            }
            Ok(_) => {
                tracing::debug!(
                    "Not using {}: another format or backend",
                    self.path.display()
                );
                None
            }
            Err(e) => {
                tracing::debug!("Not using {}: {e}", self.path.display());
                None
            }
        }
    }

    /// Writes the entry (and forgets entries of others not written for [`FORGET_AFTER`]).
    pub fn keep(&self, remembered: Remembered) -> io::Result<()> {
        let entry = Entry {
            version: VERSION,
            fingerprint: self.fingerprint.clone(),
            remembered,
        };
        let json = serde_json::to_vec(&entry)?;
        if json.len() > MAX_BYTES {
            return Err(io::Error::other(format!(
                "{} bytes, over the limit of {MAX_BYTES}",
                json.len()
            )));
        }
        private_files::replace(&self.dir, &self.path, &json)?;
        self.forget_old();
        Ok(())
    }

    fn forget_old(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age > FORGET_AFTER);
            if old && path != self.path && path.extension().is_some_and(|e| e == "json") {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// What a backend's entry depends on, as a hex SHA-256: never a secret (header names, not
/// values).
fn fingerprint(backend: &Backend) -> String {
    let profile = backend.profile.as_ref().map(|p| {
        serde_json::json!({
            "name": p.name,
            "issuer": p.issuer_url,
            "client_id": p.client_id,
            "scopes": p.scopes,
        })
    });
    let headers: Vec<&str> = backend.headers.iter().map(|(n, _)| n.as_str()).collect();
    let described = serde_json::json!({
        "url": backend.url.as_str(),
        "prefix": backend.prefix,
        "tools": format!("{:?}", backend.tools),
        "resource": format!("{:?}", backend.resource),
        "headers": headers,
        "profile": profile,
    });
    let digest = Sha256::digest(described.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use url::Url;

    use super::*;
    use crate::config::Profile;

    fn backend(url: &str) -> Backend {
        let redirect = Url::parse("http://127.0.0.1:8080/auth/callback").unwrap();
        let profile = Profile::new("corp", Some("https://idp.example"), "client", redirect);
        Backend::new(
            "tools",
            Url::parse(url).unwrap(),
            Some(Arc::new(profile)),
            Some("tools"),
        )
    }

    fn sample() -> Remembered {
        let tool = serde_json::from_value(serde_json::json!({
            "name": "search", "inputSchema": {"type": "object"}
        }))
        .unwrap();
        Remembered {
            introduction: Some(ServerPeerInfo::new(Default::default(), Default::default())),
            tools: Some(vec![tool]),
            ..Remembered::default()
        }
    }

    #[test]
    fn an_entry_is_read_back_as_written_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::of(dir.path(), &backend("https://mcp.example/mcp"));
        assert_eq!(memory.recall(), None, "nothing yet");
        memory.keep(sample()).unwrap();
        assert_eq!(memory.recall(), Some(sample()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(memory.path()), 0o600);
            assert_eq!(mode(&dir.path().join("remembered")), 0o700);
        }
    }

    #[test]
    fn a_change_of_the_backend_invalidates_its_entry_only() {
        let dir = tempfile::tempdir().unwrap();
        let tools = backend("https://mcp.example/mcp");
        let wiki = Backend::new(
            "wiki",
            Url::parse("https://wiki.example/mcp").unwrap(),
            None,
            Some("wiki"),
        );
        Memory::of(dir.path(), &tools).keep(sample()).unwrap();
        Memory::of(dir.path(), &wiki)
            .keep(Remembered::default())
            .unwrap();
        let mut moved = tools.clone();
        moved.url = Url::parse("https://mcp2.example/mcp").unwrap();
        let mut renamed = tools.clone();
        renamed.prefix = Some("t".into());
        let mut other_client = tools.clone();
        let mut profile = (**tools.profile.as_ref().unwrap()).clone();
        profile.client_id = Some("other".into());
        other_client.profile = Some(Arc::new(profile));
        for changed in [moved, renamed, other_client] {
            assert_eq!(Memory::of(dir.path(), &changed).recall(), None);
        }
        assert_eq!(Memory::of(dir.path(), &tools).recall(), Some(sample()));
        assert_eq!(
            Memory::of(dir.path(), &wiki).recall(),
            Some(Remembered::default())
        );
    }

    #[test]
    fn a_damaged_or_foreign_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::of(dir.path(), &backend("https://mcp.example/mcp"));
        memory.keep(sample()).unwrap();
        for damage in [
            b"{\"version\": 1, \"fingerprint\": ".to_vec(),
            b"not json at all".to_vec(),
            serde_json::to_vec(&serde_json::json!({
                "version": 99, "fingerprint": memory.fingerprint, "tools": []
            }))
            .unwrap(),
            serde_json::to_vec(&serde_json::json!({
                "version": VERSION, "fingerprint": "another backend's", "tools": []
            }))
            .unwrap(),
        ] {
            fs::write(memory.path(), damage).unwrap();
            assert_eq!(memory.recall(), None);
        }
        memory.keep(sample()).unwrap();
        assert_eq!(memory.recall(), Some(sample()));
    }

    #[test]
    fn entries_nobody_wrote_for_a_month_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let old = Memory::of(dir.path(), &backend("https://old.example/mcp"));
        let recent = Memory::of(dir.path(), &backend("https://recent.example/mcp"));
        old.keep(sample()).unwrap();
        recent.keep(sample()).unwrap();
        let long_ago = SystemTime::now() - FORGET_AFTER - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(old.path())
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        Memory::of(dir.path(), &backend("https://new.example/mcp"))
            .keep(sample())
            .unwrap();
        assert!(!old.path().exists());
        assert!(recent.path().exists());
    }

    #[test]
    fn no_secret_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut tools = backend("https://mcp.example/mcp");
        tools.headers = vec![(
            "X-Api-Key".into(),
            crate::secret::Secret::new("s3cr3t-value"),
        )];
        let mut profile = (**tools.profile.as_ref().unwrap()).clone();
        profile.client_secret = Some(crate::secret::Secret::new("client-s3cr3t"));
        tools.profile = Some(Arc::new(profile));
        let memory = Memory::of(dir.path(), &tools);
        memory.keep(sample()).unwrap();
        let text = fs::read_to_string(memory.path()).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
