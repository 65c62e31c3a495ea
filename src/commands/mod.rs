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

/// Runs `command` to its end on the runtime every command shares. One thread: a relayed call
/// is a chain of small steps (stdin, rmcp's service loop, the HTTP connection, stdout), and on
/// a multi-thread runtime each step may wake another worker — a futex and a context switch per
/// step, which cost more than the steps. The proxy's work per message is small; the browser
/// opener runs on the blocking pool.
///
/// Neither a browser opener still running nor, after a signal, the thread blocked reading
/// stdin may keep the process alive once `command` is done: whatever mattered (the backend
/// sessions, the token files) it has closed, so the rest gets 200 ms.
pub fn block_on(command: impl Future<Output = ExitCode>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("authful-mcp-proxy: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(command);
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not worth a panic.
fn print_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authful-mcp-proxy: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}
