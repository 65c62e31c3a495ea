//! How the client proves who it is to the identity provider, on every request to its token,
//! device-authorization and revocation endpoints.
//!
//! - A public client (a desktop app) sends only its `client_id`.
//! - A confidential client sends its secret: as HTTP Basic, RFC 6749's default, or in the
//!   form where the provider advertises only `client_secret_post`.
//! - A client with a key pair sends a JWT signed with its private key (RFC 7523,
//!   `private_key_jwt`): no shared secret to leak, the form service accounts in CI favour. The
//!   assertion is made fresh for every request — providers refuse a replayed `jti` — and the
//!   key file is read each time, so a rotated key is picked up without a restart. On Unix, a
//!   key file that is not its user's alone (another owner, or any access for group or others)
//!   is refused before anything is sent, as OpenSSH refuses such private keys.

use std::{io::Read, path::Path};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openidconnect::{CsrfToken, core::CoreClientAuthMethod};
use serde::Serialize;

use super::{AuthError, cache::unix_now};
use crate::{
    config::{AssertionAlgorithm, AssertionAudience, ClientAssertion, Profile},
    secret::Secret,
};

/// `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one request, too short to be worth stealing.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// The client's credentials, and how they travel.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client: `client_id` in the form.
    Public,
    /// `Authorization: Basic` with the id and secret (`client_secret_basic`).
    Basic(Secret),
    /// The secret in the form (`client_secret_post`).
    Post(Secret),
    /// A signed JWT in the form (`private_key_jwt`).
    PrivateKeyJwt(ClientAssertion),
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl ClientAuth {
    /// The credentials of `profile`, sent the way the provider takes them (`supported`: its
    /// `token_endpoint_auth_methods_supported`, if it lists them).
    pub fn choose(profile: &Profile, supported: Option<&[CoreClientAuthMethod]>) -> Self {
        if let Some(assertion) = &profile.client_assertion {
            return Self::PrivateKeyJwt(assertion.clone());
        }
        let Some(secret) = profile.client_secret.clone() else {
            return Self::Public;
        };
        let supports = |m: &CoreClientAuthMethod| supported.is_none_or(|list| list.contains(m));
        // client_secret_basic is the spec's default; _post where only that exists.
        if supports(&CoreClientAuthMethod::ClientSecretBasic) {
            Self::Basic(secret)
        } else {
            Self::Post(secret)
        }
    }

    /// What the logs call it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Public => "none",
            Self::Basic(_) => "client_secret_basic",
            Self::Post(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }

    /// Adds the client's credentials to a form POSTed to `endpoint` of `issuer`; returns the
    /// `Authorization` header value to send, if the credentials travel in one.
    pub fn apply(
        &self,
        client_id: &str,
        issuer: &str,
        endpoint: &str,
        form: &mut Vec<(String, String)>,
    ) -> Result<Option<Secret>, AuthError> {
        match self {
            Self::Basic(secret) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before the Base64.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair = format!("{}:{}", encode(client_id), encode(secret.expose()));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                return Ok(Some(Secret::new(format!("Basic {basic}"))));
            }
            Self::Public => form.push(("client_id".into(), client_id.into())),
            Self::Post(secret) => {
                form.push(("client_id".into(), client_id.into()));
                form.push(("client_secret".into(), secret.expose().to_owned()));
            }
            Self::PrivateKeyJwt(key) => {
                form.push(("client_id".into(), client_id.into()));
                form.push(("client_assertion_type".into(), JWT_BEARER.into()));
                let audience = match &key.audience {
                    AssertionAudience::TokenEndpoint => endpoint,
                    AssertionAudience::Issuer => issuer,
                    AssertionAudience::Url(url) => url,
                };
                form.push((
                    "client_assertion".into(),
                    assertion(key, client_id, audience)?,
                ));
            }
        }
        Ok(None)
    }
}

