//! `authful-mcp-proxy validate [--format F] [--strict] [CONFIG]`: a configuration file
//! checked, every problem reported at once.
//!
//! The checks are the proxy's own at start-up ([`crate::config::validate`]), run on the file
//! alone: each problem located in the file (`FILE:LINE:COL`), printed on stdout in the format
//! asked for, then a summary line. Unset `${VAR}`s without a default are warnings, errors with
//! `--strict`. Which file it checks is the command line's business ([`crate::cli`]).
//!
//! Judging the file is the work: an invalid file is its finding, and exits `1` — as a linter
//! in CI is expected to — while a file that cannot be read at all is a usage error (`2`), like
//! every other ([`Outcome`]'s rule). The proxy, for which the same file is its configuration,
//! refuses it with `2`.

use std::path::Path;

use crate::config::{Format, validate};

use super::{Outcome, print_stdout};

/// Checks the file at `file` and prints the findings in `format`. Exit status: 0 valid
/// (warnings allowed); 1 invalid, or the report could not be written; 2 unreadable (see
/// [`Outcome`]).
pub fn run(file: &Path, format: Format, strict: bool) -> Outcome {
    let env = |name: &str| std::env::var(name).ok();
    let options = validate::Options { strict, env: &env };
    let checked = match validate::check_file(file, &options) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("authful-mcp-proxy: {e}");
            return Outcome::UsageError;
        }
    };
    let printed = print_stdout(&checked.diagnostics.render(format));
    if checked.diagnostics.has_errors() {
        Outcome::Failed
    } else {
        printed
    }
}
