//! Who the proxy is at an authorization server: its [`Client`].
//!
//! A company's identity provider knows the proxy's client because an administrator registered
//! it and wrote its `client_id` into the profile. A public MCP server's authorization server
//! has never heard of it, so the MCP authorization spec gives a client two ways in, tried in
//! this order when the profile names no client id:
//!
//! 1. **A client ID metadata document** (CIMD): the client id is the `https://` URL of a JSON
//!    document that describes the client, which the server fetches itself. Used when the
//!    profile names one (`client_metadata_url`, or a `client_id` that is such a URL) and the
//!    server announces `client_id_metadata_document_supported`.
//! 2. **Dynamic client registration** (RFC 7591): the proxy POSTs its metadata to the server's
//!    `registration_endpoint` and gets a client id (and maybe a secret). The registration is
//!    kept in the cache directory, one owner-only file per server and redirect URL, and reused
//!    by every later sign-in and every process; one the server no longer knows
//!    (`invalid_client`) or whose secret expired is replaced by a new registration.
//!
//! A server that offers neither is an error that says to register a client there by hand. The
//! registration endpoint is the authorization server's own (its metadata, checked like its
//! other endpoints), so nothing here goes to a server the profile does not sign in at; the
//! secret it hands out is a [`Secret`] and is written only to the owner-only file.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    AuthError,
    cache::{sanitize, unix_now},
    client_auth::ClientAuth,
    provider_http::send,
};
use crate::{
    config::{Flow, Profile},
    error_text::{chain, untrusted},
    private_files::{check_dir, read_private_bounded, replace},
    secret::Secret,
};

/// The largest registration file read back (a client id, a secret, a few URLs).
const MAX_FILE_BYTES: usize = 64 * 1024;
/// A registration whose secret expires within this many seconds is replaced now.
const EXPIRY_MARGIN_SECS: u64 = 60;

/// The client the proxy is at one authorization server.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its `client_id` there.
    pub id: String,
    /// How it proves itself at the token endpoint.
    pub auth: ClientAuth,
    /// Where the id comes from.
    pub kind: Kind,
}

/// Where a client id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The profile's `client_id`, registered by an administrator.
    Configured,
    /// The URL of its metadata document (CIMD).
    MetadataDocument,
    /// Registered by the proxy (RFC 7591), kept in the cache directory.
    Registered,
}

impl Kind {
    /// What the logs call it.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Configured => "the configured client",
            Kind::MetadataDocument => "a client ID metadata document",
            Kind::Registered => "a client registered by the proxy (RFC 7591)",
        }
    }
}

/// What an authorization server's metadata says about the ways in.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    /// The issuer identifier.
    pub issuer: String,
    /// Its `registration_endpoint` (RFC 7591), checked like its other endpoints.
    pub registration_endpoint: Option<String>,
    /// `client_id_metadata_document_supported`.
    pub metadata_documents: bool,
}

/// The registrations kept in one cache directory.
#[derive(Debug, Clone)]
pub struct Registrations {
    dir: PathBuf,
}

/// One registration as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    issuer: String,
    redirect_uri: String,
    client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<Secret>,
    /// Unix seconds; `0` or absent: never (RFC 7591 §3.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret_expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_method: Option<String>,
}

/// The parts of a registration response the proxy uses (RFC 7591 §3.2.1).
#[derive(Deserialize)]
struct Registered {
    client_id: String,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    client_secret_expires_at: Option<u64>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

impl Stored {
    fn usable(&self) -> bool {
        match self.client_secret_expires_at {
            Some(at) if at != 0 => at > unix_now().saturating_add(EXPIRY_MARGIN_SECS),
            _ => true,
        }
    }

    fn client(&self) -> Client {
        let auth = match (
            &self.client_secret,
            self.token_endpoint_auth_method.as_deref(),
        ) {
            (Some(secret), Some("client_secret_post")) => ClientAuth::Post(secret.clone()),
            (Some(secret), _) => ClientAuth::Basic(secret.clone()),
            (None, _) => ClientAuth::Public,
        };
        Client {
            id: self.client_id.clone(),
            auth,
            kind: Kind::Registered,
        }
    }
}

impl Registrations {
    /// The registrations kept in `dir` (the token cache's directory).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The file of the registration at `issuer` for `redirect_uri`, e.g.
    /// `https_mcp_example_com_1a2b3c4d_client.json`.
    fn path(&self, issuer: &str, redirect_uri: &str) -> PathBuf {
        let key = serde_json::to_vec(&(issuer, redirect_uri)).unwrap_or_default();
        let hash: String = Sha256::digest(&key)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Named like the token files: the readable issuer, then the hash.
        self.dir
            .join(format!("{}_{hash}_client.json", sanitize(issuer)))
    }

