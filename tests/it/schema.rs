//! The committed JSON Schema and configuration reference match the Rust types, and
//! `authful-mcp-proxy schema` (`--markdown`) prints them.

use std::{path::Path, process::Command};

use crate::support::binary::BIN;

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/config.schema.json");
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_committed_schema_is_fresh() {
    assert!(
        committed() == authful_mcp_proxy::config::json_schema_text(),
        "schemas/config.schema.json is stale: run `cargo run -- schema > \
         schemas/config.schema.json`"
    );
}

#[test]
fn the_schema_subcommand_prints_the_committed_file() {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed());
}

#[test]
fn the_schema_is_draft_2020_12_and_closed() {
    let schema: serde_json::Value = serde_json::from_str(&committed()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema.get("$id").is_none());
    assert_eq!(schema["additionalProperties"], false);
    let defs = &schema["$defs"];
    assert_eq!(
        defs["BackendConfig"]["properties"]["headers"]["additionalProperties"]["type"],
        "string"
    );
    assert_eq!(
        defs["Separator"]["enum"],
        serde_json::json!(["_", "__", "-"])
    );
    let scopes: Vec<&str> = defs["Scopes"]["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["string", "array"]);
}

#[test]
fn the_committed_configuration_reference_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == authful_mcp_proxy::config::reference_markdown(),
        "docs/configuration.md is stale: run `cargo run -- schema --markdown > \
         docs/configuration.md`"
    );
    let out = Command::new(BIN)
        .args(["schema", "--markdown"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}
