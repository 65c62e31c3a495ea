//! A wrapper for credentials that must never reach a log line or an error message.

use std::fmt;

use sha2::{Digest, Sha256};

/// A token, code or client secret. `Debug` and `Display` show only a short fingerprint, so a
/// value that slips into a `tracing` field or a formatted error stays unreadable.
///
/// ```
/// use authful_mcp_proxy::secret::Secret;
///
/// let token = Secret::new("eyJhbGciOiJSUzI1NiJ9.payload.signature");
/// assert!(!format!("{token:?} {token}").contains("eyJ"));
/// assert_eq!(token.expose(), "eyJhbGciOiJSUzI1NiJ9.payload.signature");
/// ```
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 8 hex digits of the SHA-256 of the value: enough to tell two tokens apart in a
    /// debug log, useless for recovering the token.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(sha256:{})", self.fingerprint())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("super-secret-token-value");
        for shown in [format!("{secret:?}"), format!("{secret}")] {
            assert!(!shown.contains("super-secret"), "{shown}");
            assert!(shown.contains(&secret.fingerprint()));
        }
        assert_eq!(secret.fingerprint().len(), 8);
        assert_ne!(secret.fingerprint(), Secret::new("other").fingerprint());
    }
}
