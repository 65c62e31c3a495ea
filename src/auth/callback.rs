//! The loopback server that receives the browser's redirect after login. It lives only for the
//! duration of one login, on the redirect URL's own host, port and path.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::StatusCode,
    response::Html,
    routing::get,
};
use tokio::sync::{mpsc, oneshot};
use url::Url;

use super::AuthError;
use crate::{error_text::bounded, secret::Secret};

/// What the callback carried: a code, or the provider's refusal.
type Outcome = Result<Secret, AuthError>;

#[derive(Clone)]
struct Shared {
    state: Arc<str>,
    outcome: mpsc::Sender<Outcome>,
    issuer: Arc<str>,
    /// The provider promises `iss` in its responses (RFC 9207).
    iss_required: bool,
    /// Set by the first callback that ends the login.
    used: Arc<AtomicBool>,
}

/// A running callback server; dropping it stops the server.
pub struct CallbackServer {
    outcome: mpsc::Receiver<Outcome>,
    _stop: Vec<oneshot::Sender<()>>,
}

#[derive(serde::Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// Addresses to listen on for a loopback redirect host: `localhost` may resolve to either
/// family, so both loopback addresses are tried for it.
fn listen_addresses(url: &Url) -> Vec<IpAddr> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        _ => vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
    }
}

impl CallbackServer {
    /// Binds the redirect URL's port on loopback and starts serving its path. The response
    /// must carry `state`; an `iss` in it must be `issuer`, and `iss_required` makes it
    /// mandatory (RFC 9207: a response from another provider must not complete this login).
    pub async fn start(
        redirect_url: &Url,
        state: &str,
        issuer: &str,
        iss_required: bool,
    ) -> Result<Self, AuthError> {
        let port = redirect_url.port_or_known_default().unwrap_or(80);
        let (tx, rx) = mpsc::channel(1);
        let shared = Shared {
            state: state.into(),
            outcome: tx,
            issuer: issuer.into(),
            iss_required,
            used: Arc::default(),
        };
        let path = match redirect_url.path() {
            "" => "/",
            p => p,
        };
        let app = Router::new()
            .route(path, get(callback))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Html(page("Not found", "Nothing here.")),
                )
            })
            .with_state(shared);
        let mut stops = Vec::new();
        for (i, ip) in listen_addresses(redirect_url).into_iter().enumerate() {
            let addr = SocketAddr::new(ip, port);
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                // The first address is the one that must work; the other family is a bonus.
                Err(_) if i > 0 => continue,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(AuthError::PortInUse {
                        port,
                        redirect_url: redirect_url.to_string(),
                    });
                }
                Err(e) => {
                    return Err(AuthError::Callback(format!(
                        "cannot listen on {addr} for {redirect_url}: {e}"
                    )));
                }
            };
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            stops.push(stop_tx);
            let app = app.clone();
            // Not owned, and it needs no owner: it ends when this `CallbackServer` is dropped
            // (the login done, failed or abandoned at shutdown), which drops `stop_tx`. Ending
            // gracefully lets the page of the redirect that completed the login reach the
            // browser; aborting the task could cut it off.
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        }
        tracing::debug!("Login callback server listening on {redirect_url}");
        Ok(Self {
            outcome: rx,
            _stop: stops,
        })
    }

    /// Waits for the redirect that carries this login's state.
    pub async fn wait(mut self, timeout: Duration) -> Result<Secret, AuthError> {
        match tokio::time::timeout(timeout, self.outcome.recv()).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Err(AuthError::Callback("callback server stopped".into())),
            Err(_) => Err(AuthError::LoginTimeout {
                seconds: timeout.as_secs(),
            }),
        }
    }
}

async fn callback(
    State(shared): State<Shared>,
    Query(query): Query<CallbackQuery>,
) -> (StatusCode, Html<String>) {
    // A redirect from an older attempt or another site must not end this login.
    if query.state.as_deref() != Some(&*shared.state) {
        tracing::warn!("Ignoring a login callback whose state does not match this login");
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "Unknown login attempt",
                "This sign-in response does not belong to the login in progress. \
                 Return to your app: it is still waiting for you to log in.",
            )),
        );
    }
    let ends_login = query.error.is_some() || query.code.as_deref().is_some_and(|c| !c.is_empty());
    // Only a response that would end the login is checked: one without code or error is
    // refused below anyway, and must not end the login either.
    let wrong_issuer = match query.iss.as_deref().filter(|_| ends_login) {
        Some(iss) if iss != &*shared.issuer => Some(format!(
            "the response comes from issuer '{}', not {}",
            bounded(iss, 200),
            shared.issuer
        )),
        None if shared.iss_required && ends_login => Some(format!(
            "{} promises an iss parameter in its responses (RFC 9207), and this one has none",
            shared.issuer
        )),
        _ => None,
    };

    // One use: a replayed redirect (a reload, a second tab) cannot feed another code in.
    if ends_login && shared.used.swap(true, Ordering::SeqCst) {
        tracing::warn!("Ignoring a repeated login callback");
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "Already used",
                "This sign-in response has already been received. Return to your app.",
            )),
        );
    }
    if let Some(problem) = wrong_issuer {
        tracing::warn!("Refused a login response: {problem}");
        let _ = shared
            .outcome
            .try_send(Err(AuthError::WrongIssuer(problem.clone())));
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "Login refused",
                &format!("{problem}. Return to your app to retry."),
            )),
        );
    }
    if let Some(error) = query.error {
        // What the provider (or whoever sent the browser here) wrote: bounded, one line.
        let error = bounded(&error, 64);
        let description = bounded(&query.error_description.unwrap_or_default(), 300);
        let _ = shared.outcome.try_send(Err(AuthError::Denied {
            error: error.clone(),
            description: description.clone(),
        }));
        let detail = if description.is_empty() {
            error
        } else {
            format!("{error}: {description}")
        };
        return (
            StatusCode::OK,
            Html(page(
                "Login failed",
                &format!("The identity provider said: {detail}. Return to your app to retry."),
            )),
        );
    }
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "Login failed",
                "The response carried no authorization code.",
            )),
        );
    };
    let _ = shared.outcome.try_send(Ok(Secret::new(code)));
    (
        StatusCode::OK,
        Html(page(
            "Login complete",
            &format!(
                "You are signed in to {}. You can close this tab and return to your app.",
                shared.issuer
            ),
        )),
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, message: &str) -> String {
    let (title, message) = (escape(title), escape(message));
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\">\
         <h1>{title}</h1><p>{message}</p><p><small>authful-mcp-proxy</small></p></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_provider_text() {
        let html = page("Login failed", "<script>alert('x')</script> & more");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    }
}
