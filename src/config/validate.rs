//! Checks a configuration file and reports every problem at once, with where it is.
//!
//! Three passes over one text: serde_yaml parses it (syntax errors), a walk against the JSON
//! Schema of [`Config`] checks keys and types and expands `${VAR}` (see [`walk`]), and a few
//! rules check what a schema cannot (see [`rules`]). Positions come from a separate index of
//! the text ([`PositionIndex`]). `authful-mcp-proxy validate` prints the result, and so does
//! the proxy when it starts on a file.

mod rules;
mod walk;

use std::{fmt, path::Path};

use serde::Serialize;
use serde_yaml::{Mapping, Value as Yaml};

use super::{
    Config, ConfigError,
    locate::{KeyPath, Position, PositionIndex},
    schema::json_schema,
};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file can be used, but probably not as meant.
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
}

/// How [`Diagnostics`] are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `FILE:LINE:COL: error: PATH: message` lines and a summary line.
    #[default]
    Human,
    /// A JSON array of `{severity, path, line, column, message}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...,col=...::...`).
    Github,
}

/// Every problem of one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The file as named by the user.
    pub file: String,
    /// The problems.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
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

    /// Whether the file cannot be used.
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
        let place = match (d.line, d.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file),
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

fn path_and_message(d: &Diagnostic) -> String {
    if d.path.is_empty() {
        d.message.clone()
    } else {
        format!("{}: {}", d.path, d.message)
    }
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

/// What a check needs besides the text.
pub struct Options<'a> {
    /// Unset variables without default are errors instead of warnings.
    pub strict: bool,
    /// Environment lookup for `${VAR}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// What the layers above the file (env vars, flags) set: a key they provide is not
    /// missing from the file. `None` checks the file on its own.
    pub overlay: Option<&'a Config>,
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Every problem, in file order.
    pub diagnostics: Diagnostics,
    /// The file's tree with variables expanded, ready to merge; `None` when there are errors.
    pub value: Option<Yaml>,
}

/// Reads and checks the file at `path`; only an unreadable file is an `Err`.
pub fn check_file(path: &Path, options: &Options<'_>) -> Result<Checked, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(check_text(&path.display().to_string(), &text, options))
}

/// Checks YAML `text`, named `file` in the diagnostics.
pub fn check_text(file: &str, text: &str, options: &Options<'_>) -> Checked {
    let mut diagnostics = Diagnostics {
        file: file.to_owned(),
        items: Vec::new(),
    };
    let root = match parse(text) {
        Ok(root) => root,
        Err(problem) => {
            diagnostics.items.push(problem);
            return Checked {
                diagnostics,
                value: None,
            };
        }
    };
    let schema = json_schema();
    let overlay = options
        .overlay
        .and_then(|config| serde_json::to_value(config).ok());
    let mut walker = walk::Walker::new(&schema, options.env, overlay.as_ref(), options.strict);
    let value = walker.walk(&root, &schema, &KeyPath::root());
    let mut findings = walker.findings;
    findings.extend(rules::check(&value, &walker.unresolved, options.overlay));
    diagnostics.items = locate(findings, &PositionIndex::build(text));
    let value = (!diagnostics.has_errors()).then_some(value);
    Checked { diagnostics, value }
}

/// The document's tree, `<<` merge keys applied; an empty file is an empty mapping.
fn parse(text: &str) -> Result<Yaml, Diagnostic> {
    let mut root: Yaml = serde_yaml::from_str(text).map_err(|e| syntax_error(&e))?;
    if root.is_null() {
        root = Yaml::Mapping(Mapping::new());
    }
    root.apply_merge().map_err(|e| syntax_error(&e))?;
    Ok(root)
}

fn syntax_error(e: &serde_yaml::Error) -> Diagnostic {
    let text = e.to_string();
    // The position goes in the columns of its own; serde_yaml also puts it in the text.
    let message = match text.rsplit_once(" at line ") {
        Some((message, _)) if e.location().is_some() => message.to_owned(),
        _ => text,
    };
    Diagnostic {
        severity: Severity::Error,
        path: String::new(),
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        message: format!("YAML syntax error: {message}"),
    }
}

/// Gives each finding its position and sorts them in file order (unlocated ones last).
fn locate(findings: Vec<Finding>, index: &PositionIndex) -> Vec<Diagnostic> {
    let mut located: Vec<(Option<Position>, Diagnostic)> = findings
        .into_iter()
        .map(|f| {
            let position = match &f.anchor {
                Anchor::Key(p) => index.nearest(p, true),
                Anchor::Value(p) => index.nearest(p, false),
                Anchor::Nowhere => None,
            };
            let diagnostic = Diagnostic {
                severity: f.severity,
                path: f.path.to_string(),
                line: position.map(|p| p.line),
                column: position.map(|p| p.column),
                message: f.message,
            };
            (position, diagnostic)
        })
        .collect();
    // Stable: problems at one spot keep the order they were found in.
    located.sort_by_key(|(position, _)| (position.is_none(), *position));
    located.into_iter().map(|(_, d)| d).collect()
}

