//! What only a file has: YAML syntax, unknown keys (with suggestions), values of the wrong
//! type, and `${VAR}` references. The rules on values are [`resolve`](super::resolve)'s.
//!
//! A file is read in two passes over one text: serde_yaml parses it (syntax errors), and a walk
//! against the JSON Schema of [`Config`] checks keys and types and expands `${VAR}` (see
//! `walk`). Positions come from a separate index of the text ([`PositionIndex`]).
//! `authful-mcp-proxy validate` then resolves the file on its own ([`check_text`]); the proxy
//! resolves it merged with its other layers ([`Sources`](super::Sources)). Either way the
//! findings are placed in the same text with the same index.

mod kinds;
mod walk;

use std::{collections::HashSet, path::Path};

use serde_yaml::{Mapping, Value as Yaml};

use super::{
    Config, ConfigError,
    finding::{Anchor, Finding, Origin, Severity},
    locate::{KeyPath, Position, PositionIndex},
    report::Diagnostics,
    resolve::resolve,
    schema::json_schema,
};

/// What a check needs besides the text.
pub struct Options<'a> {
    /// Unset variables without default are errors instead of warnings.
    pub strict: bool,
    /// Environment lookup for `${VAR}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Every problem, in file order.
    pub diagnostics: Diagnostics,
    /// The file's tree with variables expanded, ready to merge; `None` when there are errors.
    pub value: Option<Yaml>,
}

/// Reads and checks the file at `path` on its own; only an unreadable file is an `Err`.
pub fn check_file(path: &Path, options: &Options<'_>) -> Result<Checked, ConfigError> {
    let text = read(path)?;
    Ok(check_text(&path.display().to_string(), &text, options))
}

/// The text of the file at `path`.
pub(super) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks YAML `text` on its own, named `file` in the diagnostics: what `validate` does.
pub fn check_text(file: &str, text: &str, options: &Options<'_>) -> Checked {
    let layer = FileLayer::read(text, options);
    let mut findings = layer.findings.clone();
    if let Some(config) = layer.config() {
        findings.extend(layer.screen(resolve(&config, true).findings, true));
    }
    let diagnostics = Diagnostics::place(
        Some((file, &layer.index)),
        findings.into_iter().map(|f| (f, Origin::File)),
    );
    let value = (!diagnostics.has_errors()).then_some(layer.tree);
    Checked { diagnostics, value }
}

/// A file read as a layer of the configuration: what it says, and what was wrong with it.
#[derive(Debug, Clone)]
pub(super) struct FileLayer {
    /// Syntax, key, type and `${VAR}` problems.
    pub findings: Vec<Finding>,
    /// The tree with variables expanded and the values reported above left out.
    pub tree: Yaml,
    /// Where each key and value is written.
    pub index: PositionIndex,
    /// Paths of the values reported as errors.
    reported: HashSet<KeyPath>,
    /// Paths of strings that lack an unset variable's value.
    unresolved: HashSet<KeyPath>,
}

impl FileLayer {
    pub(super) fn read(text: &str, options: &Options<'_>) -> Self {
        let index = PositionIndex::build(text);
        let root = match parse(text) {
            Ok(root) => root,
            Err(problem) => {
                return Self {
                    reported: HashSet::from([KeyPath::root()]),
                    findings: vec![problem],
                    tree: Yaml::Mapping(Mapping::new()),
                    index,
                    unresolved: HashSet::new(),
                };
            }
        };
        let schema = json_schema();
        let mut walker = walk::Walker::new(&schema, options.env, options.strict);
        let tree = walker
            .walk(&root, &schema, &KeyPath::root())
            .filter(Yaml::is_mapping)
            .unwrap_or_else(|| Yaml::Mapping(Mapping::new()));
        let reported = walker
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| f.path.clone())
            .collect();
        Self {
            findings: walker.findings,
            tree,
            index,
            reported,
            unresolved: walker.unresolved,
        }
    }

    /// The file as the model, for resolving; `None` if the tree does not fit it (a type the
    /// walk does not know of), which only happens next to reported errors.
    pub(super) fn config(&self) -> Option<Config> {
        serde_yaml::from_value(self.tree.clone()).ok()
    }

    /// Drops the findings about values this file already reported (a wrong type, a broken
    /// reference) and, when `unresolved_too`, about strings missing an unset variable's value,
    /// which the walk warned about.
    pub(super) fn screen(&self, findings: Vec<Finding>, unresolved_too: bool) -> Vec<Finding> {
        let covered = |path: &KeyPath| {
            let hit = |set: &HashSet<KeyPath>| set.iter().any(|p| path.starts_with(p));
            hit(&self.reported) || (unresolved_too && hit(&self.unresolved))
        };
        findings.into_iter().filter(|f| !covered(&f.path)).collect()
    }
}

/// The document's tree, `<<` merge keys applied; an empty file is an empty mapping.
fn parse(text: &str) -> Result<Yaml, Finding> {
    let mut root: Yaml = serde_yaml::from_str(text).map_err(|e| syntax_error(&e))?;
    if root.is_null() {
        root = Yaml::Mapping(Mapping::new());
    }
    root.apply_merge().map_err(|e| syntax_error(&e))?;
    Ok(root)
}

fn syntax_error(e: &serde_yaml::Error) -> Finding {
    let text = e.to_string();
    // The position goes in the columns of its own; serde_yaml also puts it in the text.
    let message = match text.rsplit_once(" at line ") {
        Some((message, _)) if e.location().is_some() => message.to_owned(),
        _ => text,
    };
    Finding {
        severity: Severity::Error,
        path: KeyPath::root(),
        anchor: Anchor::Text(e.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        })),
        message: format!("YAML syntax error: {message}"),
    }
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
}
