//! The checks on single values that more than one rule needs: endpoint URLs, the redirect URL,
//! prefixes, HTTP headers, and the "did you mean" of a misspelt name.
//!
//! Each returns what is wrong as text a user can act on, or `None`; the rules in
//! [`resolve`](super::resolve) say where. `auth::oidc` reuses [`endpoint_problem`] on what an
//! identity provider advertises.

use url::Url;

use super::{DEFAULT_REDIRECT_URL, Separator};

/// Headers the proxy sets itself on every request: a configured value would fight them.
const PROXY_HEADERS: [&str; 5] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "accept",
    "content-type",
    "last-event-id",
];

/// What is wrong with an issuer or backend URL, if anything: it must be `https://`, or
/// `http://` on a loopback host; elsewhere tokens and secrets would cross the network in clear.
pub fn endpoint_problem(url: &Url) -> Option<String> {
    endpoint_problem_as(url, url.as_str())
}

/// [`endpoint_problem`], naming the URL as the user wrote it.
pub fn endpoint_problem_as(url: &Url, written: &str) -> Option<String> {
    match url.scheme() {
        "https" => None,
        "http" if is_loopback_host(url) => None,
        "http" => Some(format!(
            "'{written}' must use https:// (http:// is only allowed on localhost, 127.0.0.1 or \
             [::1])"
        )),
        _ => Some(format!("'{written}' must be an https:// URL")),
    }
}

/// What is wrong with a redirect URL, if anything: `http://` on a loopback host with a port
/// of its own (not 80, which URLs leave out and which needs root to listen on). The callback
/// server binds the URL's own host and port.
pub fn redirect_problem(url: &Url) -> Option<String> {
    redirect_problem_as(url, url.as_str())
}

/// [`redirect_problem`], naming the URL as the user wrote it.
pub fn redirect_problem_as(url: &Url, written: &str) -> Option<String> {
    if url.scheme() == "http" && is_loopback_host(url) && url.port().is_some() {
        return None;
    }
    if url.scheme() == "http" && is_loopback_host(url) {
        return Some(format!(
            "'{written}' needs an explicit port other than 80 (the http default, which URLs \
             leave out and which needs root to listen on), e.g. {DEFAULT_REDIRECT_URL}"
        ));
    }
    Some(format!(
        "'{written}' must be http:// on localhost, 127.0.0.1 or [::1] with an explicit port, \
         e.g. {DEFAULT_REDIRECT_URL}"
    ))
}

/// Whether a URL's host is `localhost` or a loopback address.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// What is wrong with a prefix, if anything: it must match `^[a-z][a-z0-9-]*$` and must not
/// contain the separator (or names could be split two ways).
pub fn prefix_problem(prefix: &str, separator: Separator) -> Option<String> {
    let mut chars = prefix.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Some(format!(
            "prefix '{prefix}' must start with a lowercase letter and contain only lowercase \
             letters, digits and '-' (^[a-z][a-z0-9-]*$)"
        ));
    }
    if prefix.contains(separator.as_str()) {
        return Some(format!(
            "prefix '{prefix}' contains the separator '{}'",
            separator.as_str()
        ));
    }
    None
}

/// What is wrong with a configured header name, if anything; `has_profile` tells that the
/// backend gets a bearer token, which an `Authorization` header would replace.
pub fn header_name_problem(name: &str, has_profile: bool) -> Option<String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(format!("'{name}' is not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if PROXY_HEADERS.contains(&lower.as_str()) {
        return Some(format!(
            "'{name}' is set by the proxy itself and cannot be configured"
        ));
    }
    if lower == "authorization" && has_profile {
        return Some(format!(
            "'{name}' would replace the bearer token of the backend's oidc_profile; remove \
             the header or the oidc_profile"
        ));
    }
    None
}

/// What is wrong with a configured header value, if anything.
pub fn header_value_problem(value: &str) -> Option<String> {
    http::HeaderValue::from_str(value).is_err().then(|| {
        "not a valid HTTP header value (only visible ASCII characters, spaces and tabs, on one \
         line)"
            .to_owned()
    })
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word_n = normal(word);
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(&word_n, &normal(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus swaps of neighbours (`ulr` → `url`
/// is one edit).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_suggestions() {
        assert_eq!(suggest("ulr", ["url", "headers"].into_iter()), Some("url"));
        assert_eq!(
            suggest("client-id", ["client_id", "client_secret"].into_iter()),
            Some("client_id")
        );
        assert_eq!(suggest("zzz", ["url"].into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
