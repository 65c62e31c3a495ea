//! The proxy itself, what runs without a subcommand: from the settings to the end of the
//! stdio session.
//!
//! It shows a banner on stderr (what it serves, and where it signs in), then serves MCP on
//! stdin/stdout ([`proxy::serve`]) until the client closes stdin or a signal asks it to stop
//! — SIGTERM (a desktop client quitting) or SIGINT (Ctrl-C in a terminal); Ctrl-C elsewhere —
//! and closes the backend sessions. From then on stdout belongs to JSON-RPC alone: everything
//! this command says goes to stderr or the log.

use std::sync::Arc;

use crate::{
    auth::browser::SystemBrowser,
    config::{Mode, Profile, Settings},
    error_text::printable,
    proxy, standard_streams,
};

use super::Outcome;

/// Serves the stdio client until it leaves or a signal comes, after the banner when
/// `banner`. Exit status: 0 after a session that ended (stdin closed, SIGTERM or SIGINT), 1
/// when it failed.
pub async fn run(settings: Settings, banner: bool) -> Outcome {
    if banner {
        show_banner(&settings);
    }
    // Listening from the start: a signal that came before would end the process at once,
    // with no DELETE for the backends.
    let stop = stop_signal();
    let (stdin, stdout) = standard_streams::open();
    match proxy::serve(settings, Arc::new(SystemBrowser), stdin, stdout, stop).await {
        Ok(()) => Outcome::Success,
        Err(e) => {
            tracing::error!("{e}");
            // The error may quote a backend or a provider.
            eprintln!("authful-mcp-proxy: {}", printable(&e.to_string()));
            Outcome::Failed
        }
    }
}

/// What the proxy serves, on stderr: the drop-in's backend and issuer, or the gateway's
/// backends and their profiles.
fn show_banner(settings: &Settings) {
    eprintln!(
        "authful-mcp-proxy {} - OIDC login for remote MCP servers",
        env!("CARGO_PKG_VERSION")
    );
    if let [backend] = settings.backends.as_slice()
        && settings.mode == Mode::DropIn
    {
        eprintln!("  backend  {}", backend.url);
        if let Some(profile) = &backend.profile {
            eprintln!(
                "  issuer   {} (client {})",
                profile.issuer_label(),
                profile.client_label()
            );
        }
        return;
    }
    eprintln!("  gateway  {}", settings.gateway.name);
    let mut profiles: Vec<&Arc<Profile>> = Vec::new();
    for backend in &settings.backends {
        let login = backend.profile.as_ref().map_or(String::new(), |p| {
            if !profiles.iter().any(|known| known.name == p.name) {
                profiles.push(p);
            }
            format!(" (profile {})", p.name)
        });
        eprintln!("  backend  {}: {}{login}", backend.name, backend.url);
    }
    for profile in profiles {
        eprintln!(
            "  profile  {}: {} (client {})",
            profile.name,
            profile.issuer_label(),
            profile.client_label()
        );
    }
}

/// Registers for the signals that ask the proxy to stop — SIGTERM and SIGINT — and resolves
/// when one arrives. A signal that cannot be listened for keeps its default action, and stdin
/// EOF still ends the session cleanly.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!("Cannot listen for {name} ({e}); it ends the proxy without closing");
            None
        }
    };
    let mut term = listen(SignalKind::terminate(), "SIGTERM");
    let mut int = listen(SignalKind::interrupt(), "SIGINT");
    async fn arrived(signal: Option<&mut tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            () = arrived(term.as_mut()) => tracing::debug!("SIGTERM received: shutting down"),
            () = arrived(int.as_mut()) => tracing::debug!("SIGINT received: shutting down"),
        }
    }
}

/// Resolves on Ctrl-C (see the Unix version).
#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::debug!("Ctrl-C received: shutting down"),
            Err(e) => {
                tracing::warn!("Cannot listen for Ctrl-C ({e})");
                std::future::pending::<()>().await
            }
        }
    }
}
