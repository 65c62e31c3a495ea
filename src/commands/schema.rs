//! `authful-mcp-proxy schema`: the JSON Schema of the configuration file on stdout, for
//! editors (`# yaml-language-server: $schema=...`) and for `schemas/config.schema.json`.

use std::process::ExitCode;

use crate::config::json_schema_text;

use super::print_stdout;

/// Prints the schema.
pub fn run() -> ExitCode {
    print_stdout(&json_schema_text())
}
