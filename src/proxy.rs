//! Running the proxy: token managers per profile, the relay, and the stdio server loop.

use std::{collections::BTreeMap, sync::Arc};

use rmcp::{ServiceExt, service::ServerInitializeError};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    auth::{TokenManager, browser::Browser},
    clients,
    config::Settings,
    gateway::Gateway,
    relay::Relay,
    stdio::StdioTransport,
};

/// Why the proxy stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration asks for something this version cannot serve.
    #[error("{0}")]
    Unsupported(String),
    /// The stdio client broke the protocol before the session started.
    #[error("MCP session with the client failed to start: {0}")]
    Start(String),
}

/// A client that closes stdin before initializing has simply gone away (exit 0); anything else
/// that stops the handshake is an error.
fn ended_before_initialize(error: ServerInitializeError) -> Result<(), RunError> {
    match error {
        ServerInitializeError::ConnectionClosed(_) => {
            tracing::debug!("The client closed stdin before initializing");
            Ok(())
        }
        other => Err(RunError::Start(other.to_string())),
    }
}

/// One token manager per profile in use, so backends that share a profile share its tokens.
pub fn token_managers(
    settings: &Settings,
    http: &reqwest::Client,
    browser: &Arc<dyn Browser>,
) -> BTreeMap<String, Arc<TokenManager>> {
    let login_gate = Arc::default();
    let mut managers = BTreeMap::new();
    for profile in settings.backends.iter().filter_map(|b| b.profile.as_ref()) {
        managers.entry(profile.name.clone()).or_insert_with(|| {
            Arc::new(TokenManager::new(
                Arc::clone(profile),
                &settings.cache_dir,
                http.clone(),
                Arc::clone(browser),
                Arc::clone(&login_gate),
            ))
        });
    }
    managers
}

/// Serves MCP on `reader`/`writer` (stdin/stdout in production) until the client closes its
/// side, then closes the backend session.
pub async fn serve<R, W>(
    settings: Settings,
    browser: Arc<dyn Browser>,
    reader: R,
    writer: W,
) -> Result<(), RunError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let managers = token_managers(&settings, &clients::identity_provider(), &browser);
    let http = clients::backend();
    if !settings.is_drop_in() {
        let gateway = Gateway::new(
            settings.gateway.clone(),
            &settings.backends,
            |b| {
                b.profile
                    .as_ref()
                    .and_then(|p| managers.get(&p.name))
                    .cloned()
            },
            http,
        );
        let closer = gateway.closer();
        let running = match gateway.serve(StdioTransport::new(reader, writer)).await {
            Ok(running) => running,
            Err(e) => return ended_before_initialize(e),
        };
        let quit = running.waiting().await;
        tracing::debug!("Client session ended: {quit:?}");
        closer.close().await;
        return Ok(());
    }
    let [backend] = settings.backends.as_slice() else {
        return Err(RunError::Unsupported("no backend to serve".into()));
    };
    // Log in while the client starts up: `initialize` then finds the token ready (or joins
    // the same login) instead of starting it only then. (The gateway starts its backends,
    // logins included, as soon as the client initializes.)
    for tokens in managers.values() {
        let tokens = Arc::clone(tokens);
        tokio::spawn(async move {
            if let Err(e) = tokens.access_token().await {
                tracing::error!("Login for profile '{}' failed: {e}", tokens.profile().name);
            }
        });
    }
    let tokens = backend
        .profile
        .as_ref()
        .and_then(|p| managers.get(&p.name))
        .cloned();
    let relay = Relay::new(backend.clone(), http, tokens, settings.gateway.clone());
    let closer = relay.closer();
    let running = match relay.serve(StdioTransport::new(reader, writer)).await {
        Ok(running) => running,
        Err(e) => {
            closer.close().await;
            return ended_before_initialize(e);
        }
    };
    let quit = running.waiting().await;
    tracing::debug!("Client session ended: {quit:?}");
    closer.close().await;
    Ok(())
}
