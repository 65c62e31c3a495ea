//! Log lines in the Python original's style on stderr (or a file), never on stdout:
//! `2026-01-01T10:00:00.000Z [authful_mcp_proxy.auth] [info] message`.

use std::{fmt, io, path::Path, sync::Mutex};

use time::{OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only (`--silent`).
    Silent,
    /// Info and above (the default).
    Normal,
    /// Everything of ours at debug (`--debug`, `MCP_PROXY_DEBUG`).
    Debug,
}

const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats events as `timestamp [module] [level] message key=value...`.
pub struct OriginalFormat;

impl<S, N> FormatEvent<S, N> for OriginalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = OffsetDateTime::now_utc();
        let stamp = now.format(TIMESTAMP).map_err(|_| fmt::Error)?;
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let module = meta.target().replace("::", ".");
        write!(writer, "{stamp} [{module}] [{level}] ")?;
        // The message may quote what a backend or provider sent: one line, and no escape
        // sequence reaches the terminal that shows the log (the last line of defence; the
        // texts are cleaned where they come in too).
        let mut fields = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut fields), event)?;
        for c in fields.chars() {
            match c {
                '\n' | '\r' | '\t' => writer.write_char(' ')?,
                c if crate::error_text::is_safe(c) => writer.write_char(c)?,
                _ => {}
            }
        }
        writeln!(writer)
    }
}

fn filter(verbosity: Verbosity) -> EnvFilter {
    let directives = match verbosity {
        Verbosity::Silent => "error,rmcp::transport::worker=off",
        // rmcp's transport worker repeats, less readably, the connection errors we report, and
        // its service logs every error response we send as a warning of its own.
        Verbosity::Normal => {
            "warn,rmcp::transport::worker=off,rmcp::service=error,authful_mcp_proxy=info"
        }
        // rmcp's debug lines carry whole JSON-RPC messages, never our HTTP headers.
        Verbosity::Debug => "warn,authful_mcp_proxy=debug,rmcp=debug",
    };
    EnvFilter::new(directives)
}

/// Installs the global subscriber. With `log_file`, lines are appended there instead of stderr
/// (the file is created `0600`, and a symbolic link in its place is refused).
pub fn init(verbosity: Verbosity, log_file: Option<&Path>) -> io::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(verbosity))
        .with_ansi(false)
        .event_format(OriginalFormat);
    let result = match log_file {
        Some(path) => {
            // Debug logs tell a lot about a session: owner-only, and never through a link that
            // someone planted where the file should be.
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
            }
            let file = options.open(path)?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
        None => builder.with_writer(io::stderr).try_init(),
    };
    // A second init (tests running several gateways) keeps the first subscriber.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into shared memory, for one test's subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if let Ok(mut lines) = self.0.lock() {
                lines.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a backend or provider put into a message can neither forge a second log line nor
    /// send the terminal that shows the log an escape sequence.
    #[test]
    fn a_log_line_is_one_line_without_escapes() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(OriginalFormat)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let hostile =
                "evil\u{1b}]0;pwned\u{7}\n2026-01-01T00:00:00.000Z [x] [info] forged\u{202e}";
            tracing::warn!("Backend 'b': {hostile}");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            !text
                .trim_end()
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(
            text.contains("pwned") && text.contains(" 2026-01-01"),
            "{text:?}"
        );
    }
}
