//! The command line: flags and env vars in the seed's names, logging, banner, exit codes.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;

use crate::{
    auth::browser::SystemBrowser,
    config::{SeedSettings, Settings, Sources},
    logging::{self, Verbosity},
    proxy,
};

/// Lets desktop MCP clients use remote MCP servers that validate OIDC bearer tokens: logs you
/// in with your identity provider and relays MCP between stdio and Streamable HTTP.
#[derive(Debug, Parser)]
#[command(name = "authful-mcp-proxy", version)]
pub struct Cli {
    /// URL of the remote MCP server [env: MCP_BACKEND_URL]
    #[arg(value_name = "MCP_BACKEND_URL")]
    pub backend_url: Option<String>,
    /// OIDC issuer URL [env: OIDC_ISSUER_URL]
    #[arg(long, value_name = "URL")]
    pub oidc_issuer_url: Option<String>,
    /// OAuth client id [env: OIDC_CLIENT_ID]
    #[arg(long, value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// OAuth client secret, for confidential clients only [env: OIDC_CLIENT_SECRET]
    #[arg(long, value_name = "SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Space-separated scopes; `openid` is always added [env: OIDC_SCOPES] [default: openid profile email]
    #[arg(long, value_name = "SCOPES")]
    pub oidc_scopes: Option<String>,
    /// Loopback URL the browser returns to after login [env: OIDC_REDIRECT_URL] [default: http://localhost:8080/auth/callback]
    #[arg(long, value_name = "URL")]
    pub oidc_redirect_url: Option<String>,
    /// Seconds to wait for a browser login before failing the pending request [default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub login_timeout: Option<u64>,
    /// YAML configuration file
    #[arg(short = 'c', long, value_name = "PATH", env = "AUTHFUL_MCP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Append log lines to this file instead of stderr
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Don't show the banner on stderr at start
    #[arg(long)]
    pub no_banner: bool,
    /// Log errors only
    #[arg(long, conflicts_with = "debug")]
    pub silent: bool,
    /// Log debug details (never tokens or secrets) [env: MCP_PROXY_DEBUG]
    #[arg(long)]
    pub debug: bool,
}

fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl Cli {
    fn verbosity(&self) -> Verbosity {
        if self.silent {
            Verbosity::Silent
        } else if self.debug || truthy(std::env::var("MCP_PROXY_DEBUG").ok()) {
            Verbosity::Debug
        } else {
            Verbosity::Normal
        }
    }

    fn sources(&self) -> Sources {
        Sources {
            file: self.config.clone(),
            seed_env: SeedSettings::from_env(|name| std::env::var(name).ok()),
            flags: SeedSettings {
                backend_url: self.backend_url.clone(),
                issuer_url: self.oidc_issuer_url.clone(),
                client_id: self.oidc_client_id.clone(),
                client_secret: self.oidc_client_secret.clone(),
                scopes: self.oidc_scopes.clone(),
                redirect_url: self.oidc_redirect_url.clone(),
                login_timeout: self.login_timeout,
                cache_dir: None,
            },
        }
    }
}

fn banner(settings: &Settings) {
    eprintln!(
        "authful-mcp-proxy {} - OIDC login for remote MCP servers",
        env!("CARGO_PKG_VERSION")
    );
    for backend in &settings.backends {
        eprintln!("  backend  {}", backend.url);
        if let Some(profile) = &backend.profile {
            eprintln!(
                "  issuer   {} (client {})",
                profile.issuer_url, profile.client_id
            );
        }
    }
}

/// Runs the program; the exit code is 0 after a clean session, 1 on a configuration or
/// startup error, 2 on a usage error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = cli.verbosity();
    if let Err(e) = logging::init(verbosity, cli.log_file.as_deref()) {
        eprintln!("authful-mcp-proxy: cannot open log file: {e}");
        return ExitCode::from(2);
    }
    let settings = match cli.sources().load().and_then(|c| c.resolve()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("authful-mcp-proxy: {e}");
            return ExitCode::from(1);
        }
    };
    if !cli.no_banner && verbosity != Verbosity::Silent {
        banner(&settings);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("authful-mcp-proxy: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(proxy::serve(
        settings,
        Arc::new(SystemBrowser),
        tokio::io::stdin(),
        tokio::io::stdout(),
    ));
    // A browser opener still running must not keep the process alive after stdin closed.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("authful-mcp-proxy: {e}");
            ExitCode::from(1)
        }
    }
}
