//! Which revision of MCP a backend is spoken, and so how a session with it starts: with
//! `initialize` (2025-11-25 and before: a session, an `Mcp-Session-Id`, a standing stream) or
//! with `server/discover` (2026-07-28: stateless, every request carrying its own `_meta`).
//!
//! By default (`protocol: auto`) a backend gets `initialize` first, and `server/discover` only
//! when it refuses `initialize` with `-32022` naming 2026-07-28 among the revisions it has. Why
//! this order: most servers in use speak a revision with `initialize` (every one before July
//! 2026), and the dual-era SDKs (TypeScript 2.4, Python `mcp` 2.3, fastmcp 4.2) answer both,
//! so probing `server/discover` first would cost every server that predates 2026-07-28 a round
//! trip (and rmcp's probe waits up to 10 s for a server that never answers it), while this
//! order costs one only to the few that speak 2026-07-28 alone — and only once: the revision a
//! backend spoke is remembered with its lists, and the next start begins with it.

use rmcp::{
    model::{ErrorCode, ProtocolVersion},
    service::{ClientInitializeError, ClientLifecycleMode},
};

use crate::config::Protocol;

/// `server/discover`, for 2026-07-28.
pub fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

/// Whether `version` starts sessions with `server/discover`.
pub fn is_modern(version: &ProtocolVersion) -> bool {
    // ISO dates compare as text in calendar order.
    version.as_str() >= ProtocolVersion::V_2026_07_28.as_str()
}

/// How the first attempt starts: as configured, else as the backend last spoke (`spoken`),
/// else with `initialize`. A backend remembered as modern is still asked `server/discover`
/// with a fall-back to `initialize` (it may have been replaced by an older server).
pub fn first(protocol: Protocol, spoken: Option<&ProtocolVersion>) -> ClientLifecycleMode {
    match protocol {
        Protocol::Modern => modern(),
        Protocol::Initialize => ClientLifecycleMode::Initialize,
        Protocol::Auto if spoken.is_some_and(is_modern) => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: None,
        },
        Protocol::Auto => ClientLifecycleMode::Initialize,
    }
}

/// Whether `error` is a backend refusing `initialize` because it speaks 2026-07-28 (and no
/// revision with `initialize` that the proxy speaks): `-32022` whose `data.supported` names it.
pub fn refuses_initialize_for_2026(error: &ClientInitializeError) -> bool {
    let ClientInitializeError::JsonRpcError(error) = error else {
        return false;
    };
    error.code == ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        && error
            .data
            .as_ref()
            .and_then(|data| data.get("supported"))
            .and_then(|supported| supported.as_array())
            .is_some_and(|supported| {
                supported.iter().any(|v| {
                    v.as_str()
                        .is_some_and(|v| v == ProtocolVersion::V_2026_07_28.as_str())
                })
            })
}

#[cfg(test)]
mod tests {
    use rmcp::model::ErrorData;
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_refusal_naming_2026_07_28_makes_the_proxy_discover() {
        let refusal = |code: i32, data| {
            ClientInitializeError::JsonRpcError(ErrorData::new(ErrorCode(code), "no", data))
        };
        assert!(refuses_initialize_for_2026(&refusal(
            -32022,
            Some(json!({"requested": "2025-11-25", "supported": ["2026-07-28"]}))
        )));
        assert!(!refuses_initialize_for_2026(&refusal(
            -32022,
            Some(json!({"supported": ["2024-11-05"]}))
        )));
        assert!(!refuses_initialize_for_2026(&refusal(-32022, None)));
        assert!(!refuses_initialize_for_2026(&refusal(
            -32600,
            Some(json!({"supported": ["2026-07-28"]}))
        )));
    }

    #[test]
    fn the_first_attempt_follows_the_configuration_then_what_was_spoken() {
        let modern = ProtocolVersion::V_2026_07_28;
        let legacy = ProtocolVersion::V_2025_06_18;
        assert_eq!(first(Protocol::Auto, None), ClientLifecycleMode::Initialize);
        assert_eq!(
            first(Protocol::Auto, Some(&legacy)),
            ClientLifecycleMode::Initialize
        );
        assert!(matches!(
            first(Protocol::Auto, Some(&modern)),
            ClientLifecycleMode::Auto { .. }
        ));
        assert_eq!(first(Protocol::Modern, None), super::modern());
        assert_eq!(
            first(Protocol::Initialize, Some(&modern)),
            ClientLifecycleMode::Initialize
        );
    }
}