    /// The kept registration at `issuer` for `redirect_uri`, if there is a usable one.
    fn load(&self, issuer: &str, redirect_uri: &str) -> Option<Stored> {
        check_dir(&self.dir).ok()?;
        let path = self.path(issuer, redirect_uri);
        let bytes = match read_private_bounded(&path, MAX_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("Ignoring the client registration {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice::<Stored>(&bytes) {
            Ok(stored) if stored.issuer == issuer && stored.redirect_uri == redirect_uri => {
                stored.usable().then_some(stored)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(
                    "Ignoring the corrupt client registration {} ({e}); the proxy registers \
                     again",
                    path.display()
                );
                None
            }
        }
    }

    fn save(&self, stored: &Stored) -> io::Result<()> {
        let path = self.path(&stored.issuer, &stored.redirect_uri);
        replace(&self.dir, &path, &serde_json::to_vec_pretty(stored)?)
    }

    /// Forgets the registration at `issuer` for `redirect_uri` (the server no longer knows it).
    pub fn forget(&self, issuer: &str, redirect_uri: &str) {
        let path = self.path(issuer, redirect_uri);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("Cannot remove {}: {e}", path.display());
        }
    }
}

/// The client `profile` is at the server of `offer` without registering anything: the
/// configured id, a metadata document the server takes, or a kept registration. `None`: it
/// has to register ([`register`]).
pub fn known(
    profile: &Profile,
    offer: &Offer,
    registrations: &Registrations,
    supported: Option<&[openidconnect::core::CoreClientAuthMethod]>,
) -> Option<Client> {
    if let Some(id) = &profile.client_id {
        return Some(Client {
            id: id.clone(),
            auth: ClientAuth::choose(profile, supported),
            kind: Kind::Configured,
        });
    }
    if let Some(url) = &profile.client_metadata_url
        && offer.metadata_documents
    {
        return Some(Client {
            id: url.clone(),
            auth: ClientAuth::Public,
            kind: Kind::MetadataDocument,
        });
    }
    registrations
        .load(&offer.issuer, profile.redirect_url.as_str())
        .map(|stored| stored.client())
}

/// Registers the proxy at the server of `offer` (RFC 7591) as a public native client of
/// `profile`'s flow and redirect URL, and keeps the registration.
pub async fn register(
    http: &reqwest::Client,
    profile: &Profile,
    offer: &Offer,
    registrations: &Registrations,
) -> Result<Client, AuthError> {
    let failed = |reason: String| AuthError::Registration {
        profile: profile.name.clone(),
        issuer: offer.issuer.clone(),
        reason,
    };
    let Some(endpoint) = &offer.registration_endpoint else {
        let cimd = match (&profile.client_metadata_url, offer.metadata_documents) {
            (Some(_), false) => "does not take client ID metadata documents and ",
            _ => "",
        };
        return Err(failed(format!(
            "the server {cimd}offers no dynamic client registration (RFC 7591): register a \
             client there and set the profile's client_id"
        )));
    };
    let redirect_uri = profile.redirect_url.to_string();
    let body = metadata(profile, &redirect_uri);
    let request = http::Request::post(endpoint.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(serde_json::to_vec(&body).map_err(|e| failed(e.to_string()))?)
        .map_err(|e| failed(e.to_string()))?;
    let response = send(http.clone(), request).await.map_err(|e| {
        failed(format!(
            "the registration request to {endpoint} failed: {}",
            chain(&e)
        ))
    })?;
    if !response.status().is_success() {
        let said = serde_json::from_slice::<serde_json::Value>(response.body())
            .ok()
            .and_then(|v| {
                let error = v["error"].as_str()?.to_owned();
                let description = v["error_description"].as_str().unwrap_or_default();
                Some(
                    untrusted(&format!("{error} {description}"))
                        .trim()
                        .to_owned(),
                )
            })
            .unwrap_or_default();
        return Err(failed(format!(
            "{endpoint} refused the registration: HTTP {} {said} (a server that registers \
             only clients an administrator approves needs a client_id in the profile)",
            response.status()
        )));
    }
    let registered: Registered = serde_json::from_slice(response.body()).map_err(|e| {
        failed(format!(
            "unreadable registration response from {endpoint}: {e}"
        ))
    })?;
    let id = &registered.client_id;
    if id.is_empty() || id.len() > 1024 || id.chars().any(char::is_control) {
        return Err(failed(format!(
            "{endpoint} answered without a usable client_id"
        )));
    }
    let stored = Stored {
        issuer: offer.issuer.clone(),
        redirect_uri,
        client_id: registered.client_id,
        client_secret: registered.client_secret,
        client_secret_expires_at: registered.client_secret_expires_at,
        token_endpoint_auth_method: registered.token_endpoint_auth_method,
    };
    if let Err(e) = registrations.save(&stored) {
        // The client still works for this process; the next one registers again.
        tracing::warn!(
            "Cannot keep the client registration at {}: {e}",
            offer.issuer
        );
    }
    tracing::info!(
        "Profile '{}': registered a client at {} (RFC 7591)",
        profile.name,
        offer.issuer
    );
    Ok(stored.client())
}

/// The client metadata the proxy registers (RFC 7591 §2): a native public client of its flow.
fn metadata(profile: &Profile, redirect_uri: &str) -> serde_json::Value {
    let mut grant_types = vec!["refresh_token"];
    let mut body = serde_json::json!({
        "client_name": "authful-mcp-proxy",
        "software_id": "authful-mcp-proxy",
        "software_version": env!("CARGO_PKG_VERSION"),
        "application_type": "native",
        "token_endpoint_auth_method": "none",
    });
    match profile.flow {
        Flow::Device => grant_types.insert(0, "urn:ietf:params:oauth:grant-type:device_code"),
        _ => {
            grant_types.insert(0, "authorization_code");
            body["redirect_uris"] = serde_json::json!([redirect_uri]);
            body["response_types"] = serde_json::json!(["code"]);
        }
    }
    body["grant_types"] = serde_json::json!(grant_types);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(expires: Option<u64>) -> Stored {
        Stored {
            issuer: "https://as.example".into(),
            redirect_uri: "http://localhost:8080/auth/callback".into(),
            client_id: "dyn-1".into(),
            client_secret: None,
            client_secret_expires_at: expires,
            token_endpoint_auth_method: None,
        }
    }

    #[test]
    fn a_registration_is_kept_owner_only_and_read_back_for_its_server_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let registrations = Registrations::new(&cache);
        registrations.save(&stored(None)).unwrap();
        let redirect = "http://localhost:8080/auth/callback";
        assert_eq!(
            registrations
                .load("https://as.example", redirect)
                .map(|s| s.client_id),
            Some("dyn-1".into())
        );
        assert!(
            registrations
                .load("https://other.example", redirect)
                .is_none()
        );
        assert!(
            registrations
                .load("https://as.example", "http://localhost:9/cb")
                .is_none()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = registrations.path("https://as.example", redirect);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        registrations.forget("https://as.example", redirect);
        assert!(registrations.load("https://as.example", redirect).is_none());
    }

    #[test]
    fn a_registration_whose_secret_expired_is_not_used() {
        assert!(stored(None).usable());
        assert!(stored(Some(0)).usable(), "0 means never");
        assert!(!stored(Some(unix_now() + 10)).usable());
        assert!(stored(Some(unix_now() + 3600)).usable());
    }

    #[test]
    fn the_registered_metadata_fits_the_flow() {
        let mut profile = Profile::new(
            "p",
            None,
            "unused",
            url::Url::parse("http://localhost:8080/auth/callback").unwrap(),
        );
        let browser = metadata(&profile, "http://localhost:8080/auth/callback");
        assert_eq!(
            browser["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(
            browser["redirect_uris"],
            serde_json::json!(["http://localhost:8080/auth/callback"])
        );
        assert_eq!(browser["token_endpoint_auth_method"], "none");
        profile.flow = Flow::Device;
        let device = metadata(&profile, "http://localhost:8080/auth/callback");
        assert!(device.get("redirect_uris").is_none());
        assert_eq!(
            device["grant_types"][0],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
    }
}
