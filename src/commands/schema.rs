//! `authful-mcp-proxy schema`: the JSON Schema of the configuration file on stdout, for
//! editors (`# yaml-language-server: $schema=...`) and for `schemas/config.schema.json`; with
//! `--markdown`, the configuration reference made from it (`docs/configuration.md`).

use crate::config::{json_schema_text, reference_markdown};

use super::{Outcome, print_stdout};

/// Prints the schema, or the reference.
pub fn run(markdown: bool) -> Outcome {
    match markdown {
        true => print_stdout(&reference_markdown()),
        false => print_stdout(&json_schema_text()),
    }
}
