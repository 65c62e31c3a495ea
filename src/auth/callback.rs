//! The loopback server that receives the browser's redirect after login. It lives only for the
//! duration of one login, on the redirect URL's own port and path, and on every loopback
//! address its host may stand for: a login whose port another program holds on any of them
//! does not start, since the browser could hand that program the code.

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

/// How long resolving the redirect host may take: `localhost` comes from the hosts file or
/// the resolver's own answer; a resolver that does not answer at once is not waited for, the
/// usual loopback addresses are enough then.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a browser may connect for the redirect URL, hence where the callback server must
/// listen: a process holding any of these addresses on the port could receive the code.
///
/// An IP host is the only address the browser uses. A name (`localhost`, the only one the
/// configuration allows) is not: Chrome and Firefox resolve `localhost` to loopback
/// themselves, whatever the hosts file says, and may try `::1` before `127.0.0.1` (falling back
/// only when `::1` refuses the connection); Safari and other programs ask the system resolver,
/// which may answer either, or another loopback address. So: both usual loopback addresses,
/// and every loopback address the resolver gives — never one off loopback, whatever the
/// resolver says.
async fn listen_addresses(url: &Url, port: u16) -> Vec<IpAddr> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(url::Host::Domain(name)) => {
            let resolved =
                match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
                    .await
                {
                    Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                    Ok(Err(e)) => {
                        tracing::debug!(
                            "Cannot resolve {name} ({e}); listening on 127.0.0.1 and ::1"
                        );
                        Vec::new()
                    }
                    Err(_) => {
                        tracing::debug!(
                            "Resolving {name} took over {} s; listening on 127.0.0.1 and ::1",
                            RESOLVE_TIMEOUT.as_secs()
                        );
                        Vec::new()
                    }
                };
            loopback_candidates(&resolved)
        }
        None => loopback_candidates(&[]),
    }
}

/// 127.0.0.1 and ::1, then the loopback addresses among `resolved` (an IPv4-mapped one counts
/// as its IPv4 address), each once.
fn loopback_candidates(resolved: &[IpAddr]) -> Vec<IpAddr> {
    let mut addresses = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    for ip in resolved.iter().map(IpAddr::to_canonical) {
        if !ip.is_loopback() {
            tracing::debug!("Not listening on {ip}, which is not a loopback address");
        } else if !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    addresses
}

/// Whether binding failed because the machine lacks the address or its whole family (no IPv6
/// loopback: `EADDRNOTAVAIL`, or IPv6 disabled: `EAFNOSUPPORT`). Nobody can listen there, and
/// no browser can connect there, so no code can go astray through it.
fn address_missing(error: &std::io::Error) -> bool {
    if error.kind() == std::io::ErrorKind::AddrNotAvailable {
        return true;
    }
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::EAFNOSUPPORT)
    }
    #[cfg(windows)]
    {
        // WSAEAFNOSUPPORT
        error.raw_os_error() == Some(10047)
    }
    #[cfg(not(any(unix, windows)))]
    {
        false
    }
}

/// Binds the port on every address of `addresses` the machine has. Another program on any
/// of them fails the login before it starts: the browser could take its code there.
async fn bind_all(
    redirect_url: &Url,
    port: u16,
    addresses: &[IpAddr],
) -> Result<Vec<tokio::net::TcpListener>, AuthError> {
    let mut listeners = Vec::new();
    let mut missing = Vec::new();
    for &ip in addresses {
        let addr = SocketAddr::new(ip, port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listeners.push(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // For `localhost` the address in the way may be the one nobody thinks of.
                return Err(AuthError::PortInUse {
                    port,
                    redirect_url: redirect_url.to_string(),
                    address: addr.to_string(),
                    also_meant: addresses.len() > 1,
                });
            }
            Err(e) if address_missing(&e) => {
                tracing::debug!("Not listening on {addr} for the login callback: {e}");
                missing.push(format!("{addr} ({e})"));
            }
            Err(e) => {
                return Err(AuthError::Callback(format!(
                    "cannot listen on {addr} for {redirect_url}: {e}; the login needs every \
                     loopback address the redirect URL's host may stand for"
                )));
            }
        }
    }
    if listeners.is_empty() {
        return Err(AuthError::Callback(format!(
            "cannot listen for {redirect_url}: this machine has none of its addresses: {}; set \
             OIDC_REDIRECT_URL / redirect_url to a loopback address the machine has (and that \
             is registered with your identity provider), e.g. http://127.0.0.1:{port}{}",
            missing.join(", "),
            redirect_url.path()
        )));
    }
    Ok(listeners)
}

impl CallbackServer {
    /// Binds the redirect URL's port on each loopback address of its host (see
    /// `listen_addresses`) and starts serving its path. The response
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
        // Every listener bound before any serves: a login that cannot have them all does not
        // start, and leaves nothing listening.
        let addresses = listen_addresses(redirect_url, port).await;
        let listeners = bind_all(redirect_url, port, &addresses).await?;
        let bound: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        let mut stops = Vec::new();
        for listener in listeners {
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
        tracing::debug!(
            "Login callback server for {redirect_url} listening on {}",
            bound.join(", ")
        );
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

    #[test]
    fn localhost_stands_for_both_loopbacks_and_any_other_loopback_it_resolves_to() {
        let resolved: Vec<IpAddr> = [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "127.0.1.1",
            "192.168.1.20",
            "fe80::1",
            "::",
            "::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let expected: Vec<IpAddr> = ["127.0.0.1", "::1", "127.0.1.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(loopback_candidates(&resolved), expected);
        assert_eq!(loopback_candidates(&[]), expected[..2]);
    }

    #[tokio::test]
    async fn an_ip_host_stands_for_itself_only() {
        for (url, address) in [
            ("http://127.0.0.1:8080/cb", "127.0.0.1"),
            ("http://[::1]:8080/cb", "::1"),
        ] {
            let url = Url::parse(url).unwrap();
            let expected: IpAddr = address.parse().unwrap();
            assert_eq!(listen_addresses(&url, 8080).await, vec![expected]);
        }
        let localhost = Url::parse("http://localhost:8080/cb").unwrap();
        let addresses = listen_addresses(&localhost, 8080).await;
        assert!(addresses.starts_with(&[
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        ]));
        assert!(addresses.iter().all(IpAddr::is_loopback), "{addresses:?}");
    }

    #[test]
    fn only_a_missing_address_or_family_may_be_skipped() {
        use std::io::{Error, ErrorKind};
        assert!(address_missing(&Error::from(ErrorKind::AddrNotAvailable)));
        #[cfg(unix)]
        assert!(address_missing(&Error::from_raw_os_error(
            libc::EAFNOSUPPORT
        )));
        for kind in [
            ErrorKind::AddrInUse,
            ErrorKind::PermissionDenied,
            ErrorKind::Other,
        ] {
            assert!(!address_missing(&Error::from(kind)), "{kind:?}");
        }
    }
}
