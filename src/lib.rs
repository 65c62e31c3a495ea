//! `authful-mcp-proxy`: a stdio MCP server that logs its user in to an OIDC identity provider
//! and relays MCP to remote Streamable HTTP servers with a fresh bearer token on every request.
//!
//! # Layout
//!
//! - [`cli`]: the command line (flags, subcommands, which command runs with what) — the
//!   binary's `main`. [`commands`]: one module per command — the proxy's run (signals
//!   included), `login`, `logout`, `status`, `validate`, `schema`.
//! - [`config`]: the configuration file's model, its layers (file, env vars, flags), the one
//!   set of rules that turns them into [`config::Settings`], and `validate`.
//! - [`proxy`]: one run, from settings to the end of the stdio session; [`shutdown`] owns the
//!   tasks of a session and ends the backend sessions.
//! - [`stdio`]: JSON-RPC on stdin/stdout, which [`standard_streams`] hands to the event loop
//!   itself. [`protocol`]: the MCP revisions spoken on either
//!   side, and how the proxy introduces itself to backends.
//! - [`relay`]: the drop-in (one backend, passed through as it is). [`gateway`]: many
//!   backends behind prefixes ([`naming`], [`glob`] filters), lists merged and kept in memory.
//! - [`backend`]: one remote server — its connection and the one path of every request to it.
//!   [`forward`] carries a request across a hop (`_meta`, progress, cancellation, timeout)
//!   and logs its [`shape`] at debug level; [`lists`] reads a backend's lists whole.
//! - [`auth`]: tokens for one OIDC profile (cache, refresh, browser login, callback server).
//!   [`clients`]: the two HTTP clients (identity providers, backends) and their redirect rules.
//! - [`request_error`]: why a client's request got no answer, and its JSON-RPC error;
//!   [`error_text`]: errors as text a person reads. [`secret`]: values never shown; [`logging`].
//!
//! # The path of a request
//!
//! A `tools/call` line on stdin is parsed by [`stdio`] and handed by rmcp to the [`relay`] or
//! the [`gateway`], which maps the exposed name back to its backend ([`naming`], the gateway's
//! catalog) and sends the request through [`backend::Connection::request`]: the request
//! timeout, cancellation and progress apply there, for every kind of request alike. The HTTP
//! layer under it ([`backend::http`]) puts a fresh bearer token on the request. The answer (or
//! a [`request_error::RequestError`], turned into a JSON-RPC error) goes back the same way;
//! progress notifications reach the client in order and never after the answer.
//!
//! # The path of a token
//!
//! [`auth::TokenManager`] (one per OIDC profile, shared by all its backends) answers
//! [`backend::http`]'s request for a token: from memory, else from the cache file
//! ([`auth::cache`]), else by refreshing at the identity provider ([`auth::oidc`]) — the one
//! the configuration or the first sign-in chose ([`auth::authority`]), never one a backend
//! names on its own say — else by a browser login — the system browser opens the authorization URL ([`auth::browser`]) and the
//! loopback [`auth::callback`] server takes the code, which [`auth::oidc`] exchanges (PKCE).
//! New tokens are written back to the cache atomically, mode 0600. A backend that answers `401`
//! makes the manager renew once and the request is retried.

pub mod auth;
pub mod backend;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod error_text;
pub mod forward;
pub mod glob;
pub mod lists;
pub mod logging;
pub mod naming;
pub mod protocol;
pub mod proxy;
pub mod request_error;
pub mod secret;
pub mod server;
pub mod shape;
pub mod shutdown;
pub mod standard_streams;
pub mod stdio;
