//! The binary's commands, one per module: what each does once the command line
//! ([`crate::cli`]) has said which one, and with what.
//!
//! - [`run`]: the proxy itself, when no subcommand is given — settings to
//!   [`proxy::serve`](crate::proxy::serve) on stdin/stdout, until the client leaves or a signal
//!   asks it to stop.
//! - [`login`], [`logout`], [`status`]: the commands around sign-in — tokens fetched ahead of
//!   time, forgotten (and revoked), and a look at each backend with them. [`selection`] picks
//!   the backends they are about by the names on the command line.
//! - [`validate`] and [`schema`]: the configuration file checked, and its JSON Schema.
//!
//! Every command ends in an [`Outcome`], whose exit status follows one rule: 0 success, 1 the
//! work failed, 2 a usage or configuration error the user must fix.
//!
//! A command takes its input resolved — the settings, the file to check — never the command
//! line itself: so each reads (and is tested) without clap, and each flag is defined once, in
//! [`crate::cli`]. What a command reports goes to stdout (`status`, `validate`, `schema`) or
//! stderr (`login`, `logout`); while the proxy runs, stdout belongs to JSON-RPC alone.

pub mod login;
pub mod logout;
pub mod run;
pub mod schema;
pub mod selection;
pub mod status;
pub mod validate;

use std::{io::Write, process::ExitCode, time::Duration};

/// How a command ended, and so the process's exit status. One rule for every command, the
/// proxy's run included, so that a script — or a person reading a desktop client's log — knows
/// what to do next:
///
/// - `0` [`Outcome::Success`]: everything asked for is done (for the proxy: the session ended,
///   by stdin closing, SIGTERM or SIGINT).
/// - `1` [`Outcome::Failed`]: the work itself failed or found problems — a sign-in, a
///   revocation, a backend that does not answer, the proxy's session; for `validate`, whose
///   work is judging a file, an invalid file — with a command line and a configuration in
///   order. The message says what went wrong.
/// - `2` [`Outcome::UsageError`]: the command line or the configuration is wrong — bad flags,
///   an unknown backend name, an invalid or unreadable configuration file — so nothing was
///   tried, and trying again cannot help until the user fixes it. clap exits `2` for the usage
///   errors it finds itself, which is why this is `2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// Exit status 1.
    Failed,
    /// Exit status 2.
    UsageError,
}

impl Outcome {
    /// The exit status.
    pub const fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::UsageError => 2,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.code())
    }
}

/// [`Outcome`]'s rule as `--help` states it.
pub const EXIT_STATUS_HELP: &str = "Exit status, for every command: 0 success (for the \
    proxy: its session ended, by stdin closing, SIGTERM or SIGINT); 1 the work failed or found \
    problems (a sign-in, a revocation, a backend that does not answer, the proxy's session, an \
    invalid file for `validate`); 2 a usage or configuration error to fix first (bad flags, an \
    unknown backend, an invalid or unreadable configuration of the command itself).";

/// Runs `command` to its end on the runtime every command shares. One thread: a relayed call
/// is a chain of small steps (stdin, rmcp's service loop, the HTTP connection, stdout), and on
/// a multi-thread runtime each step may wake another worker — a futex and a context switch per
/// step, which cost more than the steps. The proxy's work per message is small; the browser
/// opener runs on the blocking pool.
///
/// Neither a browser opener still running nor, after a signal, the thread blocked reading
/// stdin may keep the process alive once `command` is done: whatever mattered (the backend
/// sessions, the token files) it has closed, so the rest gets 200 ms.
pub fn block_on(command: impl Future<Output = Outcome>) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("authful-mcp-proxy: cannot start: {e}");
            return Outcome::Failed;
        }
    };
    let outcome = runtime.block_on(command);
    runtime.shutdown_timeout(Duration::from_millis(200));
    outcome
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not worth a panic.
fn print_stdout(text: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Outcome::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
        Err(e) => {
            eprintln!("authful-mcp-proxy: cannot write to stdout: {e}");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes scripts depend on, and clap's own usage errors among them.
    #[test]
    fn the_exit_status_rule() {
        assert_eq!(
            [Outcome::Success, Outcome::Failed, Outcome::UsageError].map(Outcome::code),
            [0, 1, 2]
        );
        let usage = <crate::cli::Cli as clap::Parser>::try_parse_from(["x", "--no-such-flag"]);
        assert_eq!(
            usage.map(|_| ()).unwrap_err().exit_code(),
            i32::from(Outcome::UsageError.code())
        );
    }
}
