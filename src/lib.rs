//! `authful-mcp-proxy`: a stdio MCP server that logs its user in to an OIDC identity provider
//! and relays MCP to remote Streamable HTTP servers with a fresh bearer token on every request.

pub mod auth;
pub mod backend;
pub mod cli;
pub mod clients;
pub mod config;
pub mod forward;
pub mod gateway;
pub mod glob;
pub mod lists;
pub mod logging;
pub mod naming;
pub mod protocol;
pub mod proxy;
pub mod relay;
pub mod secret;
pub mod shutdown;
pub mod stdio;
