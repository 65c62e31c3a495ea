//! How long each client may be kept waiting at start-up: for the answer to `initialize`, and
//! until the first answer to each kind of list, counted from the server's start (about when
//! the client spawned it). Clients measure from spawn and differ by a factor of 45: Codex
//! leaves out of the turn a server whose `initialize` and first `tools/list` take over a
//! second together; Claude Code gives both 30 s; Claude Desktop lists once and gives each
//! request 60 s. A first login takes a person 10-40 s. So the waits come from the client's
//! `clientInfo.name`, through [`KNOWN`]; a backend not there in time is announced with
//! `list_changed` later, and reachable through the gateway's own tools meanwhile (see
//! [`late`](super::late)), or listed at once where it is [remembered](crate::remembered).
//!
//! A configuration that sets `gateway.startup_timeout` or `gateway.first_list_timeout` has
//! chosen for every client; without either, known clients get their row and others the
//! defaults, which fit every known client's window.

use std::time::Duration;

use crate::config::Gateway;

/// How long a client may wait at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// For the answer to `initialize`.
    pub initialize: Duration,
    /// Until the first answer to each kind of list, from the server's start.
    pub first_list: Duration,
}

/// A client the waits are known for.
#[derive(Debug)]
pub struct KnownClient {
    /// What the client is called in the docs.
    pub label: &'static str,
    /// Its `clientInfo.name`, or how that starts.
    pub name: &'static str,
    /// Whether `name` is a prefix (some clients put their version or variant after it).
    pub prefix: bool,
    pub waits: Waits,
    /// Why these waits.
    pub because: &'static str,
}

const fn secs(initialize: u64, first_list_millis: u64) -> Waits {
    Waits {
        initialize: Duration::from_secs(initialize),
        first_list: Duration::from_millis(first_list_millis),
    }
}

/// The clients whose waits are known, from their real CLIs as measured in December 2026. The
/// table in docs/desktop-clients.md is checked against this one.
pub const KNOWN: &[KnownClient] = &[
    KnownClient {
        label: "Codex",
        name: "codex-mcp-client",
        prefix: false,
        waits: Waits {
            initialize: Duration::from_millis(200),
            first_list: Duration::from_millis(700),
        },
        because: "leaves a server out unless `initialize` and `tools/list` finish within 1 s of spawn",
    },
    KnownClient {
        label: "Claude Code",
        name: "claude-code",
        prefix: false,
        waits: secs(2, 20_000),
        because: "gives `initialize` and the first `tools/list` 30 s from spawn together (`MCP_TIMEOUT`), lists once",
    },
    KnownClient {
        label: "Claude Desktop",
        name: "claude-ai",
        prefix: false,
        waits: secs(5, 45_000),
        because: "allows 60 s for `initialize` and for each request, lists once, ignores `list_changed`",
    },
    KnownClient {
        label: "Gemini CLI",
        name: "gemini-cli",
        prefix: true,
        waits: secs(2, 10_000),
        because: "lists again on `list_changed`; waits for its servers before the first model request",
    },
    KnownClient {
        label: "opencode",
        name: "opencode",
        prefix: true,
        waits: secs(2, 10_000),
        because: "gives `initialize` and `tools/list` 30 s each; lists again on `list_changed`",
    },
];

/// The waits for a configuration's unknown clients (or every client, when it set them).
pub fn configured(settings: &Gateway) -> Waits {
    Waits {
        initialize: settings.startup_timeout,
        first_list: settings.first_list_timeout,
    }
}

/// The waits for the client named `name` (its `clientInfo.name`), and the known client it is.
pub fn for_client(settings: &Gateway, name: &str) -> (Waits, Option<&'static KnownClient>) {
    if !settings.waits_by_client {
        return (configured(settings), None);
    }
    let known = KNOWN.iter().find(|k| {
        if k.prefix {
            name.starts_with(k.name)
        } else {
            name == k.name
        }
    });
    match known {
        Some(known) => (known.waits, Some(known)),
        None => (configured(settings), None),
    }
}

/// The table of [`KNOWN`] clients in docs/desktop-clients.md, as it must read.
pub fn table() -> String {
    let mut text = String::from(
        "| Client | `clientInfo.name` | `initialize` within | first lists within (from start) | Why |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    let shown = |d: Duration| {
        if d.subsec_millis() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{:.1} s", d.as_secs_f64())
        }
    };
    for k in KNOWN {
        let name = if k.prefix {
            format!("`{}…`", k.name)
        } else {
            format!("`{}`", k.name)
        };
        text.push_str(&format!(
            "| {} | {name} | {} | {} | {} |\n",
            k.label,
            shown(k.waits.initialize),
            shown(k.waits.first_list),
            k.because
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_clients_get_their_row_and_others_the_configured_waits() {
        let settings = Gateway::default();
        let (codex, known) = for_client(&settings, "codex-mcp-client");
        assert_eq!(known.map(|k| k.label), Some("Codex"));
        assert!(codex.initialize + codex.first_list < Duration::from_secs(1));
        let (gemini, _) = for_client(&settings, "gemini-cli-mcp-client");
        assert_eq!(gemini, secs(2, 10_000));
        let (other, known) = for_client(&settings, "my-own-client");
        assert!(known.is_none());
        assert_eq!(other, configured(&settings));
        assert_eq!(
            for_client(&settings, "claude-code-extra")
                .1
                .map(|k| k.label),
            None,
            "exact names are exact"
        );
    }

    #[test]
    fn waits_set_in_the_configuration_hold_for_every_client() {
        let settings = Gateway {
            waits_by_client: false,
            first_list_timeout: Duration::from_secs(3),
            ..Gateway::default()
        };
        let (codex, known) = for_client(&settings, "codex-mcp-client");
        assert!(known.is_none());
        assert_eq!(codex.first_list, Duration::from_secs(3));
    }

    #[test]
    fn the_default_fits_every_known_window() {
        // Claude Code's 30 s from spawn is the shortest window of a client that lists once
        // and is not in the table's faster rows.
        let waits = configured(&Gateway::default());
        assert!(waits.first_list <= Duration::from_secs(20), "{waits:?}");
    }

    #[test]
    fn the_documented_table_is_this_one() {
        let page = include_str!("../../docs/desktop-clients.md");
        assert!(
            page.contains(&table()),
            "docs/desktop-clients.md's table of known clients is stale; it must read:\n{}",
            table()
        );
    }
}
