//! Running the proxy: token managers per profile, the [`Server`] in its mode, and the stdio
//! session from its start to its end.
//!
//! Shutdown takes one path in both modes. [`serve`] serves the client until the first of:
//! - the client closes stdin: rmcp lets the answers still in flight out first, and the
//!   backends stay until then, since they are giving those answers;
//! - the `shutdown` future fires (in the binary: SIGTERM, what a desktop client sends when it
//!   quits, or SIGINT): the session is cancelled, which stops the handlers in flight.
//!
//! Then the session's [`Closer`], which owns every task started for it, closes — after the
//! client session has ended (stdin closed), or at the same time (`shutdown`, when no answer
//! needs a backend any more):
//! 1. its token is cancelled: a login in progress is abandoned (its callback server closes), a
//!    backend still connecting stops, the gateway stops reconnecting;
//! 2. each task holding a backend session ends it with an HTTP `DELETE` carrying its
//!    `Mcp-Session-Id`, all backends at once;
//! 3. tasks still running after [`CLOSE_DEADLINE`] are aborted, and `serve` returns `Ok`.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use rmcp::{
    RoleServer, ServiceExt,
    service::{RunningService, ServerInitializeError, Service},
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    auth::{self, browser::Browser},
    clients,
    config::{Mode, Settings},
    server::{Server, client_browser::ClientBrowser},
    shutdown::{CLOSE_DEADLINE, Closer},
    stdio::StdioTransport,
};

/// Why the proxy stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Settings with no backend (only built by hand: resolving refuses them).
    #[error("no backend to serve")]
    NoBackend,
    /// A backend's profile has no token manager (settings built by hand inconsistently).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The stdio client broke the protocol before the session started.
    #[error("MCP session with the client failed to start: {0}")]
    Start(#[source] Box<ServerInitializeError>),
}

/// A client that closes stdin before initializing has simply gone away (exit 0); anything else
/// that stops the handshake is an error.
fn ended_before_initialize(error: ServerInitializeError) -> Result<(), RunError> {
    match error {
        ServerInitializeError::ConnectionClosed(_) => {
            tracing::debug!("The client closed stdin before initializing");
            Ok(())
        }
        other => Err(RunError::Start(Box::new(other))),
    }
}

/// Serves MCP on `reader`/`writer` (stdin/stdout in production) until the client closes its
/// side or `shutdown` fires, then closes every backend session; see the [module](self) for
/// the order. Either way the session ended cleanly: `Ok(())`. What a person has to do to sign
/// in (a device code, a login URL to open by hand) also reaches the client as log messages:
/// the desktop app may be all they look at.
pub async fn serve<R, W>(
    settings: Settings,
    browser: Arc<dyn Browser>,
    reader: R,
    writer: W,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    // Sign-in pages go through the client where it can open them (URL elicitation).
    let client_browser = ClientBrowser::new(browser);
    let browser: Arc<dyn Browser> = client_browser.clone();
    let managers = auth::managers(&settings, &clients::identity_provider(), &browser);
    // Listening from the start: a device code shown while the client initializes must reach it.
    let notices: Vec<_> = managers.values().map(|m| m.notices().subscribe()).collect();
    let http = clients::backend();
    let mut transport = StdioTransport::new(reader, writer);
    let engaged = transport.engaged();
    if settings.backends.is_empty() {
        return Err(RunError::NoBackend);
    }
    let mut accesses = BTreeMap::new();
    for backend in &settings.backends {
        accesses.insert(backend.name.clone(), auth::access(&managers, backend)?);
    }
    let server = Server::new(
        &settings,
        |b| accesses.get(&b.name).cloned().flatten(),
        http,
    )
    .with_client_browser(client_browser)
    .with_input_ended(transport.ended());
    let closer = server.closer();
    if settings.mode == Mode::DropIn {
        // Log in while the client starts up: `initialize` then finds the token ready (or joins
        // the same login) instead of starting it only then. (The gateway starts its backends,
        // logins included, as soon as the client initializes.) Not for a `server/discover`
        // probe alone: it may come from a process the client starts only to ask.
        for tokens in managers.values() {
            let (tokens, closing) = (Arc::clone(tokens), closer.token().clone());
            let mut engaged = engaged.clone();
            closer.spawn(async move {
                tokio::select! {
                    _ = engaged.wait_for(|e| *e) => {}
                    () = closing.cancelled() => return,
                }
                tokio::select! {
                    login = tokens.access_token() => {
                        if let Err(e) = login {
                            let profile = &tokens.profile().name;
                            tracing::error!("Login for profile '{profile}' failed: {e}");
                        }
                    }
                    // Abandoning the login closes its callback server.
                    () = closing.cancelled() => {}
                }
            });
        }
    }
    session(server.serve(transport), closer, shutdown, notices).await
}

/// Runs the stdio session from its handshake to its end, then closes the backends.
async fn session<S: Service<RoleServer>>(
    starting: impl Future<Output = Result<RunningService<RoleServer, S>, ServerInitializeError>>,
    closer: Closer,
    shutdown: impl Future<Output = ()>,
    notices: Vec<tokio::sync::broadcast::Receiver<String>>,
) -> Result<(), RunError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let started = tokio::select! {
        started = starting => started,
        () = &mut shutdown => {
            tracing::debug!("Shutting down before the client session started");
            closer.close().await;
            return Ok(());
        }
    };
    let running = match started {
        Ok(running) => running,
        Err(e) => {
            closer.close().await;
            return ended_before_initialize(e);
        }
    };
    // Log messages are what every client of the older revisions shows a person.
    #[allow(deprecated)]
    for mut notices in notices {
        let (peer, closing) = (running.peer().clone(), closer.token().clone());
        closer.spawn(async move {
            loop {
                let text = tokio::select! {
                    received = notices.recv() => match received {
                        Ok(text) => text,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    () = closing.cancelled() => return,
                };
                if peer.peer_info().is_none() {
                    // A 2026-07-28 client takes log messages only in answer to a request that
                    // asks for them; the notice is on stderr.
                    continue;
                }
                let message = rmcp::model::LoggingMessageNotificationParam::new(
                    rmcp::model::LoggingLevel::Notice,
                    text.into(),
                )
                .with_logger("authful-mcp-proxy");
                let _ = peer.notify_logging_message(message).await;
            }
        });
    }
    let cancel = running.cancellation_token();
    let mut ended = std::pin::pin!(running.waiting());
    tokio::select! {
        quit = &mut ended => {
            tracing::debug!("Client session ended: {quit:?}");
            closer.close().await;
        }
        () = &mut shutdown => {
            tracing::debug!("Shutting down: ending the client session and the backend sessions");
            // Cancelling stops the handlers in flight, so the backends are no longer needed
            // for their answers: both ends close at the same time, within the deadline.
            cancel.cancel();
            let client_side = tokio::time::timeout(CLOSE_DEADLINE, ended);
            let (quit, ()) = tokio::join!(client_side, closer.close());
            match quit {
                Ok(quit) => tracing::debug!("Client session ended: {quit:?}"),
                Err(_) => tracing::debug!("The client session did not end within the deadline"),
            }
        }
    }
    Ok(())
}
