//! What the login callback server accepts, over real HTTP: only a GET on its own path, with
//! this login's `state`, once; provider text is escaped and bounded; it listens on loopback only.

use std::time::Duration;

use authful_mcp_proxy::auth::{AuthError, callback::CallbackServer};
use url::Url;

use crate::support;

const STATE: &str = "state-0123456789";

async fn start() -> (CallbackServer, String) {
    let port = support::free_port();
    let url = Url::parse(&format!("http://localhost:{port}/auth/callback")).unwrap();
    let server = CallbackServer::start(&url, STATE, "https://issuer.example", false)
        .await
        .unwrap();
    (server, format!("http://127.0.0.1:{port}"))
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn only_this_logins_redirect_counts_and_only_once() {
    let (server, base) = start().await;
    let http = reqwest::Client::new();
    let callback = format!("{base}/auth/callback");

    let post = http
        .post(format!("{callback}?state={STATE}&code=posted"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405, "only GET");
    assert_eq!(
        get(&format!("{base}/other?state={STATE}&code=x")).await.0,
        404
    );
    assert_eq!(get(&format!("{base}/?state={STATE}&code=x")).await.0, 404);
    assert_eq!(get(&callback).await.0, 400, "no state");
    assert_eq!(get(&format!("{callback}?code=x")).await.0, 400, "no state");
    assert_eq!(
        get(&format!("{callback}?state=other&code=x")).await.0,
        400,
        "foreign state"
    );
    assert_eq!(
        get(&format!("{callback}?state={STATE}")).await.0,
        400,
        "no code"
    );
    assert_eq!(
        get(&format!("{callback}?state={STATE}&code=")).await.0,
        400,
        "empty code"
    );
    assert_eq!(
        get(&format!("{callback}?state=%ZZ&code=x")).await.0,
        400,
        "bad encoding"
    );

    let (status, page) = get(&format!("{callback}?state={STATE}&code=the-code")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Login complete"), "{page}");
    // Replayed (a reload, a second tab): refused, and the first code stands.
    let (status, page) = get(&format!("{callback}?state={STATE}&code=second-code")).await;
    assert_eq!(status, 400);
    assert!(page.contains("Already used"), "{page}");
    let code = server.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(code.expose(), "the-code");
}

#[tokio::test]
async fn provider_text_is_escaped_on_the_page_and_bounded_in_the_error() {
    let (server, base) = start().await;
    let description = format!("<script>alert('x')</script>\u{7}\n{}", "a".repeat(5000));
    let url = Url::parse_with_params(
        &format!("{base}/auth/callback"),
        [
            ("state", STATE),
            ("error", "access_denied"),
            ("error_description", &description),
        ],
    )
    .unwrap();
    let (status, page) = get(url.as_str()).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
    match server.wait(Duration::from_secs(5)).await {
        Err(AuthError::Denied { error, description }) => {
            assert_eq!(error, "access_denied");
            assert!(description.chars().count() <= 301, "{}", description.len());
            assert!(
                !description.chars().any(char::is_control),
                "{description:?}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a code")),
    }
}

#[tokio::test]
async fn it_listens_on_loopback_only() {
    let (_server, base) = start().await;
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // The machine's address on its network, if it has one: nothing must answer there.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    if probe.connect("192.0.2.1:9").is_ok()
        && let Ok(local) = probe.local_addr()
        && !local.ip().is_loopback()
        && !local.ip().is_unspecified()
    {
        let outside = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(local.ip(), port),
            Duration::from_secs(2),
        );
        assert!(outside.is_err(), "the callback answers on {}", local.ip());
    }
}

/// Whether this machine has an IPv6 loopback address to listen on.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A browser may take `localhost` to `::1` before `127.0.0.1` (Chrome and Firefox do, whatever
/// the hosts file says): another program on `[::1]` with the port would receive the code. So
/// the login does not start, and the error names the address in the way.
#[tokio::test]
async fn localhost_is_refused_while_another_program_holds_the_port_on_ipv6_loopback() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: this machine has no IPv6 loopback address");
        return;
    }
    for _ in 0..10 {
        let holder = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let url = Url::parse(&format!("http://localhost:{port}/auth/callback")).unwrap();
        match CallbackServer::start(&url, STATE, "https://issuer.example", false).await {
            Err(e @ AuthError::PortInUse { port: p, .. }) => {
                let message = e.to_string();
                if message.contains(&format!("127.0.0.1:{port}")) {
                    // Another test took the port on IPv4 in between: take another.
                    continue;
                }
                assert_eq!(p, port);
                assert!(
                    message.contains(&format!("port {port} is already in use"))
                        && message.contains(&format!("[::1]:{port}")),
                    "{message}"
                );
                // Nothing of the login is left listening on the other address either.
                assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
                return;
            }
            Ok(_) => panic!(
                "the login's callback server started while another program holds [::1]:{port}: \
                 a browser trying ::1 first would hand it the code"
            ),
            Err(e) => panic!("expected the port in use, got: {e}"),
        }
    }
    panic!("no port free on 127.0.0.1 to test with");
}

/// The same the other way round: another program on `127.0.0.1` with the port, `[::1]` free.
#[tokio::test]
async fn localhost_is_refused_while_another_program_holds_the_port_on_ipv4_loopback() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let url = Url::parse(&format!("http://localhost:{port}/auth/callback")).unwrap();
    let message = match CallbackServer::start(&url, STATE, "https://issuer.example", false).await {
        Err(e @ AuthError::PortInUse { .. }) => e.to_string(),
        Ok(_) => panic!("the login's callback server started while 127.0.0.1:{port} is held"),
        Err(e) => panic!("expected the port in use, got: {e}"),
    };
    assert!(
        message.contains(&format!("port {port} is already in use"))
            && message.contains(&format!("127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.contains("OIDC_REDIRECT_URL"), "{message}");
    if has_ipv6_loopback() {
        assert!(
            std::net::TcpStream::connect(("::1", port)).is_err(),
            "nothing of the login is left listening on [::1]"
        );
    }
}

/// With both addresses free, a `localhost` login listens on both: the code arrives whichever
/// the browser picks.
#[tokio::test]
async fn localhost_callbacks_arrive_over_either_loopback_address() {
    let (server, base) = start().await;
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    if !has_ipv6_loopback() {
        eprintln!("IPv6 part skipped: this machine has no IPv6 loopback address");
        return;
    }
    let (status, page) = get(&format!(
        "http://[::1]:{port}/auth/callback?state={STATE}&code=over-ipv6"
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    let code = server.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(code.expose(), "over-ipv6");
}
