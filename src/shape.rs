//! What an MCP message looks like, for the debug log: its method, counts and sizes, never what
//! it says. [`crate::forward`] logs one line per request with these.
//!
//! Debug logs end up in bug reports, and MCP messages carry the user's and the backends' data,
//! so the line of a request holds only:
//! - the method, and for `tools/call` and `prompts/get` the tool's or prompt's name: part of the
//!   server's declared interface, like the backend's name and URL that the log already shows,
//!   and what tells one call from another in a report;
//! - of a result, by kind: content items per type with their sizes, `isError`, the number of
//!   `structuredContent` keys; the items of a list page and whether another page follows; the
//!   parts of a resource, a prompt, a completion, a sampling or elicitation answer, counted;
//! - of a JSON-RPC error, its code and the sizes of its message and data.
//!
//! Never a string from a payload beyond those names: no argument, text, image, resource URI or
//! contents, prompt message, completion value, and none of the names in a list (servers make
//! tools, prompts and resources out of the user's data — one per table, project or file — and a
//! page of a few hundred names is no use in a one-line summary). Nor an error's message: many
//! are diagnostics, but as many repeat the arguments (`resource not found: <uri>`,
//! `unknown tool "<name>"`, a validation error quoting a value), and the proxy cannot tell which
//! is which; the code says what kind of error it was. `--log-content` logs the whole messages.
//!
//! Sizes are the bytes of a field as sent: base64 for images, audio and blobs.

use std::{fmt, time::Duration};

use rmcp::model::ErrorData;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error_text;

/// How much of a method or tool name a line quotes: the client or the backend chose it.
const NAME_MAX: usize = 100;

/// A request as its log line names it: `tools/call 'search'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    name: Option<String>,
}

impl Request {
    /// The method of `request`, and the tool's or prompt's name for `tools/call` and
    /// `prompts/get`.
    pub fn of(request: &impl Serialize) -> Self {
        let value = serde_json::to_value(request).unwrap_or(Value::Null);
        let method = value["method"].as_str().unwrap_or("a request");
        let name = match method {
            "tools/call" | "prompts/get" => value["params"]["name"]
                .as_str()
                .map(|name| error_text::bounded(name, NAME_MAX)),
            _ => None,
        };
        Self {
            method: error_text::bounded(method, NAME_MAX),
            name,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} '{name}'", self.method),
            None => f.write_str(&self.method),
        }
    }
}

/// The method of a notification (or any message): `notifications/message`.
pub fn method(message: &impl Serialize) -> String {
    let value = serde_json::to_value(message).unwrap_or(Value::Null);
    error_text::bounded(value["method"].as_str().unwrap_or("a message"), NAME_MAX)
}

/// The shape of a result: `1 content item (text 12 B), isError false`.
pub fn result(result: &impl Serialize) -> String {
    match serde_json::to_value(result) {
        Ok(Value::Object(object)) => object_shape(&object),
        Ok(other) => format!("a result that is {}", kind(&other)),
        Err(_) => "a result that cannot be read".to_owned(),
    }
}

/// The shape of a JSON-RPC error: `error -32602 (message 31 B, data 1 key)`.
pub fn error(error: &ErrorData) -> String {
    let mut text = format!(
        "error {} (message {}",
        error.code.0,
        bytes(error.message.len())
    );
    if let Some(data) = &error.data {
        text.push_str(&format!(", data {}", kind(data)));
    }
    text.push(')');
    text
}

/// `850 µs`, `12.3 ms`, `4.56 s`.
pub fn duration(elapsed: Duration) -> String {
    let micros = elapsed.as_micros();
    if micros < 1000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.1} ms", elapsed.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", elapsed.as_secs_f64())
    }
}

/// `12 B`, `1.2 kB`, `3.4 MB`.
pub fn bytes(n: usize) -> String {
    // Precision is not the point: a size for a person reading a log.
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1000 {
        format!("{n} B")
    } else if n < 1_000_000 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{:.1} MB", f / 1e6)
    }
}

/// `3 keys`, `5 items`, `string 12 B`, `number`: a JSON value without its value.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "boolean".to_owned(),
        Value::Number(_) => "number".to_owned(),
        Value::String(s) => format!("string {}", bytes(s.len())),
        Value::Array(items) => count(items.len(), "item", "items"),
        Value::Object(object) => count(object.len(), "key", "keys"),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The list members of the results that are list pages, and what their items are called.
const LISTS: [(&str, &str, &str); 5] = [
    ("tools", "tool", "tools"),
    ("prompts", "prompt", "prompts"),
    ("resources", "resource", "resources"),
    (
        "resourceTemplates",
        "resource template",
        "resource templates",
    ),
    ("roots", "root", "roots"),
];

