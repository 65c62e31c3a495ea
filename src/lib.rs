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
//! - [`server`]: the one MCP server, for one backend or many. Its [`config::Mode`], decided
//!   when the configuration is resolved: the drop-in (one backend, passed through as it is) or
//!   the gateway (backends behind prefixes — [`naming`], [`glob`] filters — their lists merged
//!   and kept in memory, and [`remembered`] for the next start). One keeper per backend connects
//!   it, logins included, and keeps it connected in either mode; how long a client may wait at
//!   start-up comes from its name ([`server::client_waits`]).
//! - [`downstream`]: the stdio client as the backends reach it, in the era it speaks — what
//!   they tell it (a 2026-07-28 client on its `subscriptions/listen` streams) and what they ask
//!   it (a 2026-07-28 client through `input_required` answers to its calls).
//! - [`backend`]: one remote server — its connection and the one path of every request to it.
//!   [`forward`] carries a request across a hop (`_meta`, progress, cancellation, timeout)
//!   and logs its [`shape`] at debug level; [`lists`] reads a backend's lists whole;
//!   [`legacy_tasks`] carries the tasks of 2025-11-25 across rmcp's types.
//! - [`auth`]: tokens for the OIDC profiles (their managers, cache, renewal, grants, the sign-in
//!   flows and callback server, which server the credentials belong to). [`private_files`]:
//!   owner-only files, written atomically (tokens, remembered lists).
//!   [`clients`]: the two HTTP clients (identity providers, backends) and their redirect rules.
//! - [`request_error`]: why a client's request got no answer, and its JSON-RPC error;
//!   [`error_text`]: errors as text a person reads. [`secret`]: values never shown; [`logging`].
//!
//! # The path of a request
//!
//! A `tools/call` line on stdin is parsed by [`stdio`] and handed by rmcp to the
//! [`server::Server`]. As the drop-in, it passes the request on as it is; as the gateway, it
//! maps the exposed name back to its backend and the backend's own name ([`naming`], the
//! gateway's catalog), on rmcp's typed request. Either way the request goes through
//! [`backend::Connection::request`]: the request timeout, cancellation and progress apply
//! there, for every kind of request alike, and the request is marked as the client's (a
//! backend may then ask for more scopes; see [`auth::step_up`]). The HTTP layer under it
//! ([`backend::authorized_http`]) puts a fresh bearer token on the request. The answer (or a
//! [`request_error::RequestError`], turned into a JSON-RPC error) goes back the same way, its
//! resource URIs under their exposed form in the gateway; progress notifications reach the
//! client in order and never after the answer.
//!
//! # The path of a token
//!
//! [`auth::TokenManager`] (one per OIDC profile, shared by all its backends, built by
//! [`auth::managers`]) answers [`backend::authorized_http`]'s request for a token: from memory, else from
//! the cache file ([`auth::cache`]), else by refreshing at the identity provider
//! ([`auth::oidc`]), else by a new grant. The provider is the one the configuration or the
//! first sign-in chose ([`auth::authority`]), never one a backend names on its own say; a
//! profile without `issuer_url` learns it from its backends' protected resource metadata
//! (RFC 9728, [`auth::resource`]), and binds each backend's tokens to its resource (RFC 8707).
//! A new grant is the flow of the profile: a browser login — the system browser opens the
//! authorization URL ([`auth::browser`]) and the loopback [`auth::callback`] server takes the
//! code, which [`auth::oidc`] exchanges (PKCE) —, a device code a person enters elsewhere
//! (RFC 8628), or a service account's client credentials ([`auth::client_auth`]: a secret or a
//! signed assertion). New tokens are written back to the cache atomically, mode 0600. A backend
//! that answers `401` makes the manager renew once and the request is retried; one that
//! answers `403 insufficient_scope` to a request of the client's may get a token with more
//! scopes, on the terms of [`auth::step_up`].

// The map above names the internal modules too, for the reader of the source and of
// `cargo doc --document-private-items`: their links go nowhere in the public docs.
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
pub(crate) mod backend;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub(crate) mod downstream;
pub(crate) mod error_text;
pub(crate) mod forward;
pub mod glob;
pub(crate) mod legacy_tasks;
pub(crate) mod lists;
pub(crate) mod logging;
pub mod naming;
pub(crate) mod private_files;
pub(crate) mod protocol;
pub mod proxy;
pub(crate) mod remembered;
pub(crate) mod request_error;
pub mod secret;
pub mod server;
pub(crate) mod shape;
pub(crate) mod shutdown;
pub(crate) mod standard_streams;
pub mod stdio;
