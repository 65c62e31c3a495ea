//! The proxy's two HTTP clients, one per kind of peer, because they must not share a redirect
//! policy.
//!
//! - **Identity providers** ([`identity_provider`]): no redirect is ever followed (a `3xx` is
//!   an error naming the URL, see [`crate::auth::oidc`]), each request has 30 s in all, and an
//!   answer may be 1 MiB at most, so a stalled or hostile provider cannot hold a login (and the
//!   locks it holds) forever, nor fill memory.
//! - **Backends** ([`backend`]): only a `307`/`308` to the same origin (scheme, host and port)
//!   is followed, as rmcp's own client does. Anything else is an error naming both URLs: a
//!   backend's static headers (API keys), session id, request body and bearer token never reach
//!   another server, and a redirect never changes `https` into `http`.

use std::time::Duration;

use reqwest::redirect::{Attempt, Policy};

/// How long one request to an identity provider may take, from connecting to the last byte.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read from an identity provider.
pub const IDP_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How long connecting to any peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many same-origin redirects in a row.
const MAX_REDIRECTS: usize = 5;

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("authful-mcp-proxy/", env!("CARGO_PKG_VERSION")))
}

/// The client for discovery, keys, tokens and every other identity-provider request.
pub fn identity_provider() -> reqwest::Client {
    builder()
        .redirect(Policy::none())
        .timeout(IDP_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// The client for MCP requests to backends.
pub fn backend() -> reqwest::Client {
    builder()
        .redirect(Policy::custom(same_origin_only))
        .build()
        .unwrap_or_default()
}

fn same_origin_only(attempt: Attempt) -> reqwest::redirect::Action {
    let status = attempt.status().as_u16();
    let Some(from) = attempt.previous().last() else {
        return attempt.stop();
    };
    let to = attempt.url();
    let refusal = if from.origin() != to.origin() {
        Some("another origin")
    } else if !matches!(status, 307 | 308) {
        Some("a redirect that would change the request")
    } else if attempt.previous().len() > MAX_REDIRECTS {
        Some("too many redirects")
    } else {
        None
    };
    match refusal {
        None => attempt.follow(),
        Some(why) => {
            let message = format!(
                "the server redirected (HTTP {status}) from {from} to {to}, {why}: the proxy \
                 follows only 307/308 redirects within the same origin, so that no header, \
                 session or token reaches another server; set the backend's url to the address \
                 it redirects to if that is where it lives"
            );
            attempt.error(message)
        }
    }
}
