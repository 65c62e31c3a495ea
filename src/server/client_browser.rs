//! Sign-in through the client: where the client takes URL-mode elicitation (2025-11-25,
//! `elicitation.url`), the page a person signs in on — the authorization URL, or a device
//! flow's verification URL with its code — is handed to the client to open, rather than to a
//! browser the proxy starts. That is what makes a login work where the proxy cannot open one:
//! Codex starts servers without `BROWSER` or `DISPLAY`, a remote dev container has no desktop.
//! Clients without it get the system browser, as the profile's `open_browser` says.
//!
//! A login may start before the client has said what it takes (the drop-in signs in while the
//! client starts up), so the first page waits for the client's handshake, briefly: after
//! [`WAIT_FOR_CLIENT`] without one, the system browser opens. Only after `initialized` may a
//! server send the client requests. A client that does not accept — it fails the request,
//! answers something else, or declines (a person who would rather use their browser, or an SDK
//! that declines whatever it is asked) — gets the system browser after all, as `open_browser`
//! says; the URL is printed on stderr either way.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rmcp::{
    Peer, RoleServer,
    model::{ClientResult, ElicitRequest, ElicitRequestParams, ElicitationAction, ServerRequest},
};
use tokio::sync::watch;

use crate::auth::browser::Browser;

/// How long a login waits for the client's handshake before the system browser opens.
pub const WAIT_FOR_CLIENT: Duration = Duration::from_secs(3);

/// What the client takes, once it has said.
#[derive(Clone)]
enum Reach {
    /// No handshake yet.
    NotYet,
    /// URL-mode elicitation, through this peer.
    Elicitation(Peer<RoleServer>),
    /// Not URL-mode elicitation: the system browser.
    System,
}

/// A [`Browser`] that asks the client to open pages where it can, and the system browser
/// otherwise.
pub struct ClientBrowser {
    system: Arc<dyn Browser>,
    reach: watch::Sender<Reach>,
    /// Sign-in pages waiting for the client's handshake.
    waiting: watch::Sender<usize>,
}

impl ClientBrowser {
    /// Opens pages through the client once it has said it can, else through `system`.
    pub fn new(system: Arc<dyn Browser>) -> Arc<Self> {
        Arc::new(Self {
            system,
            reach: watch::Sender::new(Reach::NotYet),
            waiting: watch::Sender::new(0),
        })
    }

    /// Returns once a sign-in page waits for the client's handshake: `initialize` must then be
    /// answered without waiting for that sign-in, which cannot end before the client opens it.
    pub async fn page_waiting(&self) {
        let mut waiting = self.waiting.subscribe();
        let _ = waiting.wait_for(|n| *n > 0).await;
    }

    /// The client sent `initialize`, declaring `elicitation.url` or not: without it, pages go to
    /// the system browser from now on, without waiting for the rest of the handshake.
    pub fn client_introduced(&self, url_elicitation: bool) {
        if !url_elicitation {
            self.reach.send_replace(Reach::System);
        }
    }

    /// The client finished its handshake (`initialized`); `url_elicitation`: it declared
    /// `elicitation.url`.
    pub fn client_ready(&self, peer: Peer<RoleServer>, url_elicitation: bool) {
        self.reach.send_replace(if url_elicitation {
            Reach::Elicitation(peer)
        } else {
            Reach::System
        });
    }

    /// How the person is reached: waits for the client's handshake up to [`WAIT_FOR_CLIENT`].
    /// Runs on a blocking thread (as [`Browser::open`] does).
    fn reach(&self) -> (Reach, Option<tokio::runtime::Handle>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return (Reach::System, None);
        };
        let mut reach = self.reach.subscribe();
        self.waiting.send_modify(|n| *n += 1);
        let decided = runtime.block_on(async {
            let said = reach.wait_for(|r| !matches!(r, Reach::NotYet));
            tokio::time::timeout(WAIT_FOR_CLIENT, said)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|r| r.clone())
        });
        self.waiting.send_modify(|n| *n = n.saturating_sub(1));
        (decided.unwrap_or(Reach::System), Some(runtime))
    }

    /// Asks the client to open `url` with `message`, in the background; with `fallback`, the
    /// system browser if the client does not.
    fn ask(
        &self,
        peer: Peer<RoleServer>,
        runtime: &tokio::runtime::Handle,
        url: &str,
        message: String,
        fallback: bool,
    ) {
        let system = fallback.then(|| Arc::clone(&self.system));
        let url = url.to_owned();
        runtime.spawn(async move {
            let params = ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message,
                url: url.clone(),
                elicitation_id: elicitation_id(),
            };
            let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
            let why = match peer.send_request(request).await {
                Ok(ClientResult::ElicitResult(result)) => match result.action {
                    ElicitationAction::Accept => {
                        tracing::info!("The client opened the sign-in page");
                        return;
                    }
                    ElicitationAction::Decline => "declined".to_owned(),
                    _ => "cancelled".to_owned(),
                },
                Ok(_) => "an answer of another kind".to_owned(),
                Err(e) => e.to_string(),
            };
            let Some(system) = system else {
                tracing::info!("The client did not open the sign-in page ({why})");
                return;
            };
            tracing::info!("The client did not open the sign-in page ({why}); opening a browser");
            let opened = tokio::task::spawn_blocking(move || system.open(&url)).await;
            if let Ok(Err(e)) = opened {
                tracing::warn!("Could not open a browser ({e}); open the URL above");
            }
        });
    }
}

impl Browser for ClientBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        match self.reach() {
            (Reach::Elicitation(peer), Some(runtime)) => {
                let message = "Sign in to reach this server's tools: open the page and log in; \
                               it returns to the proxy on its own."
                    .to_owned();
                self.ask(peer, &runtime, url, message, true);
                Ok(())
            }
            _ => self.system.open(url),
        }
    }

    fn show(&self, url: &str, message: &str) -> bool {
        match self.reach() {
            (Reach::Elicitation(peer), Some(runtime)) => {
                // Shown only: the proxy was not to open a browser for this page.
                self.ask(peer, &runtime, url, message.to_owned(), false);
                true
            }
            _ => false,
        }
    }
}

/// A fresh id for an elicitation: unique within the session is enough.
fn elicitation_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("authful-sign-in-{nanos:x}")
}
