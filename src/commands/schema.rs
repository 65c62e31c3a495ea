//! `authful-mcp-proxy schema`: the JSON Schema of the configuration file on stdout, for
//! editors (`# yaml-language-server: $schema=...`) and for `schemas/config.schema.json`.

use crate::config::json_schema_text;

use super::{Outcome, print_stdout};

/// Prints the schema.
pub fn run() -> Outcome {
    print_stdout(&json_schema_text())
}
