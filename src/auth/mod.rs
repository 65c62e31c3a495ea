//! Access tokens for the backends: from an OIDC profile's sign-in, kept, refreshed and bound
//! to each backend's resource.
//!
//! - `managers`: the [`TokenManager`]s of a configuration, one per profile in use
//!   ([`managers()`], or [`non_interactive_managers`] for commands that only look);
//! - [`tokens`]: the manager of one profile and each backend's [`Access`] to it — where a token
//!   is asked for. The manager's work is spread over modules of its own:
//!   - [`target`]: one backend as the manager sees it, named by a [`TargetId`](target::TargetId);
//!   - `renewal`: one renewal at a time, in this process and across processes, its outcome
//!     shared by the requests that waited;
//!   - `grants`: a refresh or a new grant (a sign-in, the client-credentials grant), and
//!     keeping what it gave;
//!   - `discovery`: what the manager makes of the backends' metadata, and the server it signs
//!     in at;
//!   - [`step_up`]: when a backend may ask for more scopes, with [`scopes`] (the scope lists a
//!     token asks for);
//!   - `logout`: the tokens forgotten, and revoked where they were issued;
//! - [`authority`]: which authorization server the credentials belong to (configured, or
//!   pinned at the first sign-in — never a backend's say alone);
//! - [`sign_in`]: how a person signs in (browser, device code), with [`browser`] opening the
//!   URL and [`callback`] taking the code;
//! - [`oidc`]: the exchanges with the identity provider, with [`client_auth`] (how the client
//!   proves itself) over `provider_http`, and [`registration`] (who the client is at a server
//!   that does not know it: a metadata document, or a client the proxy registers);
//! - [`resource`]: the backend's side (its challenges, its RFC 9728 metadata);
//! - [`cache`]: the token file.
//!
//! The modules of the manager's work add `impl TokenManager` blocks and import from
//! [`tokens`] (the manager's fields, the freshness rules); [`tokens`] imports nothing back, and
//! they call one another's methods without importing one another. So each can be read on its
//! own, and no two of the modules of `auth` import each other.

pub mod authority;
pub mod browser;
pub mod cache;
pub mod callback;
pub mod client_auth;
mod cross_app;
mod discovery;
mod grants;
mod logout;
mod managers;
pub mod oidc;
mod provider_http;
pub mod registration;
mod renewal;
pub mod resource;
pub mod scopes;
pub mod sign_in;
pub mod step_up;
pub mod target;
pub mod tokens;

pub use logout::{LoggedOut, Revocation};
pub use managers::{Managers, access, managers, non_interactive_managers};
pub use target::Target;
pub use tokens::{Access, TokenManager};

