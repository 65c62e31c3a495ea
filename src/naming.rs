//! How a backend's names appear to the client when several backends are aggregated:
//! tools and prompts as `{prefix}{separator}{name}`, resources as `{prefix}+{uri}`, log messages
//! under the backend's name. Tool and prompt names longer than the name budget
//! (`gateway.max_name_length`) are shortened, deterministically.

use rmcp::model::{ContentBlock, ResourceContents, ServerResult};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The longest tool name Claude Desktop and the model APIs accept (`^[a-zA-Z0-9_-]{1,64}$`):
/// the default name budget.
pub const MAX_TOOL_NAME: usize = 64;

/// The shortest name budget: room for a few characters of the name besides its hash.
pub const MIN_NAME_BUDGET: usize = 16;

/// The longest name budget: the longest tool name MCP recommends (2025-11-25).
pub const MAX_NAME_BUDGET: usize = 128;

/// The scheme of MCP Apps' UI resources.
const UI_SCHEME: &str = "ui://";

/// `_` and 8 hex digits of the full name's SHA-256 end a shortened name.
const HASH_SUFFIX: usize = 9;

/// Where MCP Apps (and the OpenAI Apps SDK before them) link a tool to its UI resource, in the
/// tool's `_meta`: behind a prefix the link must name the exposed URI, or the host cannot load
/// the app.
const TOOL_META_RESOURCE_LINKS: [&[&str]; 3] = [
    &["ui", "resourceUri"],
    &["ui/resourceUri"],
    &["openai/outputTemplate"],
];

/// One backend's naming rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The backend's configured name.
    pub backend: String,
    /// Its prefix; `None` when unprefixed.
    pub prefix: Option<String>,
    /// Between prefix and tool or prompt name.
    pub separator: &'static str,
    /// The longest exposed tool or prompt name, in characters.
    pub max_len: usize,
    /// For an unprefixed backend: the other backends' prefixes, whose names and URIs it must
    /// not take (it would pose as them).
    pub others: Vec<String>,
}

/// Why a tool cannot be exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToolName(pub String);

