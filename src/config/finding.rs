//! What a check reports: a problem at a key path, before anyone knows where that key is
//! written. [`report`](super::report) turns findings into located diagnostics.

use std::fmt;

use serde::Serialize;

use super::locate::{KeyPath, Position};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration can be used, but probably not as meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Which text of the file a finding points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The key of this path (an unknown key; for a missing key, its own path, which falls back
    /// to the parent's key when absent).
    Key(KeyPath),
    /// The value of this path (a bad value).
    Value(KeyPath),
    /// A place in the text that no path names (a syntax error), if known.
    Text(Option<Position>),
}

/// One problem at one key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The key the problem is about, as the message names it.
    pub path: KeyPath,
    /// What to point at in the file.
    pub anchor: Anchor,
    /// What is wrong, and what to do.
    pub message: String,
}

impl Finding {
    /// An error about the value at `path`.
    pub fn bad_value(path: &KeyPath, message: String) -> Self {
        Self::error(path.clone(), Anchor::Value(path.clone()), message)
    }

    /// An error at `path`, pointing at `anchor`.
    pub fn error(path: KeyPath, anchor: Anchor, message: String) -> Self {
        Self {
            severity: Severity::Error,
            path,
            anchor,
            message,
        }
    }

    /// A warning at `path`, pointing at `anchor`.
    pub fn warning(path: KeyPath, anchor: Anchor, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            path,
            anchor,
            message,
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Which layer gave the value a finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file, or no layer at all (a missing key): located in the file.
    File,
    /// An env var, by name.
    Env(String),
    /// A command-line argument, as the user names it (`--oidc-issuer-url`).
    Flag(String),
}

impl Origin {
    /// The name of the env var or flag; `None` for the file.
    pub fn label(&self) -> Option<&str> {
        match self {
            Origin::File => None,
            Origin::Env(name) | Origin::Flag(name) => Some(name),
        }
    }
}
