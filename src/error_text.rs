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

/// `text` without control characters, cut at `max` characters: for text a stranger chose
/// (an error description in a login callback, say).
pub fn bounded(text: &str, max: usize) -> String {
    cut(text.chars().filter(|c| !c.is_control()).collect(), max)
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
    fn text_is_cut_on_character_boundaries() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("ééééé", 3), "ééé…");
        assert_eq!(bounded("a\u{1b}[31mb", 10), "a[31mb");
        assert_eq!(bounded("abcdef", 3), "abc…");
    }
}