/// Which text a finding points at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Anchor {
    /// The key of this path (an unknown key, a missing key's parent).
    Key(KeyPath),
    /// The value of this path (a bad value).
    Value(KeyPath),
    /// Nothing in the text (a top-level key that is absent).
    Nowhere,
}

/// A problem before it is located.
#[derive(Debug, Clone)]
struct Finding {
    severity: Severity,
    path: KeyPath,
    anchor: Anchor,
    message: String,
}

impl Finding {
    fn error(path: KeyPath, anchor: Anchor, message: String) -> Self {
        Self {
            severity: Severity::Error,
            path,
            anchor,
            message,
        }
    }

    pub(crate) fn warning(path: KeyPath, anchor: Anchor, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            path,
            anchor,
            message,
        }
    }

    fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
fn suggest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word_n = normal(word);
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(&word_n, &normal(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus swaps of neighbours (`ulr` → `url`
/// is one edit).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn check(text: &str) -> Vec<String> {
        let options = Options {
            strict: false,
            env: &no_env,
            overlay: None,
        };
        check_text("c.yaml", text, &options)
            .diagnostics
            .human_lines()
    }

    const VALID: &str = "oidc_profiles:\n  corp:\n    issuer_url: https://auth.example.com\n    \
                         client_id: cid\nbackends:\n  tools:\n    url: https://mcp.example.com/mcp\n    \
                         oidc_profile: corp\n";

    #[test]
    fn a_valid_file_has_no_diagnostics_and_yields_its_tree() {
        let options = Options {
            strict: false,
            env: &no_env,
            overlay: None,
        };
        let checked = check_text("c.yaml", VALID, &options);
        assert_eq!(checked.diagnostics.items, []);
        assert_eq!(checked.diagnostics.summary(), "c.yaml: valid");
        let config: Config = serde_yaml::from_value(checked.value.unwrap()).unwrap();
        assert_eq!(
            config.backends["tools"].oidc_profile.as_deref(),
            Some("corp")
        );
    }

    #[test]
    fn typos_get_suggestions() {
        assert_eq!(suggest("ulr", ["url", "headers"].into_iter()), Some("url"));
        assert_eq!(
            suggest("client-id", ["client_id", "client_secret"].into_iter()),
            Some("client_id")
        );
        assert_eq!(suggest("zzz", ["url"].into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn numbers_where_text_is_meant_are_taken_as_text() {
        let text = VALID.replace("client_id: cid", "client_id: 12345");
        assert_eq!(check(&text), Vec::<String>::new());
    }

    #[test]
    fn variables_may_fill_numbers_and_booleans() {
        let text =
            format!("{VALID}    enabled: ${{ON:-true}}\ngateway:\n  startup_timeout: ${{T:-7}}\n");
        let options = Options {
            strict: false,
            env: &no_env,
            overlay: None,
        };
        let checked = check_text("c.yaml", &text, &options);
        assert_eq!(checked.diagnostics.items, []);
        let config: Config = serde_yaml::from_value(checked.value.unwrap()).unwrap();
        assert_eq!(config.gateway.startup_timeout, Some(7));
        assert_eq!(config.backends["tools"].enabled, Some(true));
        let bad = text.replace("${T:-7}", "${T:-soon}");
        assert_eq!(
            check(&bad),
            [
                "c.yaml:11:20: error: gateway.startup_timeout: expected a whole number, found \
              the text 'soon' (after expanding variables)"
            ]
        );
    }

    #[test]
    fn an_overlay_fills_what_the_file_leaves_out() {
        let text = "backends:\n  default:\n    oidc_profile: default\n";
        let overlay: Config = serde_yaml::from_str(
            "oidc_profiles:\n  default:\n    issuer_url: https://a\n    client_id: c\n\
             backends:\n  default:\n    url: https://m/mcp\n",
        )
        .unwrap();
        let options = Options {
            strict: false,
            env: &no_env,
            overlay: Some(&overlay),
        };
        assert_eq!(check_text("c.yaml", text, &options).diagnostics.items, []);
        assert_eq!(check(text).len(), 2, "{:?}", check(text));
    }

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
            }],
        };
        assert_eq!(
            diagnostics.render(Format::Github).lines().next(),
            Some("::warning file=a%2Cb%3Ac.yaml,line=1,col=2::x: 100%25%0Asure")
        );
    }
}