/// A cached access token is used while it has more than this many seconds left.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// Why no token could be had. Messages never contain a token, code or secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The issuer's discovery document could not be read.
    #[error(
        "OIDC discovery failed for issuer {issuer}: {reason} (check OIDC_ISSUER_URL / issuer_url)"
    )]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// The discovery document was read, but the provider's signing keys were not.
    #[error(
        "cannot read the signing keys of {issuer} at {jwks_uri}: {reason} (the issuer URL is \
         right; the provider's key set is failing, ask its administrators)"
    )]
    Keys {
        /// The configured issuer.
        issuer: String,
        /// The key set URL from the discovery document.
        jwks_uri: String,
        /// What went wrong.
        reason: String,
    },
    /// Nobody completed the browser login in time.
    #[error(
        "login timed out after {seconds} s: no browser login was completed; retry the request \
         and finish the login in the browser (the URL is printed on stderr)"
    )]
    LoginTimeout {
        /// The configured timeout.
        seconds: u64,
    },
    /// The identity provider refused the login (the user denied access, say).
    #[error("login refused by the identity provider: {error}{}", if description.is_empty() { String::new() } else { format!(" ({description})") })]
    Denied {
        /// OAuth error code, e.g. `access_denied`.
        error: String,
        /// Provider's description.
        description: String,
    },
    /// The redirect URL's port is taken by another program.
    #[error(
        "cannot receive the login callback: port {port} is already in use (redirect URL \
         {redirect_url}; another program listens on {address}{}); stop the program using it, or \
         set OIDC_REDIRECT_URL / redirect_url to another port that is registered with your \
         identity provider",
        if *also_meant { ", an address a browser may use for the redirect URL's host" } else { "" }
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The configured redirect URL.
        redirect_url: String,
        /// The address another program holds.
        address: String,
        /// Whether it is one of several the host stands for (`localhost`: 127.0.0.1 and ::1),
        /// so perhaps not the one the user thinks of.
        also_meant: bool,
    },
    /// The callback server failed otherwise.
    #[error("login callback failed: {0}")]
    Callback(String),
    /// The token endpoint refused or failed.
    #[error("token request failed: {0}")]
    TokenEndpoint(String),
    /// The ID token did not validate.
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// The provider's discovery document names endpoints the proxy will not use.
    #[error("identity provider {issuer} cannot be trusted with a login: {reason}")]
    UnsafeProvider {
        /// The configured issuer.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// The server refused tokens fresh from a login: another login would not help.
    #[error(
        "the server rejects the tokens of {issuer} although they come from a login {seconds_ago} \
         s ago: it probably expects another audience or other scopes (check what it requires, \
         and OIDC_SCOPES / scopes); no new browser login for {wait} s"
    )]
    TokensRejected {
        /// The profile's issuer.
        issuer: String,
        /// How long ago the login was.
        seconds_ago: u64,
        /// Seconds until a new login may start.
        wait: u64,
    },
    /// The token cache directory is not safe to keep tokens in.
    #[error("{0}")]
    Cache(String),
    /// The authorization response came from another issuer (RFC 9207), or lacked the `iss`
    /// its provider promises.
    #[error("login refused: {0} (a mix-up of identity providers, or an attack); try again")]
    WrongIssuer(String),
    /// The client assertion key cannot be used.
    #[error("{0} (check client_assertion.key_file and algorithm)")]
    ClientKey(String),
    /// The provider does not offer what the profile's flow needs.
    #[error(
        "{issuer} does not offer the {flow} flow (its discovery document has no {missing}); \
         choose another `flow` for the profile"
    )]
    FlowUnsupported {
        /// The issuer.
        issuer: String,
        /// The configured flow.
        flow: &'static str,
        /// The missing metadata member.
        missing: &'static str,
    },
    /// Nobody entered the device code in time.
    #[error(
        "sign-in timed out after {seconds} s: the device code was not entered; retry the \
         request and enter the new code (it is printed on stderr and sent as a log message)"
    )]
    DeviceExpired {
        /// How long the code was valid.
        seconds: u64,
    },
    /// Cross-app access: the identity provider did not exchange the person's ID token.
    #[error(
        "the identity provider {issuer} did not exchange the ID token for an identity \
         assertion grant (cross-app access): {reason}"
    )]
    IdentityAssertion {
        /// The identity provider.
        issuer: String,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// A backend with `auth: oauth` names no authorization server the proxy may use.
    #[error(
        "backend '{backend}' (auth: oauth) publishes no usable protected resource metadata \
         naming its authorization server (see the warnings before this); if it takes the tokens \
         of a provider you know, give it an oidc_profile with that issuer_url instead"
    )]
    NoServerNamed {
        /// The backend.
        backend: String,
    },
    /// A backend without a sign-in answered 401.
    #[error(
        "the server asks for a sign-in (HTTP 401{}{}), and the backend has none configured: \
         give it `auth: oauth` if the server runs OAuth itself, or the `oidc_profile` whose \
         tokens it takes",
        said.as_deref().map(|s| format!(": {s}")).unwrap_or_default(),
        if *names_metadata { ", naming its protected resource metadata" } else { "" }
    )]
    NoSignIn {
        /// What its challenge says, stripped (untrusted text).
        said: Option<String>,
        /// Its challenge names protected resource metadata (RFC 9728): an OAuth server.
        names_metadata: bool,
    },
    /// The proxy could not become a client of a server that does not know it.
    #[error("profile '{profile}' has no client at {issuer}: {reason}")]
    Registration {
        /// The profile.
        profile: String,
        /// The authorization server.
        issuer: String,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// Revocation failed at the provider.
    #[error("revocation failed: {0}")]
    Revocation(String),
    /// The profile names no issuer, and no backend names one.
    #[error(
        "profile '{profile}' names no issuer_url, and none of its backends ({backends}) \
         publishes usable protected resource metadata (RFC 9728) naming an authorization server \
         (see the warnings before this): set issuer_url (OIDC_ISSUER_URL for the drop-in)"
    )]
    NoIssuer {
        /// The profile.
        profile: String,
        /// Its backends.
        backends: String,
    },
    /// The profile names no issuer, and a backend's metadata could not be read to learn it.
    #[error(
        "profile '{profile}' names no issuer_url, and backend '{backend}' could not say where to \
         sign in: {reason}; try again, or set issuer_url (OIDC_ISSUER_URL for the drop-in)"
    )]
    MetadataUnavailable {
        /// The profile.
        profile: String,
        /// The backend.
        backend: String,
        /// Why its metadata could not be read.
        reason: String,
    },
    /// The backends of an issuer-less profile do not name one server they all trust.
    #[error(
        "profile '{profile}' names no issuer_url, and its backends do not name one \
         authorization server they all trust ({named}): set issuer_url to the right one, or give \
         these backends profiles of their own"
    )]
    IssuersDisagree {
        /// The profile.
        profile: String,
        /// Each backend and the servers it names.
        named: String,
    },
    /// A backend names another server than the one the profile is pinned to.
    #[error(
        "backend '{backend}' now names the authorization server {named}, but profile \
         '{profile}' signed in at {pinned} (pinned in {cache}): its credentials and tokens go \
         only there, never to a server a backend names on its own say. If the server really \
         moved, run `authful-mcp-proxy logout {backend}` and sign in again; otherwise the \
         backend is misconfigured or hostile"
    )]
    IssuerChanged {
        /// The profile.
        profile: String,
        /// The backend.
        backend: String,
        /// The servers it names now.
        named: String,
        /// The server the profile signed in at.
        pinned: String,
        /// The token file that holds the pin.
        cache: String,
    },
    /// A profile with a client secret or key names no issuer (a configuration `resolve` refuses).
    #[error(
        "profile '{profile}' has a client secret or key but names no issuer_url: its credentials \
         only ever go to a configured issuer, never to a server a backend names; set issuer_url"
    )]
    ConfidentialWithoutIssuer {
        /// The profile.
        profile: String,
    },
    /// A backend asked for more scopes, and the proxy would not sign in again for them.
    #[error("backend '{backend}' asks for the scopes {scopes}; no new sign-in for them: {reason}")]
    StepUpRefused {
        /// The backend.
        backend: String,
        /// The scopes it asked for.
        scopes: String,
        /// Why not.
        reason: String,
    },
    /// A backend refuses a token that holds the scopes it asks for.
    #[error(
        "backend '{backend}' refuses a token of {issuer} that holds the scopes {scopes} it asks \
         for: the backend, not the provider, is at fault (it may want another audience or \
         check the scopes differently); ask its administrators"
    )]
    ScopeRefusedByBackend {
        /// The backend.
        backend: String,
        /// The scopes it asked for.
        scopes: String,
        /// The issuer of the token.
        issuer: String,
    },
    /// A backend was named that the profile's manager does not provide tokens for.
    #[error(
        "profile '{profile}' provides no tokens for a backend named '{backend}' (its backends: \
         {backends})"
    )]
    UnknownBackend {
        /// The profile.
        profile: String,
        /// The name asked for.
        backend: String,
        /// The backends it does provide tokens for.
        backends: String,
    },
    /// A person would have to sign in, and this command never asks one.
    #[error(
        "profile '{profile}' needs a sign-in: run `authful-mcp-proxy login` (or use a tool of \
         one of its backends)"
    )]
    SignInNeeded {
        /// The profile.
        profile: String,
    },
    /// A backend asked for scopes the provider did not grant after a step-up.
    #[error(
        "backend '{backend}' needs the scopes {scopes}, which {issuer} did not grant after a \
         new sign-in that asked for them; ask the provider's administrators to allow them for \
         this client"
    )]
    ScopeNotGranted {
        /// The backend.
        backend: String,
        /// The scopes it asked for.
        scopes: String,
        /// The issuer.
        issuer: String,
    },
    /// A backend refused a token fresh from a renewal, and said why.
    #[error(
        "backend '{backend}' refuses the tokens of profile '{profile}' although they are fresh \
         ({reason}){}",
        culprit.map(|c| format!("; most likely {c} is wrong for it")).unwrap_or_default()
    )]
    Refused {
        /// The backend.
        backend: String,
        /// The profile.
        profile: String,
        /// The backend's words.
        reason: String,
        /// Which part of the token is likely wrong.
        culprit: Option<&'static str>,
    },
}
