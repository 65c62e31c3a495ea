//! The integration tests, in one test binary (`it`) so that the shared support code is compiled
//! once; every test runs as a thread of this one process (see "Sharing one process" below).
//!
//! What lives where:
//! - `support/`: the harness every module shares. The fakes, all on `127.0.0.1`: the OpenID
//!   provider (`idp.rs`, its keys in `keys/`), token-validating MCP backends (`backend.rs`),
//!   the fault-injecting HTTP proxy (`faults.rs`), backends with scripted lists
//!   (`scripted.rs`), redirecting and recording servers (`redirector.rs`); the clients: a test
//!   browser, the stdio client on OS pipes and the proxy loop it drives (`mod.rs`), a client
//!   that behaves like Claude Desktop (`desktop.rs`), the binary as a child process with its
//!   stderr watched (`binary.rs`); and log capture for one test (`logs.rs`).
//! - The proxy loop in-process, over OS pipes: `login` (logins and the token lifecycle),
//!   `drop_in` (one backend, passed through as it is), `gateway` (many backends), `desktop_clients` (clients
//!   as Claude Desktop uses them), `start_up` (remembered lists, each client's start-up waits), `list_bounds` (endless or huge lists), `redirects`,
//!   `backend_faults`, `idp_faults`, `hostile_input` (broken stdin lines), `hostile_provider`
//!   (an identity provider gone hostile), `hostile_backend` (backends that try to choose where
//!   credentials go, or make a person sign in again and again), `callback_input` (the login callback over HTTP) and
//!   `client_key` (a service account's private key file that others can read).
//! - The real binary as child processes: `cli` (flags, env vars, exit codes, logs), `validate`
//!   (the `validate` subcommand and start-up diagnostics), `schema` (the committed JSON Schema),
//!   `processes` (several gateways sharing one token cache), `shutdown` (SIGTERM, SIGINT and
//!   stdin EOF), `secrets` (no token or secret in any output, at any log level), `debug_log` (what
//!   `--debug` and `--log-content` log of the messages relayed), `status_check` (`status`
//!   against hostile backends: endless answers, terminal escapes), `security_doc` (every test
//!   SECURITY.md names exists), `client_pages` (the pages of `docs/clients/`).
//! - `properties/`: property tests (proptest), one module per subject.
//!
//! Sharing one process: nothing here sets environment variables, the working directory or a
//! global `tracing` subscriber, or installs a signal handler. Each child process gets its own
//! clean environment (`support::binary::command`), log capture is per test thread
//! (`support::logs`), signals go to child processes only, and every test has its own temporary
//! directories and ports. Process-wide state is limited to lazily built clients and runtimes
//! that any number of tests may share.

mod support;

mod account;
mod backend_faults;
mod callback_input;
mod cli;
mod client_key;
mod client_pages;
mod cross_app;
mod debug_log;
mod desktop_clients;
mod doc_links;
mod drop_in;
mod gateway;
mod hostile_backend;
mod hostile_input;
mod hostile_provider;
mod http_sse;
mod idp_faults;
mod list_bounds;
mod login;
mod modern_backends;
mod modern_clients;
mod processes;
mod properties;
mod public_servers;
mod readme;
mod redirects;
mod resources;
mod schema;
mod secrets;
mod security_doc;
mod shutdown;
mod sign_in;
mod start_up;
mod status_check;
mod tasks;
mod validate;