/// Results are told apart by their members (rmcp's result types are untagged too), so that
/// both directions — results of backends and of the client — are read the same way.
fn object_shape(object: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (member, one, many) in LISTS {
        if let Some(items) = object.get(member).and_then(Value::as_array) {
            parts.push(count(items.len(), one, many));
        }
    }
    if object.get("nextCursor").is_some_and(Value::is_string) {
        parts.push("next cursor".to_owned());
    }
    match object.get("content") {
        // A tool's result.
        Some(Value::Array(items)) => parts.push(format!(
            "{} ({})",
            count(items.len(), "content item", "content items"),
            blocks(items, content_block)
        )),
        // An elicitation's answer: the form's fields, counted.
        Some(fields) if object.contains_key("action") => {
            parts.push(format!("content {}", kind(fields)));
        }
        // A sampling answer: one block.
        Some(block @ Value::Object(_)) => parts.push(format!(
            "content ({})",
            blocks(std::slice::from_ref(block), content_block)
        )),
        _ => {}
    }
    if let Some(is_error) = object.get("isError").and_then(Value::as_bool) {
        parts.push(format!("isError {is_error}"));
    }
    if let Some(structured) = object.get("structuredContent") {
        parts.push(format!("structuredContent {}", kind(structured)));
    }
    if let Some(Value::Array(items)) = object.get("contents") {
        parts.push(format!(
            "{} ({})",
            count(items.len(), "resource content", "resource contents"),
            blocks(items, resource_contents)
        ));
    }
    if let Some(Value::Array(messages)) = object.get("messages") {
        parts.push(format!(
            "{} ({})",
            count(messages.len(), "message", "messages"),
            blocks(messages, |message| content_block(&message["content"]))
        ));
    }
    if let Some(values) = object
        .get("completion")
        .and_then(|completion| completion["values"].as_array())
    {
        parts.push(count(values.len(), "completion value", "completion values"));
    }
    // The elicitation's outcome is one of three words of the protocol, not something said.
    if let Some(action) = object
        .get("action")
        .and_then(Value::as_str)
        .filter(|a| matches!(*a, "accept" | "decline" | "cancel"))
    {
        parts.insert(0, format!("action {action}"));
    }
    if parts.is_empty() {
        let members = object.keys().filter(|k| *k != "_meta").count();
        return if members == 0 {
            "empty result".to_owned()
        } else {
            format!("a result of {}", count(members, "member", "members"))
        };
    }
    parts.join(", ")
}

/// A content block's type, when it is one MCP defines, and its size when it has one.
fn content_block(block: &Value) -> Option<(&'static str, Option<usize>)> {
    let size = |member: &str| block[member].as_str().map(str::len);
    Some(match block["type"].as_str()? {
        "text" => ("text", size("text")),
        "image" => ("image", size("data")),
        "audio" => ("audio", size("data")),
        "resource" => ("resource", resource_contents(&block["resource"])?.1),
        "resource_link" => ("resource_link", None),
        "tool_use" => ("tool_use", None),
        "tool_result" => ("tool_result", None),
        _ => return None,
    })
}

/// A resource's contents: text or blob, and its size.
fn resource_contents(contents: &Value) -> Option<(&'static str, Option<usize>)> {
    if let Some(text) = contents["text"].as_str() {
        Some(("text", Some(text.len())))
    } else {
        contents["blob"]
            .as_str()
            .map(|blob| ("blob", Some(blob.len())))
    }
}

