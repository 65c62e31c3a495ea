//! The login callback's query, through the real callback server over HTTP.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use authful_mcp_proxy::auth::{AuthError, callback::CallbackServer};
use proptest::prelude::*;
use url::Url;

use super::{RUNTIME, cases};
use crate::support;

/// The query parameters the callback reads.
const CALLBACK_KEYS: [&str; 5] = ["code", "state", "error", "error_description", "iss"];

/// The issuer of the callback servers here.
const CALLBACK_ISSUER: &str = "https://issuer.example.com";

/// A callback server for one login with `state`, and the URL it serves.
async fn callback_server(state: &str) -> (CallbackServer, Url) {
    for _ in 0..10 {
        let url = Url::parse(&format!(
            "http://127.0.0.1:{}/auth/callback",
            support::free_port()
        ))
        .unwrap();
        match CallbackServer::start(&url, state, CALLBACK_ISSUER, false).await {
            Ok(server) => return (server, url),
            // Another test took the port in between: take another.
            Err(AuthError::PortInUse { .. }) => continue,
            Err(e) => panic!("callback server: {e}"),
        }
    }
    panic!("no free port for the callback server")
}

static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
});

/// GETs the callback with a raw query (sent as it is, apart from the URL parser's own
/// encoding of characters a query may not hold): the query sent, the status, the content
/// type and the body.
async fn hit(url: &Url, query: &str) -> (String, u16, String, String) {
    let mut url = url.clone();
    url.set_query(Some(query));
    let sent = url.query().unwrap_or_default().to_owned();
    let response = HTTP
        .get(url)
        .send()
        .await
        .expect("the callback server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (sent, status, content_type, response.text().await.unwrap())
}

/// The title and message slots of a callback page, or why the page is not the template with
/// two escaped slots.
fn page_slots(body: &str) -> Result<(String, String), String> {
    let rest = body
        .strip_prefix("<!doctype html><html><head><meta charset=\"utf-8\"><title>")
        .ok_or("head")?;
    let (title, rest) = rest.split_once("</title>").ok_or("title")?;
    let rest = rest
        .strip_prefix(
            "</head><body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\"><h1>",
        )
        .ok_or("body")?;
    let (h1, rest) = rest.split_once("</h1><p>").ok_or("h1")?;
    let message = rest
        .strip_suffix("</p><p><small>authful-mcp-proxy</small></p></body></html>")
        .ok_or("tail")?;
    if h1 != title {
        return Err("h1 differs from title".into());
    }
    for slot in [title, message] {
        if slot.contains(['<', '>', '"', '\'']) {
            return Err(format!("unescaped markup in {slot:?}"));
        }
    }
    Ok((unescape(title), unescape(message)))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `text` percent-encoded in a random way: every byte outside the unreserved set encoded,
/// unreserved ones encoded or not, hex digits in either case, spaces as `+` or `%20`.
fn encode(text: &str, choices: &[bool]) -> String {
    let mut out = String::new();
    for (i, byte) in text.bytes().enumerate() {
        let flip = choices
            .get(i % choices.len().max(1))
            .copied()
            .unwrap_or(false);
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        if byte == b' ' && flip {
            out.push('+');
        } else if unreserved && !flip {
            out.push(byte as char);
        } else if flip {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Query values: anything, markup, and text that needs encoding.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._~-]{1,16}",
        "<script>alert\\('[a-z]{1,4}'\\)</script>",
        "[<>&\"' =+%#;a-z]{0,16}",
    ]
}

/// Parameters a provider may add: `iss` (the right issuer or another), `session_state`,
/// anything.
fn extra_param() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        1 => prop_oneof![Just(CALLBACK_ISSUER.to_owned()), query_value()]
            .prop_map(|iss| ("iss".to_owned(), iss)),
        3 => other_param(),
    ]
}

fn other_param() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![Just("session_state".to_owned()), "[a-z_]{1,8}"]
            .prop_filter("not a callback key", |k| {
                !CALLBACK_KEYS.contains(&k.as_str())
            }),
        query_value(),
    )
}

