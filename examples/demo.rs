//! The gateway at work, with no infrastructure: an in-process OIDC issuer, two MCP backends
//! that accept only its tokens, and the real gateway between them and an MCP client — all on
//! 127.0.0.1, all stopped when the demo ends.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The browser login is completed by a stand-in that follows the issuer's redirect, as a
//! browser would after you typed your password.

// The integration tests' fakes; the demo uses a few of them.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::{sync::Arc, time::Duration};

use authful_mcp_proxy::config::{Backend, Gateway, Profile, Separator, Settings};
use serde_json::{Value, json};
use support::{
    BrowserMode, TestBrowser,
    backend::{BackendConfig, TestBackend},
    idp::{FakeIdp, IdpConfig},
};
use url::Url;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "authful-mcp-proxy demo: the real gateway, one OIDC issuer, two token-validating backends\n"
    );

    let issuer = FakeIdp::start(IdpConfig {
        client_id: "demo-desktop".into(),
        ..IdpConfig::default()
    })
    .await;
    issuer.set_subject("ada@example.com");
    let docs = TestBackend::start(BackendConfig::oidc(
        "docs",
        issuer.issuer(),
        issuer.jwks_uri(),
    ))
    .await;
    let tickets = TestBackend::start(BackendConfig::oidc(
        "tickets",
        issuer.issuer(),
        issuer.jwks_uri(),
    ))
    .await;
    println!("  issuer    {}  (client demo-desktop)", issuer.issuer());
    println!(
        "  backend   docs     {}  (401 without a valid token)",
        docs.url()
    );
    println!(
        "  backend   tickets  {}  (401 without a valid token)\n",
        tickets.url()
    );

    let cache = tempfile::tempdir()?;
    let redirect = Url::parse(&format!(
        "http://127.0.0.1:{}/auth/callback",
        support::free_port()
    ))?;
    let profile = Arc::new(Profile {
        login_timeout: Duration::from_secs(30),
        ..Profile::new("company", Some(&issuer.issuer()), "demo-desktop", redirect)
    });
    let backend = |name: &str, url: String| {
        Ok::<_, url::ParseError>(Backend::new(
            name,
            Url::parse(&url)?,
            Some(Arc::clone(&profile)),
            Some(name),
        ))
    };
    let settings = Settings {
        cache_dir: cache.path().to_path_buf(),
        mode: authful_mcp_proxy::config::Mode::Gateway,
        backends: vec![
            backend("docs", docs.url())?,
            backend("tickets", tickets.url())?,
        ],
        gateway: Gateway {
            name: "demo-gateway".into(),
            separator: Separator::Underscore,
            startup_timeout: Duration::from_secs(10),
            ..Gateway::default()
        },
    };

    // The desktop client's side: stdio over OS pipes into the gateway's real server loop.
    let browser = TestBrowser::new(BrowserMode::Complete);
    let gateway = support::start(settings, browser.clone(), "2025-11-25").await;
    let info = serde_json::to_value(gateway.client.peer_info())?;
    println!(
        "initialize -> serverInfo \"{}\", protocol {}; {} browser login for both backends\n",
        info["serverInfo"]["name"].as_str().unwrap_or("?"),
        info["protocolVersion"].as_str().unwrap_or("?"),
        browser.opened(),
    );

    let tools = gateway.client.list_all_tools().await?;
    println!("tools/list -> {} tools from 2 backends:", tools.len());
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for row in names.chunks(5) {
        println!("  {}", row.join(", "));
    }

    println!();
    for (tool, args) in [
        ("docs_whoami", json!({})),
        ("tickets_add", json!({"a": 2, "b": 3})),
        ("tickets_echo", json!({"text": "routed to tickets"})),
    ] {
        let result = gateway.call(tool, args.clone()).await?;
        let shown = match &result["structuredContent"] {
            Value::Null => result["content"][0]["text"].clone(),
            structured => structured.clone(),
        };
        println!("tools/call {tool} {args} -> {shown}");
    }

    println!(
        "\nThe issuer saw {} login and {} code exchange; each backend accepted the bearer token \
         (docs: {} authorized requests, tickets: {}).",
        issuer.stats().authorize_requests,
        issuer.stats().code_exchanges,
        docs.stats().authorized_requests,
        tickets.stats().authorized_requests,
    );
    gateway.stop().await?;
    Ok(())
}