/// A fresh assertion for one request, for `audience`.
fn assertion(key: &ClientAssertion, client_id: &str, audience: &str) -> Result<String, AuthError> {
    let unusable = |reason: String| {
        AuthError::ClientKey(format!(
            "cannot sign the client assertion with {}: {reason}",
            key.key_file.display()
        ))
    };
    let pem = read_private_credential(
        &key.key_file,
        "the client assertion key",
        AuthError::ClientKey,
        unusable,
    )?;
    let algorithm = algorithm(key.algorithm);
    let encoding = match key.algorithm {
        AssertionAlgorithm::ES256 | AssertionAlgorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        AssertionAlgorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| unusable(format!("not a {algorithm:?} private key in PEM ({e})")))?;
    let now = unix_now();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti: CsrfToken::new_random().secret().clone(),
        iat: now,
        exp: now + ASSERTION_LIFETIME_SECS,
    };
    let mut header = Header::new(algorithm);
    header.kid = key.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &encoding).map_err(|e| unusable(e.to_string()))
}

/// The bytes of a file holding a credential (`what`: a private key, an ID token), or why they
/// cannot be had: `unusable` says why the file cannot be read; a file that is not the user's
/// alone is `refused` in words of its own.
///
/// The ownership and mode checked are those of the file opened, after any symbolic link: the
/// key's path comes from the configuration's author, who chose where it points; what matters is
/// who else can read the key itself. Checking the open file, not the path, also leaves no gap
/// between the check and the read.
pub(super) fn read_private_credential(
    path: &Path,
    what: &str,
    refused: impl Fn(String) -> AuthError,
    unusable: impl Fn(String) -> AuthError,
) -> Result<Vec<u8>, AuthError> {
    let mut file = std::fs::File::open(path).map_err(|e| unusable(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(|e| unusable(e.to_string()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if let Some(problem) = key_file_problem(path, what, meta.uid(), meta.mode(), me) {
            return Err(refused(problem));
        }
    }
    // Elsewhere the file's access is the system's (ACLs) to judge.
    #[cfg(not(unix))]
    let _ = (what, refused);
    let mut pem = Vec::new();
    file.read_to_end(&mut pem)
        .map_err(|e| unusable(e.to_string()))?;
    Ok(pem)
}

/// Why a key file owned by `owner` with `mode` is not the private key of user `me`, if it is
/// not.
///
/// Any permission for group or others refuses it (`mode & 0o077`), not only the read bits
/// (`0o044`) that leak the key: a key others may rewrite is not the client's own either (they
/// choose what the proxy signs with, and can read it back through a looser mode they set), the
/// execute bits mean nothing on a key and only come with a careless `chmod`, and OpenSSH
/// refuses private keys by the same rule — one rule people know, with one fix, `chmod 600`.
#[cfg(unix)]
fn key_file_problem(path: &Path, what: &str, owner: u32, mode: u32, me: u32) -> Option<String> {
    let shown = path.display();
    if owner != me {
        return Some(format!(
            "{what} {shown} belongs to another user (uid {owner}, you are uid \
             {me}); use a file of your own, readable by you only (`chmod 600`)"
        ));
    }
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Some(format!(
            "{what} {shown} is open to other users (mode {mode:04o}); a \
             credential must be its owner's alone: run `chmod 600 {}`",
            shell_word(path)
        ));
    }
    None
}

/// `path` as one word of a shell command line, quoted only when it needs it.
#[cfg(unix)]
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%~=".contains(c);
    if !text.is_empty() && text.chars().all(plain) && !text.starts_with('~') {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn algorithm(algorithm: AssertionAlgorithm) -> Algorithm {
    match algorithm {
        AssertionAlgorithm::RS256 => Algorithm::RS256,
        AssertionAlgorithm::RS384 => Algorithm::RS384,
        AssertionAlgorithm::RS512 => Algorithm::RS512,
        AssertionAlgorithm::PS256 => Algorithm::PS256,
        AssertionAlgorithm::PS384 => Algorithm::PS384,
        AssertionAlgorithm::PS512 => Algorithm::PS512,
        AssertionAlgorithm::ES256 => Algorithm::ES256,
        AssertionAlgorithm::ES384 => Algorithm::ES384,
        AssertionAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_both_parts_first() {
        let auth = ClientAuth::Basic(Secret::new("s3:cr/t"));
        let mut form = Vec::new();
        let header = auth
            .apply("my client", "https://i", "https://i/token", &mut form)
            .unwrap()
            .unwrap();
        let encoded = header.expose().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+client:s3%3Acr%2Ft");
        assert!(form.is_empty());
    }

    #[test]
    fn a_missing_key_file_is_an_error_that_names_it() {
        let key = ClientAssertion {
            key_file: "/nonexistent/key.pem".into(),
            algorithm: AssertionAlgorithm::RS256,
            key_id: None,
            audience: AssertionAudience::TokenEndpoint,
        };
        let error = ClientAuth::PrivateKeyJwt(key)
            .apply("c", "https://i", "https://i/token", &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/key.pem"), "{error}");
    }

    /// What signing with `key_file` (RS256) says, or `None` when it signs.
    #[cfg(unix)]
    fn sign_with(key_file: &Path) -> Option<String> {
        let key = ClientAssertion {
            key_file: key_file.to_path_buf(),
            algorithm: AssertionAlgorithm::RS256,
            key_id: None,
            audience: AssertionAudience::TokenEndpoint,
        };
        ClientAuth::PrivateKeyJwt(key)
            .apply("c", "https://i", "https://i/token", &mut Vec::new())
            .err()
            .map(|e| e.to_string())
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_open_to_other_users_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.pem");
        // Not a key: the modes that pass get as far as parsing it, and fail there.
        std::fs::write(&key_file, "not a key").unwrap();
        let set = |mode| {
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        for mode in [
            0o644, 0o640, 0o604, 0o660, 0o620, 0o602, 0o610, 0o601, 0o777,
        ] {
            set(mode);
            let error = sign_with(&key_file).expect("refused");
            assert!(
                error.contains(&format!("mode {mode:04o}"))
                    && error.contains(&format!("chmod 600 {}", key_file.display())),
                "{mode:o}: {error}"
            );
        }
        for mode in [0o600, 0o400] {
            set(mode);
            let error = sign_with(&key_file).expect("not a key");
            assert!(
                error.contains("not a RS256 private key"),
                "{mode:o}: {error}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_of_another_user_is_refused() {
        let path = Path::new("/keys/ci.pem");
        let problem = key_file_problem(path, "the client assertion key", 1001, 0o100600, 1000)
            .expect("refused");
        assert!(
            problem.contains("/keys/ci.pem") && problem.contains("another user (uid 1001"),
            "{problem}"
        );
        assert_eq!(
            key_file_problem(path, "the client assertion key", 1000, 0o100600, 1000),
            None
        );
        assert_eq!(
            key_file_problem(path, "the client assertion key", 1000, 0o100400, 1000),
            None
        );

        // A real file given away, where the test may do that (as root, in a container).
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let dir = tempfile::tempdir().unwrap();
            let key_file = dir.path().join("key.pem");
            std::fs::write(&key_file, "not a key").unwrap();
            std::os::unix::fs::chown(&key_file, Some(65534), None).unwrap();
            let error = sign_with(&key_file).expect("refused");
            assert!(
                error.contains("belongs to another user (uid 65534, you are uid 0)"),
                "{error}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_chmod_command_is_one_shell_word() {
        assert_eq!(shell_word(Path::new("/home/a/key.pem")), "/home/a/key.pem");
        assert_eq!(
            shell_word(Path::new("/home/a/my key's.pem")),
            r"'/home/a/my key'\''s.pem'"
        );
        assert_eq!(shell_word(Path::new("~/k.pem")), "'~/k.pem'");
    }
}
