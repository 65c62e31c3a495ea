//! `authful-mcp-proxy validate [--format F] [--strict] [CONFIG]`: a configuration file
//! checked, every problem reported at once.
//!
//! The checks are the proxy's own at start-up ([`config::validate`]), run on the file alone:
//! each problem located in the file (`FILE:LINE:COL`), printed on stdout in the format asked
//! for, then a summary line. Unset `${VAR}`s without a default are warnings, errors with
//! `--strict`. Which file it checks is the command line's business ([`crate::cli`]).

use std::{path::Path, process::ExitCode};

use crate::config::{Format, validate};

use super::print_stdout;

/// Checks the file at `file` and prints the findings in `format`. Exit status: 0 valid
/// (warnings allowed), 1 invalid, 2 unreadable.
pub fn run(file: &Path, format: Format, strict: bool) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let options = validate::Options { strict, env: &env };
    let checked = match validate::check_file(file, &options) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("authful-mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let code = print_stdout(&checked.diagnostics.render(format));
    if checked.diagnostics.has_errors() {
        ExitCode::from(1)
    } else {
        code
    }
}
