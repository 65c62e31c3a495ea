//! Errors as text a person reads: the whole chain of causes on one line, and untrusted text
//! cut to a bounded length.
//!
//! Every message the proxy builds from an error (for the client, the log, the login page)
//! goes through here, so that a cause hidden inside rmcp or `io::Error` is found, and a body a
//! server sent never fills a screen.

use std::error::Error;

/// Every error in `error`'s chain, `error` first, including the ones rmcp and `io::Error`
/// hold without exposing them as a `source`.
pub fn causes<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut all = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        all.push(e);
        if let Some(rmcp::service::ClientInitializeError::TransportError { error, .. }) =
            e.downcast_ref::<rmcp::service::ClientInitializeError>()
        {
            current = Some(error);
            continue;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            current = Some(inner);
            continue;
        }
        current = e.source();
    }
    all
}

/// The first error of type `T` in `error`'s chain.
pub fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    causes(error)
        .into_iter()
        .find_map(|e| e.downcast_ref::<T>())
}

/// An error and its sources on one line, each said once.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// `text` on one line (white space folded), cut at `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(flat, max)
}

/// How much of a stranger's text a message quotes: enough for any honest error description,
/// URL or server name.
pub const UNTRUSTED_MAX: usize = 300;

/// Whether `c` may reach a terminal or a log from text a stranger chose: no control characters
/// (ESC starts terminal escapes that recolour, retitle or rewrite the screen; a newline forges
/// a log line), and no Unicode bidirectional controls (which reorder what a person reads, so
/// that `evil.example/good.example` shows as something else).
pub fn is_safe(c: char) -> bool {
    !c.is_control()
        && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` without control characters or bidirectional controls, cut at `max` characters: for
/// text a stranger chose (an error description in a login callback, a device code, a server's
/// name).
pub fn bounded(text: &str, max: usize) -> String {
    cut(text.chars().filter(|c| is_safe(*c)).collect(), max)
}

/// `text` without control characters or bidirectional controls, whole: for a message bound for
/// a terminal that may quote a stranger (an error chain, a scope list, a URL).
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| is_safe(*c)).collect()
}

/// [`bounded`] at [`UNTRUSTED_MAX`]: what every string from a provider or a backend becomes
/// before a person or a log sees it.
pub fn untrusted(text: &str) -> String {
    bounded(text, UNTRUSTED_MAX)
}

/// "30 seconds", "5 minutes": a duration as a person says it, never rounded up to a unit
/// larger than itself ("1 minute" for 30 s was a lie).
pub fn duration_words(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        1 => "1 second".to_owned(),
        0..120 => format!("{seconds} seconds"),
        _ if seconds.is_multiple_of(60) => format!("{} minutes", seconds / 60),
        _ => format!("{} minutes {} seconds", seconds / 60, seconds % 60),
    }
}

fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_hidden_in_io_errors_are_found() {
        let inner = std::io::Error::other(std::fmt::Error);
        let outer = Outer(inner);
        assert!(find::<std::fmt::Error>(&outer).is_some());
        assert_eq!(
            chain(&outer),
            "outer: an error occurred when formatting an argument"
        );
    }

    #[test]
    fn durations_are_said_as_they_are() {
        use std::time::Duration;
        assert_eq!(duration_words(Duration::from_secs(30)), "30 seconds");
        assert_eq!(duration_words(Duration::from_secs(1)), "1 second");
        assert_eq!(duration_words(Duration::from_secs(300)), "5 minutes");
        assert_eq!(
            duration_words(Duration::from_secs(150)),
            "2 minutes 30 seconds"
        );
    }

    #[test]
    fn text_is_cut_on_character_boundaries() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("ééééé", 3), "ééé…");
        assert_eq!(bounded("a\u{1b}[31mb", 10), "a[31mb");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(
            untrusted("good\u{202e}elpmaxe.live\r\nforged line\u{9b}2J"),
            "goodelpmaxe.liveforged line2J"
        );
    }
}
