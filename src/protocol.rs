//! Which MCP revisions the proxy speaks to its stdio client, and how one is agreed on.
//!
//! The proxy serves every revision that has an `initialize` handshake, and asks its backends
//! for the newest of them ([`ProtocolVersion::LATEST_WITH_INITIALIZE`], in [`introduction`]). A client that asks
//! for a revision the proxy does not know gets the newest one the proxy does, as the
//! lifecycle rules prescribe; the client then decides whether it can live with that.
//!
//! Clients of the 2026-07-28 era probe with `server/discover` before anything else. The stdio
//! transport answers that probe itself, at once and in either mode, with
//! [`DISCOVER_NOT_SUPPORTED`]: such clients read "Method not found" as "a legacy server: use
//! `initialize`", so they fall back without waiting for a timeout.

use rmcp::model::{ClientConfig, ProtocolVersion};

/// Protocol versions offered to stdio clients: all that have an initialize handshake.
pub const CLIENT_PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// The method 2026-07-28 clients probe with before anything else.
pub const DISCOVER_METHOD: &str = "server/discover";

/// `-32601 Method not found`: what a legacy server answers to [`DISCOVER_METHOD`].
pub const DISCOVER_NOT_SUPPORTED: i64 = -32601;

/// The version to answer `initialize` with: the client's own when the proxy speaks it,
/// otherwise the newest the proxy speaks (never an echo of a version it does not know).
pub fn negotiate(requested: &ProtocolVersion) -> ProtocolVersion {
    if CLIENT_PROTOCOL_VERSIONS.contains(requested) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_versions_are_kept_and_unknown_ones_get_the_newest() {
        for known in CLIENT_PROTOCOL_VERSIONS {
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
