//! One request to an identity provider, as [`openidconnect`] asks for it over our own reqwest
//! client: to `https://` (or `http://` on a loopback host) only, following no redirect, and
//! reading at most [`IDP_MAX_RESPONSE_BYTES`], within [`IDP_TIMEOUT`] in all.

use url::Url;

use crate::{
    clients::{IDP_MAX_RESPONSE_BYTES, IDP_TIMEOUT},
    config::endpoint_problem,
    error_text::chain,
};

/// Why a request to an identity provider was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ProviderRequestError {
    /// The URL is not `https://` (or loopback `http://`).
    #[error("refused to send a request to {url}: {problem}")]
    Insecure {
        /// Where the request would have gone.
        url: String,
        /// Why not.
        problem: String,
    },
    /// The provider answered with a redirect.
    #[error(
        "{url} answered HTTP {status}, a redirect to {location}: requests to identity providers \
         follow no redirects (set issuer_url to the provider's own address)"
    )]
    Redirect {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// Where it pointed.
        location: String,
    },
    /// The answer was larger than the limit.
    #[error("{url} answered more than {} KiB; the provider's answers are limited to that", IDP_MAX_RESPONSE_BYTES / 1024)]
    TooLarge {
        /// The request URL.
        url: String,
    },
    /// Connecting, sending or receiving failed (or took longer than the request timeout).
    #[error("{url}: {reason}")]
    Http {
        /// The request URL.
        url: String,
        /// What happened.
        reason: String,
    },
}

/// Sends one request to the provider: secure URLs only, no redirects, a bounded answer.
pub(super) async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, ProviderRequestError> {
    let (parts, body) = request.into_parts();
    let url = parts.uri.to_string();
    let parsed = Url::parse(&url).map_err(|e| ProviderRequestError::Insecure {
        url: url.clone(),
        problem: e.to_string(),
    })?;
    if let Some(problem) = endpoint_problem(&parsed) {
        return Err(ProviderRequestError::Insecure { url, problem });
    }
    let failed = |e: reqwest::Error| ProviderRequestError::Http {
        url: url.clone(),
        reason: if e.is_timeout() {
            format!(
                "no answer within {} s; the identity provider is slow or down, try again later",
                IDP_TIMEOUT.as_secs()
            )
        } else {
            chain(&e)
        },
    };
    let mut response = client
        .request(parts.method, url.as_str())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("nowhere")
            .to_owned();
        return Err(ProviderRequestError::Redirect {
            url,
            status: status.as_u16(),
            location,
        });
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > IDP_MAX_RESPONSE_BYTES {
            return Err(ProviderRequestError::TooLarge { url });
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}
