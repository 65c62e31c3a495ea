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
    /// Everything of ours at debug, and of each message only its shape: method, id, timing,
    /// counts and sizes (`--debug`, `MCP_PROXY_DEBUG`).
    Debug,
    /// [`Verbosity::Debug`] and whole messages: arguments, results, notifications, error
    /// messages (`--log-content`, `MCP_PROXY_LOG_CONTENT`).
    Content,
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

/// The `tracing` directives of each verbosity.
///
/// MCP messages may be confidential (a tool's arguments and results are the user's and the
/// backend's data), and debug logs end up in bug reports; so only [`Verbosity::Content`] lets
/// through the rmcp lines that print a whole message. Those are (rmcp 3.11):
/// - `rmcp::service`: `received request` (`?request`) and `response message` (`?result`) at
///   debug; `received notification` (`?notification`), `Service initialized` (`?peer_info`:
///   the peer's capabilities and instructions) and `cancelled` (the peer's reason) at info;
///   `response error` (`?error`: the message and data of every error the proxy answers, which
///   often repeat the arguments) at warn; `received id-less peer error` at debug;
/// - `rmcp::service::client`: `Received unexpected message` (`?message`, `?notification`) at
///   warn, during the handshake;
/// - `rmcp::transport::streamable_http_client`: `received message before initialize response`
///   (`?message`) at debug.
///
/// So `rmcp::service` is kept at error, as it is without `--debug`, and the Streamable HTTP
/// client at info; our own lines (`forward`) say what each request was and what came back, in
/// counts and sizes. The rest of rmcp stays at debug: its transport lines tell of connections,
/// SSE streams, retries and redirects; of what a backend sent, at most a parser's error or the
/// start of an HTTP error page that came instead of an answer. `rmcp::service::server` logs
/// protocol versions only. Reviewing these lines is part of upgrading rmcp; the `debug_log`
/// integration tests catch a message that reaches the log.
fn directives(verbosity: Verbosity) -> &'static str {
    match verbosity {
        Verbosity::Silent => "error,rmcp::transport::worker=off",
        // rmcp's transport worker repeats, less readably, the connection errors we report, and
        // its service logs every error response we send as a warning of its own.
        Verbosity::Normal => {
            "warn,rmcp::transport::worker=off,rmcp::service=error,authful_mcp_proxy=info"
        }
        Verbosity::Debug => {
            "warn,authful_mcp_proxy=debug,rmcp=debug,rmcp::service=error,\
             rmcp::service::server=debug,rmcp::transport::streamable_http_client=info"
        }
        // rmcp's lines carry whole JSON-RPC messages, never our HTTP headers (the token).
        Verbosity::Content => "warn,authful_mcp_proxy=debug,rmcp=debug",
    }
}

fn filter(verbosity: Verbosity) -> EnvFilter {
    EnvFilter::new(directives(verbosity))
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

    /// `EnvFilter::new` drops a directive it cannot read without a word, which would open or
    /// close a whole crate's logging unnoticed.
    #[test]
    fn every_directive_is_read() {
        for verbosity in [
            Verbosity::Silent,
            Verbosity::Normal,
            Verbosity::Debug,
            Verbosity::Content,
        ] {
            let text = directives(verbosity);
            let filter = EnvFilter::try_new(text);
            assert!(filter.is_ok(), "{verbosity:?}: {text}");
            assert_eq!(
                filter.map(|f| f.to_string().split(',').count()).ok(),
                Some(text.split(',').count()),
                "{verbosity:?}: {text}"
            );
        }
    }
}