/// Builds a query from `params`, each key and value encoded with `choices`.
fn build_query(params: &[(String, String)], choices: &[bool]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, choices), encode(v, choices)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What the callback must do with a query, from the same decoding its parser uses
/// (`application/x-www-form-urlencoded`): the status, and the login's outcome if it ends it.
#[derive(Debug, PartialEq)]
enum Expected {
    /// 400, the login goes on.
    Rejected,
    /// 200, the login ends with this code.
    Code(String),
    /// 200, the login ends refused.
    Denied(String, String),
    /// 400, the login ends: the response names another issuer (RFC 9207).
    WrongIssuer,
}

fn expected(query: &str, state: &str) -> Expected {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        seen.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    // OAuth parameters must not repeat (RFC 6749 section 3.1): a repeated one is refused.
    if CALLBACK_KEYS
        .iter()
        .any(|k| seen.get(*k).is_some_and(|v| v.len() > 1))
    {
        return Expected::Rejected;
    }
    let one = |k: &str| seen.get(k).and_then(|v| v.first()).cloned();
    if one("state").as_deref() != Some(state) {
        return Expected::Rejected;
    }
    let ends_login = one("error").is_some() || one("code").is_some_and(|c| !c.is_empty());
    if ends_login && one("iss").is_some_and(|iss| iss != CALLBACK_ISSUER) {
        return Expected::WrongIssuer;
    }
    if let Some(error) = one("error") {
        return Expected::Denied(error, one("error_description").unwrap_or_default());
    }
    match one("code") {
        Some(code) if !code.is_empty() => Expected::Code(code),
        _ => Expected::Rejected,
    }
}

/// Whether `got` is the provider's `original` text as the proxy may keep it: as it is, or
/// without control characters and cut short (ending in `…`).
fn kept_as(got: &str, original: &str) -> bool {
    let clean: String = original.chars().filter(|c| !c.is_control()).collect();
    got == original
        || got == clean
        || got
            .strip_suffix('…')
            .is_some_and(|head| clean.starts_with(head))
}

/// Raw query text of query-ish characters, `%` escapes broken or not.
const RAW_QUERY_TEXT: &str = "[a-z_=&;%+0-9A-F<>\"'/?:@!$()*,{}|^` -]{0,40}";
/// Raw parameters named like the callback's own, any values, often repeated.
const RAW_QUERY_PARAMS: &str = "(state|code|error|error_description|iss)=[^#]{0,10}\
                                (&(state|code|error|error_description)=[^#]{0,10}){0,4}";

