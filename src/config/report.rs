//! Findings placed where the user can find them, and printed for people and for CI.
//!
//! A finding about a value from the file gets the line and column of its text; one about a
//! value from an env var or a flag names that source instead. [`Diagnostics`] renders them as
//! `validate` prints them (and as the proxy prints them when it refuses to start).

use std::{fmt, path::PathBuf, str::FromStr};

use serde::Serialize;

use super::{
    finding::{Anchor, Finding, Origin, Severity},
    locate::{Position, PositionIndex},
};

/// What a line starts with when it is about no file.
const PROGRAM: &str = "authful-mcp-proxy";

/// One problem, located when the position is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Key path such as `backends.tools.url`; empty for the file as a whole.
    pub path: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// The env var or flag that gave the value, when it is not from the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// How [`Diagnostics`] are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `FILE:LINE:COL: error: PATH: message` lines and a summary line.
    #[default]
    Human,
    /// A JSON array of `{severity, path, line, column, message}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...,col=...::...`).
    Github,
}

impl Format {
    /// The names [`FromStr`] takes, in the order help lists them.
    pub const NAMES: [&str; 3] = ["human", "json", "github"];
}

impl FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "human" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            "github" => Ok(Format::Github),
            other => Err(format!(
                "'{other}' is not a format; expected one of {}",
                Format::NAMES.join(", ")
            )),
        }
    }
}

/// Every problem of one configuration, in file order, then the others in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The file as named by the user (the program's name when there is none).
    pub file: String,
    /// The problems.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Places `findings`: those from the file (or from nowhere, like a missing key) at their
    /// position in `index`, the others with the name of their env var or flag. `file` is
    /// `None` when the run has no configuration file.
    pub fn place(
        file: Option<(&str, &PositionIndex)>,
        findings: impl IntoIterator<Item = (Finding, Origin)>,
    ) -> Self {
        let mut located: Vec<(Option<Position>, Diagnostic)> = findings
            .into_iter()
            .map(|(finding, origin)| {
                let position = match (file, origin.label()) {
                    (Some((_, index)), None) => match &finding.anchor {
                        Anchor::Key(p) => index.nearest(p, true),
                        Anchor::Value(p) => index.nearest(p, false),
                        Anchor::Text(position) => *position,
                    },
                    _ => None,
                };
                let diagnostic = Diagnostic {
                    severity: finding.severity,
                    path: finding.path.to_string(),
                    line: position.map(|p| p.line),
                    column: position.map(|p| p.column),
                    message: finding.message,
                    origin: origin.label().map(str::to_owned),
                };
                (position, diagnostic)
            })
            .collect();
        // Stable: problems at one spot keep the order they were found in.
        located.sort_by_key(|(position, _)| (position.is_none(), *position));
        let mut items: Vec<Diagnostic> = Vec::with_capacity(located.len());
        for (_, diagnostic) in located {
            // Several backends may lead to one problem (a missing shared profile, say).
            if !items.contains(&diagnostic) {
                items.push(diagnostic);
            }
        }
        Self {
            file: file.map_or(PROGRAM, |(name, _)| name).to_owned(),
            items,
        }
    }

    /// How many errors.
    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    /// How many warnings.
    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    /// Whether the configuration cannot be used.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// `FILE: 2 errors, 1 warning`, `FILE: valid, 1 warning` or `FILE: valid`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("1 {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        let (errors, warnings) = (self.error_count(), self.warning_count());
        let verdict = match (errors, warnings) {
            (0, 0) => "valid".to_owned(),
            (0, w) => format!("valid, {}", plural(w, "warning")),
            (e, 0) => plural(e, "error"),
            (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
        };
        format!("{}: {verdict}", self.file)
    }

    /// The problems as human-readable lines, without the summary.
    pub fn human_lines(&self) -> Vec<String> {
        self.items.iter().map(|d| self.human_line(d)).collect()
    }

    fn human_line(&self, d: &Diagnostic) -> String {
        let place = match (d.line, d.column, &d.origin) {
            (_, _, Some(_)) => PROGRAM.to_owned(),
            (Some(line), Some(column), None) => format!("{}:{line}:{column}", self.file),
            _ => self.file.clone(),
        };
        format!("{place}: {}: {}", d.severity, path_and_message(d))
    }

    /// The whole report in `format`, ending with a newline.
    pub fn render(&self, format: Format) -> String {
        let mut out = match format {
            Format::Human => {
                let mut lines = self.human_lines();
                lines.push(self.summary());
                lines.join("\n")
            }
            Format::Json => serde_json::to_string_pretty(&self.items).unwrap_or_default(),
            Format::Github => {
                let mut lines: Vec<String> =
                    self.items.iter().map(|d| self.github_line(d)).collect();
                // A plain line reads well in the job log beside the annotations.
                lines.push(self.summary());
                lines.join("\n")
            }
        };
        out.push('\n');
        out
    }

    fn github_line(&self, d: &Diagnostic) -> String {
        let mut properties = format!("file={}", escape_property(&self.file));
        if let (Some(line), Some(column)) = (d.line, d.column) {
            properties.push_str(&format!(",line={line},col={column}"));
        }
        format!(
            "::{} {properties}::{}",
            d.severity,
            escape_data(&path_and_message(d))
        )
    }
}

/// The human form, summary included: what the proxy prints when it refuses a file.
impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render(Format::Human).trim_end())
    }
}

/// `PATH: message`, and the env var or flag it came from.
fn path_and_message(d: &Diagnostic) -> String {
    let mut text = if d.path.is_empty() {
        d.message.clone()
    } else {
        format!("{}: {}", d.path, d.message)
    };
    if let Some(origin) = &d.origin {
        text.push_str(&format!(" (from {origin})"));
    }
    text
}

/// GitHub's escaping for a workflow command's message.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub's escaping for a workflow command's property value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Every problem of the configuration, each located in the file or named by its source.
    #[error("{0}")]
    Diagnostics(Diagnostics),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::locate::KeyPath;

    #[test]
    fn github_commands_escape_their_fields() {
        let diagnostics = Diagnostics {
            file: "a,b:c.yaml".into(),
            items: vec![Diagnostic {
                severity: Severity::Warning,
                path: "x".into(),
                line: Some(1),
                column: Some(2),
                message: "100%\nsure".into(),
                origin: None,
            }],
        };
        assert_eq!(
            diagnostics.render(Format::Github).lines().next(),
            Some("::warning file=a%2Cb%3Ac.yaml,line=1,col=2::x: 100%25%0Asure")
        );
    }

    #[test]
    fn values_from_env_vars_and_flags_name_their_source() {
        let path = KeyPath::root().key("gateway").key("max_name_length");
        let finding = Finding::bad_value(&path, "200 must be at most 128".into());
        let index = PositionIndex::build("gateway:\n  max_name_length: 20\n");
        let from_env = Origin::Env("AUTHFUL_MCP_GATEWAY__MAX_NAME_LENGTH".into());
        let diagnostics = Diagnostics::place(Some(("c.yaml", &index)), [(finding, from_env)]);
        assert_eq!(
            diagnostics.human_lines(),
            [
                "authful-mcp-proxy: error: gateway.max_name_length: 200 must be at most 128 \
                 (from AUTHFUL_MCP_GATEWAY__MAX_NAME_LENGTH)"
            ]
        );
    }
}