/// `2 text 1.2 kB, image 40 kB`: the blocks by type in order of appearance, each type's count
/// (when more than one) and total size; types MCP does not define are `other`.
fn blocks(
    items: &[Value],
    describe: impl Fn(&Value) -> Option<(&'static str, Option<usize>)>,
) -> String {
    let mut kinds: Vec<(&'static str, usize, Option<usize>)> = Vec::new();
    for item in items {
        let (label, size) = describe(item).unwrap_or(("other", None));
        match kinds.iter_mut().find(|(l, _, _)| *l == label) {
            Some((_, n, total)) => {
                *n += 1;
                *total = match (*total, size) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            None => kinds.push((label, 1, size)),
        }
    }
    kinds
        .iter()
        .map(|(label, n, size)| {
            let n = if *n > 1 {
                format!("{n} ")
            } else {
                String::new()
            };
            match size {
                Some(size) => format!("{n}{label} {}", bytes(*size)),
                None => format!("{n}{label}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
// Sampling and roots are deprecated by SEP-2577, yet part of the revisions the proxy relays.
#[allow(deprecated)]
mod tests {
    use rmcp::model::{
        CallToolResult, ClientRequest, CompleteResult, CreateMessageResult, ElicitResult,
        ErrorCode, GetPromptResult, ListRootsResult, ListToolsResult, ReadResourceResult,
    };
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    /// In every string of the messages below that is not a name the shape may quote.
    const SAID: &str = "SAID";

    /// `json` read as rmcp's type `T`: the members are named as rmcp sends them.
    fn typed<T: DeserializeOwned + Serialize>(json: Value) -> T {
        let value: T = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&value).unwrap(),
            json,
            "a lossless example"
        );
        value
    }

    /// The shape of `result`, checked to quote nothing of what it says.
    fn shape_of(answer: &impl Serialize) -> String {
        let shape = result(answer);
        assert!(!shape.contains(SAID), "{shape}");
        shape
    }

    #[test]
    fn a_tool_result_is_counted_by_kind_and_sized() {
        let result: CallToolResult = typed(json!({
            "content": [
                {"type": "text", "text": "SAID 1"},
                {"type": "image", "data": "SAID-image-data", "mimeType": "image/png"},
                {"type": "text", "text": "SAID 2"},
                {"type": "resource", "resource": {"uri": "mem://SAID", "text": "SAID text"}},
                {"type": "resource_link", "uri": "mem://SAID", "name": "SAID"},
            ],
            "structuredContent": {"answer": "SAID", "more": [SAID]},
            "isError": true,
        }));
        assert_eq!(
            shape_of(&result),
            "5 content items (2 text 12 B, image 15 B, resource 9 B, resource_link), \
             isError true, structuredContent 2 keys"
        );
    }

    #[test]
    fn a_list_page_is_counted_and_its_names_left_out() {
        let page: ListToolsResult = typed(json!({
            "tools": [
                {"name": "SAID_1", "description": SAID, "inputSchema": {"type": "object"}},
                {"name": "SAID_2", "inputSchema": {"type": "object"}},
            ],
            "nextCursor": SAID,
        }));
        assert_eq!(shape_of(&page), "2 tools, next cursor");
        let last: ListRootsResult = typed(json!({"roots": [{"uri": "file:///SAID"}]}));
        assert_eq!(shape_of(&last), "1 root");
    }

    #[test]
    fn resources_prompts_and_completions_are_counted() {
        let read: ReadResourceResult = typed(json!({"contents": [
            {"uri": "mem://SAID", "text": "SAID"},
            {"uri": "mem://SAID", "blob": "AAEC"},
        ]}));
        assert_eq!(shape_of(&read), "2 resource contents (text 4 B, blob 4 B)");
        let prompt: GetPromptResult = typed(json!({
            "description": SAID,
            "messages": [{"role": "user", "content": {"type": "text", "text": "SAID!"}}],
        }));
        assert_eq!(shape_of(&prompt), "1 message (text 5 B)");
        let completion: CompleteResult =
            typed(json!({"completion": {"values": [SAID, SAID], "total": 2, "hasMore": false}}));
        assert_eq!(shape_of(&completion), "2 completion values");
    }

    #[test]
    fn the_clients_answers_are_counted_too() {
        let sampled: CreateMessageResult = typed(json!({
            "model": SAID,
            "role": "assistant",
            "content": {"type": "text", "text": "SAID"},
        }));
        assert_eq!(shape_of(&sampled), "content (text 4 B)");
        let elicited: ElicitResult =
            typed(json!({"action": "accept", "content": {"answer": SAID}}));
        assert_eq!(shape_of(&elicited), "action accept, content 1 key");
        assert_eq!(shape_of(&json!({})), "empty result");
        assert_eq!(shape_of(&json!({"SAID": SAID})), "a result of 1 member");
    }

    #[test]
    fn an_error_is_its_code_and_sizes() {
        let error = ErrorData::new(
            ErrorCode::RESOURCE_NOT_FOUND,
            "resource not found: mem://SAID",
            Some(json!({"uri": "mem://SAID"})),
        );
        let shape = super::error(&error);
        assert_eq!(shape, "error -32002 (message 30 B, data 1 key)");
        let bare = ErrorData::new(ErrorCode::INTERNAL_ERROR, SAID, None);
        assert_eq!(super::error(&bare), "error -32603 (message 4 B)");
    }

    #[test]
    fn a_request_is_its_method_and_the_tool_or_prompt_it_names() {
        let call: ClientRequest = serde_json::from_value(json!({
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": SAID}},
        }))
        .unwrap();
        assert_eq!(Request::of(&call).to_string(), "tools/call 'search'");
        let read: ClientRequest = serde_json::from_value(json!({
            "method": "resources/read",
            "params": {"uri": "mem://SAID"},
        }))
        .unwrap();
        assert_eq!(Request::of(&read).to_string(), "resources/read");
        // A name is the server's, or the client's to choose: one line, and not a long one.
        let hostile = json!({"method": "tools/call", "params": {"name": "a\nb".repeat(200)}});
        let named = Request::of(&hostile).to_string();
        assert!(
            !named.contains('\n') && named.chars().count() < 130,
            "{named}"
        );
    }

    #[test]
    fn sizes_and_durations_read_at_a_glance() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_234), "1.2 kB");
        assert_eq!(bytes(40_960), "41.0 kB");
        assert_eq!(bytes(3_400_000), "3.4 MB");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(duration(Duration::from_millis(4_560)), "4.56 s");
    }
}