/// Sends `query` to a fresh callback server for `state`, checks the status and page against
/// [`expected`], then sends a sentinel code: the login's outcome is the query's when it ended
/// the login, the sentinel's otherwise.
async fn callback_case(state: &str, query: &str) -> Result<(), TestCaseError> {
    const SENTINEL: &str = "sentinel-code";
    let (server, url) = callback_server(state).await;
    let (sent, status, content_type, body) = hit(&url, query).await;
    // The model reads what went on the wire (the URL parser encodes a few characters).
    let want = expected(&sent, state);
    let want_status = match want {
        Expected::Rejected | Expected::WrongIssuer => 400,
        Expected::Code(_) | Expected::Denied(..) => 200,
    };
    prop_assert_eq!(status, want_status, "{:?} for {:?}: {}", want, sent, body);
    let page = if content_type.starts_with("text/html") {
        Some(page_slots(&body).map_err(TestCaseError::fail)?)
    } else {
        // Only the query extractor's own rejection is not a page, and it is plain text.
        prop_assert!(
            content_type.starts_with("text/plain"),
            "{content_type}: {body}"
        );
        prop_assert_eq!(status, 400);
        None
    };
    let sentinel = build_query(
        &[
            ("state".to_owned(), state.to_owned()),
            ("code".to_owned(), SENTINEL.to_owned()),
        ],
        &[],
    );
    let _ = hit(&url, &sentinel).await;
    let outcome = server.wait(Duration::from_secs(10)).await;
    match (want, outcome) {
        (Expected::Code(code), Ok(secret)) => prop_assert_eq!(secret.expose(), code),
        (Expected::Rejected, Ok(secret)) => prop_assert_eq!(secret.expose(), SENTINEL),
        (
            Expected::Denied(error, description),
            Err(AuthError::Denied {
                error: e,
                description: d,
            }),
        ) => {
            prop_assert!(kept_as(&e, &error), "{e:?} from {error:?}");
            prop_assert!(kept_as(&d, &description), "{d:?} from {description:?}");
            // The page tells the user what the provider said, escaped.
            let (title, message) = page.ok_or_else(|| TestCaseError::fail("no page"))?;
            prop_assert_eq!(title, "Login failed");
            let detail = if d.is_empty() { e } else { format!("{e}: {d}") };
            prop_assert_eq!(
                message,
                format!("The identity provider said: {detail}. Return to your app to retry.")
            );
        }
        (Expected::WrongIssuer, Err(AuthError::WrongIssuer(_))) => {
            let (title, _) = page.ok_or_else(|| TestCaseError::fail("no page"))?;
            prop_assert_eq!(title, "Login refused");
        }
        (want, outcome) => {
            return Err(TestCaseError::fail(format!(
                "expected {want:?}, the login ended with {outcome:?}"
            )));
        }
    }
    Ok(())
}

/// A callback query: the login's state (right, wrong or absent), a code, maybe an error,
/// extra parameters, sometimes a repeated key, in any order and any encoding.
fn callback_query() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z0-9_-]{1,43}",
        prop_oneof![
            3 => Just(None),
            1 => query_value().prop_map(Some),
        ],
        prop::option::weighted(0.8, query_value()),
        prop::option::weighted(0.3, query_value()),
        prop::option::of(query_value()),
        prop::collection::vec(extra_param(), 0..3),
        prop::option::weighted(0.15, prop::sample::select(CALLBACK_KEYS.to_vec())),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<prop::sample::Selector>(),
    )
        .prop_map(
            |(state, wrong_state, code, error, description, extra, repeat, choices, order)| {
                let mut params: Vec<(String, String)> = extra;
                params.push(("state".into(), wrong_state.unwrap_or_else(|| state.clone())));
                if let Some(code) = code {
                    params.push(("code".into(), code));
                }
                if let Some(error) = error {
                    params.push(("error".into(), error));
                }
                if let Some(description) = description {
                    params.push(("error_description".into(), description));
                }
                if let Some(key) = repeat
                    && let Some(p) = params.iter().find(|(k, _)| k == key).cloned()
                {
                    params.push(p);
                }
                // A random order: rotate by a chosen amount.
                let n = params.len();
                let by = order.select(0..n.max(1));
                params.rotate_left(by.min(n));
                (state, build_query(&params, &choices))
            },
        )
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: a callback query with the login's state and a code ends the login with
    /// exactly that code (any characters, any percent-encoding, extra parameters, any order);
    /// a wrong or missing state, a missing code or a repeated OAuth parameter is answered 400
    /// and does not end it; an `error` ends it refused, with the provider's description on
    /// an escaped page.
    #[test]
    fn callback_queries_end_the_login_only_when_they_should((state, query) in callback_query()) {
        RUNTIME.block_on(callback_case(&state, &query))?;
    }

    /// 256 cases: arbitrary raw query text (broken escapes, invalid UTF-8, markup, separators,
    /// repeated OAuth parameters)
    /// gets an answer — the page with every slot escaped, or the extractor's plain-text 400 —
    /// and the same decision as above; the server keeps serving.
    #[test]
    fn arbitrary_callback_queries_never_break_the_server(
        state in "[A-Za-z0-9_-]{1,12}",
        raw in prop_oneof![RAW_QUERY_TEXT, RAW_QUERY_PARAMS],
    ) {
        RUNTIME.block_on(callback_case(&state, &raw))?;
    }
}
