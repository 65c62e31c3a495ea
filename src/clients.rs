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
//!
//! Both verify certificates with the platform's verifier and trust store, read once: loading
//! the system's certificates takes milliseconds, paid at every start.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use reqwest::redirect::{Attempt, Policy};

/// How long one request to an identity provider may take, from connecting to the last byte.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read from an identity provider.
pub const IDP_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How long connecting to any peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many same-origin redirects in a row.
const MAX_REDIRECTS: usize = 5;

/// How long an identity provider's connection may idle in the pool: less than the 5 s after
/// which common servers (Node's among them) close idle connections, so that a request is not
/// sent on one the server is closing (a device-code poll, a refresh after a pause).
const IDP_POOL_IDLE: Duration = Duration::from_secs(4);

/// The TLS configuration both clients share: reqwest's own choice (the platform verifier,
/// TLS 1.2 and 1.3, HTTP/1.1), built once. `None` if it cannot be built: each client then
/// builds its own, and says why it cannot if that fails too.
fn tls() -> Option<rustls::ClientConfig> {
    static TLS: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider)).ok()?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(config)
    })
    .clone()
}

fn builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("authful-mcp-proxy/", env!("CARGO_PKG_VERSION")));
    match tls() {
        Some(tls) => builder.tls_backend_preconfigured(tls),
        None => builder,
    }
}

/// The client for discovery, keys, tokens and every other identity-provider request.
pub fn identity_provider() -> reqwest::Client {
    builder()
        .redirect(Policy::none())
        .timeout(IDP_TIMEOUT)
        .pool_idle_timeout(IDP_POOL_IDLE)
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
