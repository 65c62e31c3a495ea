//! `${VAR}` and `${VAR:-default}` in the configuration file's string values.
//!
//! Only string values are expanded, never keys: a key is part of the file's structure, a value
//! is data. `$$` is a literal `$`; any other `$` is kept as it is (`pa$word`, `$HOME`). The
//! default text is taken literally up to the first `}` and is used when the variable is unset
//! or empty (as in POSIX shells and Docker Compose). An unset variable without default expands
//! to the empty string and is reported, so that callers can warn about it.

/// Why a `${...}` reference cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// `${` without its `}`.
    #[error("'${{' without a closing '}}' (write '$$' for a literal '$')")]
    Unclosed,
    /// `${}` or `${:-x}`.
    #[error("'${{}}' names no variable")]
    EmptyName,
    /// A name that is not `[A-Za-z_][A-Za-z0-9_]*`, or a modifier other than `:-`.
    #[error(
        "invalid reference '${{{0}}}': use ${{NAME}} or ${{NAME:-default}}, with NAME made of \
         letters, digits and '_' (not starting with a digit)"
    )]
    BadReference(String),
}

/// One string after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded {
    /// The text with every reference replaced.
    pub text: String,
    /// Variables referenced without default that are not set, in order.
    pub unset: Vec<String>,
    /// Whether the text had at least one `${...}` reference.
    pub had_references: bool,
}

/// Expands the references in one string.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, Malformed> {
    let mut out = Expanded::default();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.text.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.text.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let close = body_and_tail.find('}').ok_or(Malformed::Unclosed)?;
            let body = &body_and_tail[..close];
            out.had_references = true;
            substitute(body, lookup, &mut out)?;
            rest = &body_and_tail[close + 1..];
        } else {
            out.text.push('$');
            rest = after;
        }
    }
    out.text.push_str(rest);
    Ok(out)
}

/// Appends the value of one reference, `NAME` or `NAME:-default`.
fn substitute(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Expanded,
) -> Result<(), Malformed> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if name.is_empty() {
        return Err(Malformed::EmptyName);
    }
    if !is_name(name) {
        return Err(Malformed::BadReference(body.to_owned()));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => out.text.push_str(default),
        (Some(value), _) => out.text.push_str(&value),
        (None, Some(default)) => out.text.push_str(default),
        (None, None) => out.unset.push(name.to_owned()),
    }
    Ok(())
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TEAM" => Some("platform".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ex(text: &str) -> Result<Expanded, Malformed> {
        expand(text, &env)
    }

    #[test]
    fn set_variables_and_defaults() {
        assert_eq!(ex("x-${TEAM}-y").unwrap().text, "x-platform-y");
        assert_eq!(ex("${TEAM:-core}").unwrap().text, "platform");
        assert_eq!(ex("${NOPE:-core}").unwrap().text, "core");
        assert_eq!(ex("${EMPTY:-core}").unwrap().text, "core");
        assert_eq!(ex("${NOPE:-}").unwrap().text, "");
        assert_eq!(ex("${NOPE:-a b:-c}").unwrap().text, "a b:-c");
        assert_eq!(
            ex("${EMPTY}").unwrap(),
            Expanded {
                text: String::new(),
                unset: vec![],
                had_references: true
            }
        );
        assert!(!ex("plain").unwrap().had_references);
    }

    #[test]
    fn double_dollar_is_a_literal_dollar_and_lone_dollars_stay() {
        assert_eq!(ex("pa$$word").unwrap().text, "pa$word");
        assert_eq!(ex("$${TEAM}").unwrap().text, "${TEAM}");
        assert_eq!(ex("$HOME and 5$ $").unwrap().text, "$HOME and 5$ $");
        assert!(!ex("$${TEAM}").unwrap().had_references);
    }

    #[test]
    fn unset_variables_expand_to_nothing_and_are_reported() {
        let expanded = ex("a${NOPE}b${ALSO_NOPE}").unwrap();
        assert_eq!(expanded.text, "ab");
        assert_eq!(expanded.unset, ["NOPE", "ALSO_NOPE"]);
    }

    #[test]
    fn malformed_references_are_errors() {
        assert_eq!(ex("${TEAM"), Err(Malformed::Unclosed));
        assert_eq!(ex("${}"), Err(Malformed::EmptyName));
        assert_eq!(ex("${:-x}"), Err(Malformed::EmptyName));
        assert_eq!(ex("${1X}"), Err(Malformed::BadReference("1X".into())));
        assert_eq!(ex("${A-B}"), Err(Malformed::BadReference("A-B".into())));
        assert_eq!(ex("${A:=b}"), Err(Malformed::BadReference("A:=b".into())));
    }
}
