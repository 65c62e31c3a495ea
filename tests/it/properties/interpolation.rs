//! `${VAR}` interpolation.

use std::collections::BTreeMap;

use authful_mcp_proxy::config::interpolate::{Malformed, expand};
use proptest::prelude::*;

use super::cases;

/// Variable names of the generated environments: a small pool, so references hit set, empty
/// and unset variables alike.
const VAR_NAMES: [&str; 5] = ["A", "TEAM", "_X", "V1", "HOME_DIR"];

/// A generated environment: each pool variable unset, empty, or set to any text (which may
/// itself look like a reference: values are never expanded again).
fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![
        Just(String::new()),
        any::<String>(),
        "\\$\\{[A-Z_]{1,4}(:-[a-z]{0,3})?\\}.{0,4}",
        "[a-z$]{0,4}\\$\\$[a-z]{0,4}",
    ];
    prop::collection::btree_map(prop::sample::select(VAR_NAMES.to_vec()), value, 0..=5)
        .prop_map(|env| env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// One piece of a template, with the text it must expand to.
#[derive(Debug, Clone)]
enum Piece {
    /// Text without `$`.
    Text(String),
    /// `$$`.
    Dollars,
    /// `$` and a character that is neither `$` nor `{`: kept as it is.
    Lone(char),
    /// `${NAME}` or `${NAME:-default}`; the default has no `}`.
    Ref {
        name: String,
        default: Option<String>,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => "[^$]{0,8}".prop_map(Piece::Text),
        1 => Just(Piece::Dollars),
        1 => any::<char>()
            .prop_filter("not $ or {", |c| *c != '$' && *c != '{')
            .prop_map(Piece::Lone),
        3 => (
            prop_oneof![
                prop::sample::select(VAR_NAMES.to_vec()).prop_map(str::to_owned),
                "[A-Za-z_][A-Za-z0-9_]{0,6}",
            ],
            prop::option::of("[^}]{0,8}"),
        )
            .prop_map(|(name, default)| Piece::Ref { name, default }),
    ]
}

/// The template `pieces` spell, and what it must expand to under `env`: the text, the unset
/// variables without default, and whether there was a reference.
fn model(pieces: &[Piece], env: &BTreeMap<String, String>) -> (String, String, Vec<String>, bool) {
    let (mut template, mut text, mut unset, mut had_refs) =
        (String::new(), String::new(), Vec::new(), false);
    for piece in pieces {
        match piece {
            Piece::Text(t) => {
                template.push_str(t);
                text.push_str(t);
            }
            Piece::Dollars => {
                template.push_str("$$");
                text.push('$');
            }
            Piece::Lone(c) => {
                template.push('$');
                template.push(*c);
                text.push('$');
                text.push(*c);
            }
            Piece::Ref { name, default } => {
                had_refs = true;
                match default {
                    Some(d) => template.push_str(&format!("${{{name}:-{d}}}")),
                    None => template.push_str(&format!("${{{name}}}")),
                }
                match (env.get(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => text.push_str(d),
                    (Some(v), _) => text.push_str(v),
                    (None, Some(d)) => text.push_str(d),
                    (None, None) => unset.push(name.clone()),
                }
            }
        }
    }
    (template, text, unset, had_refs)
}

fn lookup(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.get(name).cloned()
}

/// A reference that cannot be expanded, starting at `${`.
fn malformed() -> impl Strategy<Value = String> {
    prop_oneof![
        // Unterminated: no `}` anywhere after it.
        "[^}]{0,10}".prop_map(|rest| format!("${{{rest}")),
        Just("${}".to_owned()),
        ":-[^}]{0,5}".prop_map(|d| format!("${{{d}}}")),
        // A name starting with a digit.
        "[0-9][A-Za-z0-9_]{0,5}".prop_map(|n| format!("${{{n}}}")),
        // A name with a character outside [A-Za-z0-9_] (but not the start of `:-`).
        "[A-Za-z_][A-Za-z0-9_]{0,3}[^A-Za-z0-9_}:][^}]{0,4}".prop_map(|n| format!("${{{n}}}")),
        // A modifier other than `:-`.
        "[A-Z]{1,3}:[^-}][^}]{0,3}".prop_map(|n| format!("${{{n}}}")),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    /// 1000 cases: text without `$` comes out unchanged, without references.
    #[test]
    fn text_without_dollar_is_unchanged(text in "[^$]*", env in environment()) {
        let expanded = expand(&text, &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, text);
        prop_assert!(expanded.unset.is_empty());
        prop_assert!(!expanded.had_references);
    }

    /// 1000 cases: without `{`, nothing is a reference: `$$` is a literal `$` (read left to
    /// right) and every other `$` stays as it is.
    #[test]
    fn double_dollar_is_a_literal_dollar(text in "[^{]*", env in environment()) {
        let expanded = expand(&text, &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, text.replace("$$", "$"));
        prop_assert!(!expanded.had_references);
    }

    /// 1000 cases: a template of text, `$$`, lone `$`s and references (set, empty and unset
    /// variables, with and without default) expands exactly as documented: the value as it
    /// is (never expanded again), the default when unset or empty, nothing (reported) when
    /// unset without default.
    #[test]
    fn templates_expand_as_documented(
        pieces in prop::collection::vec(piece(), 0..8),
        env in environment(),
    ) {
        let (template, text, unset, had_refs) = model(&pieces, &env);
        let expanded = expand(&template, &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, text);
        prop_assert_eq!(expanded.unset, unset);
        prop_assert_eq!(expanded.had_references, had_refs);
    }

    /// 1000 cases: `${NAME}` is the variable's value verbatim, whatever it contains.
    #[test]
    fn values_are_not_expanded_again(
        value in prop_oneof![any::<String>(), ".*\\$\\{[A-Z]{1,3}\\}.*", ".*\\$\\$.*"],
        before in "[^$]{0,5}",
        after in "[^$]{0,5}",
    ) {
        let env = BTreeMap::from([("TEAM".to_owned(), value.clone())]);
        let expanded = expand(&format!("{before}${{TEAM}}{after}"), &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, format!("{before}{value}{after}"));
    }

    /// 1000 cases: `${NAME:-default}` is the default when the variable is unset or empty
    /// (README: "the default applies when VAR is unset or empty"), and the value otherwise.
    #[test]
    fn defaults_apply_when_unset_or_empty(
        default in "[^}]*",
        value in prop::option::of(any::<String>()),
    ) {
        let env: BTreeMap<String, String> =
            value.iter().map(|v| ("TEAM".to_owned(), v.clone())).collect();
        let expanded = expand(&format!("${{TEAM:-{default}}}"), &lookup(&env)).unwrap();
        let expected = match value {
            Some(v) if !v.is_empty() => v,
            _ => default,
        };
        prop_assert_eq!(expanded.text, expected);
        prop_assert!(expanded.unset.is_empty());
    }

    /// 1000 cases: a malformed reference (`${` unterminated, `${}`, `${1A}`, bad characters,
    /// another modifier) after any text without `$` is an error, whatever follows it.
    #[test]
    fn malformed_references_are_errors(
        before in "[^$]{0,6}",
        reference in malformed(),
        after in ".{0,6}",
        env in environment(),
    ) {
        // An unterminated reference must stay unterminated: nothing after it.
        let after = if reference.ends_with('}') { after } else { String::new() };
        let result = expand(&format!("{before}{reference}{after}"), &lookup(&env));
        prop_assert!(result.is_err(), "{reference:?} gave {result:?}");
    }

    /// 1000 cases: any text at all (and text made of the grammar's own characters, to reach
    /// its corners) expands or fails with a [`Malformed`], never panics; failing needs `${`.
    #[test]
    fn expansion_never_panics(
        text in prop_oneof![any::<String>(), "[${}:\\-A-Z_0-9a ]{0,24}"],
        env in environment(),
    ) {
        match expand(&text, &lookup(&env)) {
            Ok(expanded) => {
                for name in &expanded.unset {
                    let reference = format!("${{{name}");
                    prop_assert!(text.contains(&reference));
                }
            }
            Err(reason) => {
                prop_assert!(text.contains("${"), "{text:?}: {reason}");
                let known = matches!(
                    reason,
                    Malformed::Unclosed | Malformed::EmptyName | Malformed::BadReference(_)
                );
                prop_assert!(known);
            }
        }
    }
}