fn valid_tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Naming {
    /// A backend's naming rules with the default name budget.
    pub fn new(backend: &str, prefix: Option<&str>, separator: &'static str) -> Self {
        Self {
            backend: backend.to_owned(),
            prefix: prefix.map(str::to_owned),
            separator,
            max_len: MAX_TOOL_NAME,
            others: Vec::new(),
        }
    }

    /// The other backend an unprefixed backend's exposed name or URI would pose as:
    /// `github_create_issue` or `github+repo://x` next to a backend with prefix `github`.
    pub fn poses_as(&self, exposed: &str) -> Option<&str> {
        if self.prefix.is_some() {
            return None;
        }
        self.others
            .iter()
            .find(|p| {
                exposed
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with(self.separator) || rest.starts_with('+'))
            })
            .map(String::as_str)
    }

    /// Shows the person which backend asks, behind the gateway's one name: an elicitation's
    /// message starts with `[backend]`, and a sampling request's system prompt names the
    /// backend, so that one backend cannot pose as another.
    pub fn attribute(&self, method: &str, params: &mut Value) {
        let Some(params) = params.as_object_mut() else {
            return;
        };
        match method {
            "elicitation/create" => {
                if let Some(Value::String(message)) = params.get_mut("message") {
                    *message = format!("[{}] {message}", self.backend);
                }
            }
            "sampling/createMessage" => {
                let note = format!("This request comes from the MCP server '{}'.", self.backend);
                let prompt = match params.get("systemPrompt").and_then(Value::as_str) {
                    Some(prompt) => format!("{note}\n\n{prompt}"),
                    None => note,
                };
                params.insert("systemPrompt".into(), Value::String(prompt));
            }
            _ => {}
        }
    }

    /// The prefixed name, before the name budget.
    pub fn prefixed(&self, name: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}{}{name}", self.separator),
            None => name.to_owned(),
        }
    }

    /// `full` within the name budget: a longer name keeps its start and ends in `_` and 8 hex
    /// digits of its hash, so it stays unique and the same across restarts.
    fn within_budget(&self, full: String) -> String {
        if full.chars().count() <= self.max_len {
            return full;
        }
        let digest = Sha256::digest(full.as_bytes());
        let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let kept: String = full
            .chars()
            .take(self.max_len.saturating_sub(HASH_SUFFIX))
            .collect();
        format!("{kept}_{hash}")
    }

    /// The exposed name of a prompt: prefixed, and shortened beyond the name budget.
    pub fn prompt(&self, name: &str) -> String {
        self.within_budget(self.prefixed(name))
    }

    /// The exposed name of a tool: prefixed, and shortened beyond the name budget. Names with
    /// characters outside `[a-zA-Z0-9_-]` cannot be made valid.
    pub fn tool(&self, name: &str) -> Result<String, InvalidToolName> {
        let full = self.prefixed(name);
        if name.is_empty() || !full.chars().all(valid_tool_char) {
            return Err(InvalidToolName(format!(
                "tool '{name}' of backend '{}' has characters outside [a-zA-Z0-9_-]",
                self.backend
            )));
        }
        Ok(self.within_budget(full))
    }

    /// Points the resource links in a tool's `_meta` at the exposed resource URIs: MCP Apps'
    /// `ui.resourceUri`, the older `ui/resourceUri`, OpenAI's `openai/outputTemplate`, and any
    /// other `ui://` URI in it (MCP Apps' UI resources all have that scheme).
    pub fn rewrite_tool_meta(&self, meta: &mut Map<String, Value>) {
        if self.prefix.is_none() {
            return;
        }
        for path in TOOL_META_RESOURCE_LINKS {
            let Some((first, rest)) = path.split_first() else {
                continue;
            };
            let mut at = meta.get_mut(*first);
            for key in rest {
                at = at.and_then(|v| v.get_mut(*key));
            }
            if let Some(Value::String(uri)) = at
                && !uri.starts_with(UI_SCHEME)
            {
                *uri = self.uri(uri);
            }
        }
        meta.values_mut().for_each(|v| self.rewrite_ui_uris(v));
    }

    fn rewrite_ui_uris(&self, value: &mut Value) {
        match value {
            Value::String(uri) if uri.starts_with(UI_SCHEME) => *uri = self.uri(uri),
            Value::Object(map) => map.values_mut().for_each(|v| self.rewrite_ui_uris(v)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.rewrite_ui_uris(v)),
            _ => {}
        }
    }

    /// The exposed URI of a resource or resource template: `{prefix}+{uri}` keeps it a valid
    /// URI, whose scheme names the backend.
    pub fn uri(&self, uri: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}+{uri}"),
            None => uri.to_owned(),
        }
    }

    /// The backend's URI for an exposed one, if it is this backend's.
    pub fn original_uri<'a>(&self, exposed: &'a str) -> Option<&'a str> {
        match &self.prefix {
            Some(prefix) => exposed.strip_prefix(prefix.as_str())?.strip_prefix('+'),
            None => Some(exposed),
        }
    }

    /// The backend's tool or prompt name for an exposed one, if the prefix fits (a shortened
    /// name fits, and is then found only by the routes).
    pub fn original_name<'a>(&self, exposed: &'a str) -> Option<&'a str> {
        match &self.prefix {
            Some(prefix) => exposed
                .strip_prefix(prefix.as_str())?
                .strip_prefix(self.separator),
            None => Some(exposed),
        }
    }

    /// The `logger` of a forwarded log message: the backend's name, then the backend's own
    /// logger, so the client can tell where a message came from.
    pub fn logger(&self, logger: Option<&str>) -> String {
        match logger {
            Some(logger) if !logger.is_empty() => format!("{}/{logger}", self.backend),
            _ => self.backend.clone(),
        }
    }

    /// A backend's answer as the client sees it: every resource URI it carries — in resource
    /// contents, and in the resource links and embedded resources of tool results and prompt
    /// messages — under its exposed form. Tool output (`structuredContent`) and `_meta` are
    /// the backend's own data and stay as they are. An unprefixed backend keeps its URIs, but a
    /// link of its that points into another backend's namespace becomes a note.
    pub fn expose_result(&self, result: &mut ServerResult) {
        match result {
            ServerResult::CallToolResult(result) => {
                result
                    .content
                    .iter_mut()
                    .for_each(|block| self.expose_block(block));
            }
            ServerResult::GetPromptResult(result) => {
                for message in &mut result.messages {
                    self.expose_block(&mut message.content);
                }
            }
            ServerResult::ReadResourceResult(result) if self.prefix.is_some() => {
                for contents in &mut result.contents {
                    self.expose_contents(contents);
                }
            }
            _ => {}
        }
    }

    fn expose_block(&self, block: &mut ContentBlock) {
        let linked = match &*block {
            ContentBlock::ResourceLink(link) => link.uri.as_str(),
            ContentBlock::Resource(embedded) => match contents_uri(&embedded.resource) {
                Some(uri) => uri,
                None => return,
            },
            _ => return,
        };
        if self.prefix.is_none() {
            if let Some(other) = self.poses_as(linked) {
                tracing::warn!(
                    "Removed a link to {linked} from an answer of backend '{}': it points into \
                     the URIs of the backend with prefix '{other}'",
                    self.backend
                );
                let note = format!(
                    "(a link to {linked} was removed: it points into another server's resources)"
                );
                *block = ContentBlock::text(note);
            }
            return;
        }
        match block {
            ContentBlock::ResourceLink(link) => link.uri = self.uri(&link.uri),
            ContentBlock::Resource(embedded) => self.expose_contents(&mut embedded.resource),
            _ => {}
        }
    }

    fn expose_contents(&self, contents: &mut ResourceContents) {
        match contents {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => *uri = self.uri(uri),
            // A kind of contents of a later revision: no URI the proxy knows of.
            _ => {}
        }
    }
}

