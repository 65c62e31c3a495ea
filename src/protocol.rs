//! Which MCP revisions the proxy speaks to its stdio client, and how one is agreed on.
//!
//! Both eras, on the same stdin/stdout:
//! - **legacy** (2024-11-05 … 2025-11-25): an `initialize` handshake opens a session. A client
//!   that asks for a revision the proxy does not know gets the newest handshake revision it
//!   does, as the lifecycle rules prescribe ([`negotiate`]); the client then decides whether it
//!   can live with that.
//! - **modern** ([`MODERN`], 2026-07-28): no handshake. Every request names its revision and the
//!   client's capabilities in `_meta`; `server/discover` says what the server is (see
//!   `server/era.rs`). rmcp starts such a session at the first request that is not a
//!   `server/discover`, when that request names a revision of [`SUPPORTED`].
//!
//! To its backends the proxy introduces itself as the stdio client, in the newest handshake
//! revision ([`introduction`]); a backend that speaks only 2026-07-28 is discovered instead
//! (see `backend/lifecycle.rs`).

use rmcp::model::{ClientConfig, Implementation, ProtocolVersion, RequestMetaObject};

/// The revisions with an `initialize` handshake, oldest first.
pub const HANDSHAKE_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// The stateless revision: no handshake, `_meta` on every request.
pub const MODERN: ProtocolVersion = ProtocolVersion::V_2026_07_28;

/// Every revision the stdio server speaks, oldest first: what `server/discover` lists and what
/// a `-32022` error names as supported.
pub const SUPPORTED: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    MODERN,
];

/// The version to answer `initialize` with: the client's own when it is a handshake revision
/// the proxy speaks, otherwise the newest one (never an echo of a version it does not know, nor
/// the stateless one, which has no handshake).
pub fn negotiate(requested: &ProtocolVersion) -> ProtocolVersion {
    if HANDSHAKE_VERSIONS.contains(requested) {
        requested.clone()
    } else {
        ProtocolVersion::LATEST_WITH_INITIALIZE
    }
}

/// How the proxy introduces itself to a backend: as the stdio client (its name and
/// capabilities, so the backend only asks for what the client can do), pinned to the newest
/// protocol version that still has an `initialize` handshake.
pub fn introduction(client: &ClientConfig) -> ClientConfig {
    let mut info = client.clone();
    info.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
    info
}

/// A modern client as if it had sent `initialize`: its capabilities and identity from a
/// request's `_meta` (a client that names itself nowhere is "unknown").
pub fn client_of(meta: &RequestMetaObject) -> ClientConfig {
    let capabilities = meta.client_capabilities().unwrap_or_default();
    let info = meta
        .client_info()
        .unwrap_or_else(|| Implementation::new("unknown", "0"));
    ClientConfig::new(capabilities, info)
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_versions_are_kept_and_unknown_ones_get_the_newest() {
        for known in HANDSHAKE_VERSIONS {
            assert_eq!(&negotiate(known), known);
        }
        for unknown in [
            "2025-01-01",
            "2024-01-01",
            "2026-07-28",
            "2099-12-31",
            "draft",
        ] {
            let requested: ProtocolVersion =
                serde_json::from_value(serde_json::json!(unknown)).unwrap();
            assert_eq!(
                negotiate(&requested),
                ProtocolVersion::V_2025_11_25,
                "{unknown}"
            );
        }
    }
}
