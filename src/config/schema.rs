//! The JSON Schema of the configuration file, derived from the Rust types.
//!
//! Editors use it (through `# yaml-language-server: $schema=...`) and so does
//! `authful-mcp-proxy validate`, so that the types stay the one place that says which keys
//! exist and what they hold.

use serde_json::{Map, Value};

use super::Config;

/// What the schema says about the file as a whole (the type's own doc comment speaks to Rust
/// readers).
const DESCRIPTION: &str = "Configuration file of authful-mcp-proxy (`--config` or \
    `AUTHFUL_MCP_CONFIG`). String values may use ${VAR} and ${VAR:-default}; `$$` is a \
    literal `$`. Unknown keys are errors.";

/// The JSON Schema (draft 2020-12) of the configuration file.
pub fn json_schema() -> Value {
    let mut schema = schemars::schema_for!(Config).to_value();
    consts_to_enums(&mut schema);
    if let Some(root) = schema.as_object_mut() {
        root.insert("description".into(), DESCRIPTION.into());
    }
    schema
}

/// [`json_schema`] as committed in `schemas/config.schema.json`: pretty-printed, with a final
/// newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// schemars describes a unit enum with documented variants as `oneOf` of `const`s; editors
/// complete a plain `enum` better, so the variants' docs move into the description.
fn consts_to_enums(node: &mut Value) {
    match node {
        Value::Object(map) => {
            collapse(map);
            map.values_mut().for_each(consts_to_enums);
        }
        Value::Array(items) => items.iter_mut().for_each(consts_to_enums),
        _ => {}
    }
}

fn collapse(map: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = map.get("oneOf") else {
        return;
    };
    let consts: Option<Vec<(&Value, Option<&str>)>> = branches
        .iter()
        .map(|b| {
            let constant = b.get("const")?;
            let known = |k: &String| matches!(k.as_str(), "const" | "description" | "type");
            b.as_object()?
                .keys()
                .all(known)
                .then(|| (constant, b.get("description").and_then(Value::as_str)))
        })
        .collect();
    let Some(consts) = consts else {
        return;
    };
    let values: Vec<Value> = consts.iter().map(|(v, _)| (*v).clone()).collect();
    let notes: Vec<String> = consts
        .iter()
        .filter_map(|(v, d)| d.map(|d| format!("{v}: {d}")))
        .collect();
    let all_strings = values.iter().all(Value::is_string);
    map.remove("oneOf");
    if all_strings {
        map.insert("type".into(), "string".into());
    }
    map.insert("enum".into(), Value::Array(values));
    if !notes.is_empty() {
        let base = map.get("description").and_then(Value::as_str).unwrap_or("");
        let description = format!("{base} {}.", notes.join("; ")).trim().to_owned();
        map.insert("description".into(), description.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_is_a_plain_enum() {
        let schema = json_schema();
        let separator = &schema["$defs"]["Separator"];
        assert_eq!(separator["enum"], serde_json::json!(["_", "__", "-"]));
        assert_eq!(separator["type"], "string");
        assert!(separator.get("oneOf").is_none());
    }

    #[test]
    fn every_object_rejects_unknown_keys_and_required_keys_are_listed() {
        let schema = json_schema();
        assert_eq!(schema["additionalProperties"], false);
        for name in [
            "BackendConfig",
            "OidcProfileConfig",
            "GatewayConfig",
            "ToolFilterConfig",
            "ClientAssertionConfig",
        ] {
            assert_eq!(
                schema["$defs"][name]["additionalProperties"], false,
                "{name}"
            );
        }
        assert_eq!(
            schema["$defs"]["BackendConfig"]["required"],
            serde_json::json!(["url"])
        );
        // A profile without client_id is a client the proxy registers (RFC 7591).
        assert!(schema["$defs"]["OidcProfileConfig"]["required"].is_null());
    }
}