fn contents_uri(contents: &ResourceContents) -> Option<&str> {
    match contents {
        ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } => Some(uri),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn naming(prefix: Option<&str>) -> Naming {
        Naming::new("tools", prefix, "_")
    }

    #[test]
    fn tools_are_prefixed_and_long_names_shortened_stably() {
        let n = naming(Some("tools"));
        assert_eq!(n.tool("search").unwrap(), "tools_search");
        let long = "a".repeat(70);
        let short = n.tool(&long).unwrap();
        assert_eq!(short.len(), MAX_TOOL_NAME);
        assert_eq!(short, n.tool(&long).unwrap());
        assert_ne!(short, n.tool(&"a".repeat(71)).unwrap());
        assert!(short.starts_with("tools_aaaa"));
        assert!(n.tool("has.dot").is_err());
        assert!(n.tool("spa ce").is_err());
        assert_eq!(naming(None).tool("plain").unwrap(), "plain");
    }

    #[test]
    fn the_name_budget_bounds_tools_and_prompts() {
        let mut n = naming(Some("tools"));
        n.max_len = 30;
        let tool = n.tool("a_fairly_long_tool_name_here").unwrap();
        assert_eq!(tool.len(), 30);
        assert!(tool.starts_with("tools_a_fairly_long_"), "{tool}");
        assert_eq!(n.tool("short").unwrap(), "tools_short");
        let prompt = n.prompt("résumé du jour avec beaucoup de mots");
        assert_eq!(prompt.chars().count(), 30, "{prompt}");
        assert!(prompt.starts_with("tools_résumé"), "{prompt}");
        assert_eq!(prompt, n.prompt("résumé du jour avec beaucoup de mots"));
        assert_ne!(prompt, n.prompt("résumé du jour avec beaucoup de mots!"));
    }

    #[test]
    fn ui_resource_links_in_tool_meta_point_at_exposed_uris() {
        let n = naming(Some("tools"));
        let mut tool = json!({
            "name": "show",
            "_meta": {
                "ui": {"resourceUri": "ui://weather/view.html", "visibility": ["model", "app"]},
                "ui/resourceUri": "ui://weather/view.html",
                "openai/outputTemplate": "https://cdn.example/widget.html",
                "vendor": {"panels": ["ui://weather/small.html"]},
                "docs": "https://example.com/weather"
            }
        });
        n.rewrite_tool_meta(tool["_meta"].as_object_mut().unwrap());
        let meta = &tool["_meta"];
        assert_eq!(meta["ui"]["resourceUri"], "tools+ui://weather/view.html");
        assert_eq!(meta["ui"]["visibility"], json!(["model", "app"]));
        assert_eq!(meta["ui/resourceUri"], "tools+ui://weather/view.html");
        assert_eq!(
            meta["openai/outputTemplate"],
            "tools+https://cdn.example/widget.html"
        );
        assert_eq!(meta["vendor"]["panels"][0], "tools+ui://weather/small.html");
        assert_eq!(meta["docs"], "https://example.com/weather");
        let mut plain = tool.clone();
        naming(None).rewrite_tool_meta(plain["_meta"].as_object_mut().unwrap());
        assert_eq!(plain, tool, "an unprefixed backend keeps its URIs");
    }

    #[test]
    fn uris_round_trip() {
        let n = naming(Some("tools"));
        assert_eq!(n.uri("mem://greeting"), "tools+mem://greeting");
        assert_eq!(
            n.original_uri("tools+mem://greeting"),
            Some("mem://greeting")
        );
        assert_eq!(n.original_uri("toolsx+mem://greeting"), None);
        assert_eq!(n.original_name("tools_search"), Some("search"));
        assert_eq!(n.original_name("other_search"), None);
    }

    fn tool_result(value: serde_json::Value) -> ServerResult {
        ServerResult::CallToolResult(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn result_uris_are_rewritten_but_tool_data_is_not() {
        let n = naming(Some("tools"));
        let mut result = tool_result(json!({
            "content": [
                {"type": "resource_link", "uri": "mem://a", "name": "a"},
                {"type": "resource", "resource": {"uri": "mem://b", "text": "b"}},
                {"type": "text", "text": "uri"}
            ],
            "structuredContent": {"uri": "mem://c", "text": "kept"}
        }));
        n.expose_result(&mut result);
        let result = serde_json::to_value(&result).unwrap();
        assert_eq!(result["content"][0]["uri"], "tools+mem://a");
        assert_eq!(result["content"][1]["resource"]["uri"], "tools+mem://b");
        assert_eq!(result["content"][2]["text"], "uri");
        assert_eq!(result["structuredContent"]["uri"], "mem://c");
        let mut read = ServerResult::ReadResourceResult(
            serde_json::from_value(json!({"contents": [{"uri": "mem://d", "blob": "AA=="}]}))
                .unwrap(),
        );
        n.expose_result(&mut read);
        let read = serde_json::to_value(&read).unwrap();
        assert_eq!(read["contents"][0]["uri"], "tools+mem://d");
    }

    #[test]
    fn an_unprefixed_backends_link_into_another_namespace_becomes_a_note() {
        let mut n = naming(None);
        n.others = vec!["github".into()];
        let mut result = tool_result(json!({
            "content": [
                {"type": "resource_link", "uri": "github+repo://x", "name": "x"},
                {"type": "resource", "resource": {"uri": "mem://mine", "text": "b"}}
            ]
        }));
        n.expose_result(&mut result);
        let result = serde_json::to_value(&result).unwrap();
        assert_eq!(result["content"][0]["type"], "text");
        assert!(
            result["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("github+repo://x was removed")
        );
        assert_eq!(result["content"][1]["resource"]["uri"], "mem://mine");
    }
}
