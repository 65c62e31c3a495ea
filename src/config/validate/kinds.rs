//! Kinds of value as the JSON Schema names them and as messages describe them: which kinds a
//! schema takes, which kind a YAML value is, and the words for both.

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The `type` keyword as a list (it may be one name or several).
pub(super) fn schema_types(schema: &Json) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Json::String(t) => Some(vec![t.as_str()]),
        Json::Array(list) => Some(list.iter().filter_map(Json::as_str).collect()),
        _ => None,
    }
}

/// The JSON Schema type name of a YAML value.
pub(super) fn kind_of(value: &Yaml) -> &'static str {
    match value {
        Yaml::Null => "null",
        Yaml::Bool(_) => "boolean",
        Yaml::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Yaml::Number(_) => "number",
        Yaml::String(_) => "string",
        Yaml::Sequence(_) => "array",
        Yaml::Mapping(_) => "object",
        Yaml::Tagged(_) => "tagged",
    }
}

pub(super) fn accepts(types: &[&str], value: &Yaml) -> bool {
    let kind = kind_of(value);
    types.contains(&kind) || (kind == "integer" && types.contains(&"number"))
}

/// Values the loader takes in place of the declared type: a number or boolean where text is
/// meant (`client_id: 12345`), and the text of a `${VAR}` where a number or boolean is meant
/// (`login_timeout: ${TIMEOUT:-300}`), an empty expansion counting as unset.
pub(super) fn coerce(types: &[&str], value: &Yaml, from_env: bool) -> Option<Yaml> {
    match value {
        Yaml::Number(n) if types.contains(&"string") => Some(Yaml::String(n.to_string())),
        Yaml::Bool(b) if types.contains(&"string") => Some(Yaml::String(b.to_string())),
        Yaml::String(text) if from_env => {
            let text = text.trim();
            if text.is_empty() && types.contains(&"null") {
                return Some(Yaml::Null);
            }
            let parsed: Yaml = serde_yaml::from_str(text).ok()?;
            let fits = matches!(parsed, Yaml::Bool(_) | Yaml::Number(_)) && accepts(types, &parsed);
            fits.then_some(parsed)
        }
        _ => None,
    }
}

pub(super) fn kind_word(kind: &str) -> &'static str {
    match kind {
        "null" => "nothing",
        "boolean" => "true or false",
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "text",
        "array" => "a list",
        "object" => "a mapping",
        _ => "something else",
    }
}

/// A value for a message: its kind and, for scalars, the value itself.
pub(super) fn describe(value: &Yaml) -> String {
    match value {
        Yaml::Null => "nothing (an empty value)".to_owned(),
        Yaml::Bool(b) => format!("the boolean {b}"),
        Yaml::Number(n) => format!("the number {n}"),
        Yaml::String(s) => format!("the text '{s}'"),
        Yaml::Sequence(_) => "a list".to_owned(),
        Yaml::Mapping(_) => "a mapping".to_owned(),
        Yaml::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

pub(super) fn quote_json(value: &Json) -> String {
    match value {
        Json::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// `a`, `a or b`, `a, b or c`.
pub(super) fn or_list(words: &[&str]) -> String {
    match words {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
