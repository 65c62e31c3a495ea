//! The device authorization grant (RFC 8628): the codes a person is shown (checked, since a
//! provider's words reach a terminal and a browser), and the polls of the token endpoint until
//! the person has signed in, paced by the provider's interval and its `slow_down`s.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{
    Provider,
    token_endpoint::{Granted, TokenError, oauth_error},
};
use crate::{auth::AuthError, config::endpoint_problem, error_text::untrusted, secret::Secret};

/// The longest pause between device-code polls a provider may ask for (`interval`, and after
/// each `slow_down`): longer, and a code would expire between two polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// A device authorization (RFC 8628 §3.2): what the person is told, and what the proxy polls
/// with.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// The code the token requests carry.
    pub device_code: Secret,
    /// The code the person enters.
    pub user_code: String,
    /// Where the person enters it.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// The same page with the code filled in, if the provider offers one.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls (RFC 8628: 5 when the provider says nothing).
    #[serde(default = "default_device_interval")]
    pub interval: u64,
}

fn default_device_interval() -> u64 {
    5
}

impl DeviceAuthorization {
    /// The authorization as it may be shown to a person: its URLs are `https://` (or `http://`
    /// on a loopback host) like every other endpoint of the provider — never `javascript:` or
    /// `file:` — and its code holds no terminal escapes; its numbers are clamped to what a
    /// sign-in can use.
    fn checked(mut self) -> Result<Self, String> {
        let safe = |name: &str, uri: &str| -> Result<String, String> {
            let problem = match Url::parse(uri) {
                // Shown as parsed: a URL's serialization holds no control characters.
                Ok(url) => match endpoint_problem(&url) {
                    None => return Ok(url.to_string()),
                    Some(problem) => problem,
                },
                Err(e) => format!("'{uri}' is not a URL ({e})"),
            };
            Err(format!(
                "its device authorization gives {name} {}; the sign-in is refused",
                untrusted(&problem)
            ))
        };
        self.verification_uri = safe("verification_uri", &self.verification_uri)?;
        if let Some(complete) = &self.verification_uri_complete {
            self.verification_uri_complete = Some(safe("verification_uri_complete", complete)?);
        }
        let code = untrusted(&self.user_code);
        if code.trim().is_empty() {
            return Err("its device authorization gives an empty user_code".to_owned());
        }
        self.user_code = code;
        self.interval = self.interval.clamp(1, MAX_POLL_INTERVAL.as_secs());
        Ok(self)
    }
}

impl Provider {
    /// Starts a device authorization (RFC 8628 §3.1) for `scopes` and `resources`.
    pub async fn start_device(
        &self,
        scopes: &[String],
        resources: &[String],
    ) -> Result<DeviceAuthorization, AuthError> {
        let endpoint = self
            .metadata
            .read()
            .ok()
            .and_then(|m| {
                m.additional_metadata()
                    .device_authorization_endpoint
                    .clone()
            })
            .ok_or_else(|| AuthError::FlowUnsupported {
                issuer: self.issuer.clone(),
                flow: "device",
                missing: "device_authorization_endpoint",
            })?;
        let mut form = vec![("scope".into(), scopes.join(" "))];
        form.extend(resources.iter().map(|r| ("resource".into(), r.clone())));
        form.extend(self.profile.authorize_params.iter().cloned());
        let response = self
            .post(&endpoint, form)
            .await
            .map_err(|e| AuthError::TokenEndpoint(format!("device authorization failed: {e}")))?;
        if !response.status().is_success() {
            return Err(AuthError::TokenEndpoint(format!(
                "device authorization failed: {}",
                oauth_error(&response)
            )));
        }
        let device: DeviceAuthorization = serde_json::from_slice(response.body()).map_err(|e| {
            AuthError::TokenEndpoint(format!("unreadable device authorization response: {e}"))
        })?;
        device
            .checked()
            .map_err(|reason| AuthError::UnsafeProvider {
                issuer: self.issuer.clone(),
                reason,
            })
    }

    /// Polls the token endpoint once for a device code (RFC 8628 §3.4); the ID token, if any,
    /// is validated (it carries no nonce).
    pub async fn poll_device(
        &self,
        device: &DeviceAuthorization,
        resource: Option<&str>,
    ) -> Result<Granted, TokenError> {
        let form = vec![("device_code".into(), device.device_code.expose().to_owned())];
        let (granted, id_token) = self
            .token_request(
                "urn:ietf:params:oauth:grant-type:device_code",
                form,
                resource,
            )
            .await?;
        if let Some(id_token) = id_token {
            self.validate(&id_token, None)
                .await
                .map_err(|e| TokenError::Failed(e.to_string()))?;
        }
        Ok(granted)
    }
}

/// How long to wait before polling a device code again: the provider's interval, grown by 5 s
/// at each `slow_down` (RFC 8628 §3.5).
pub fn next_poll_interval(current: Duration, error: &TokenError) -> Duration {
    match error.code() {
        Some("slow_down") => current
            .saturating_add(Duration::from_secs(5))
            .min(MAX_POLL_INTERVAL),
        _ => current,
    }
}
