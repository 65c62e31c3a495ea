//! How a backend's names appear to the client when several backends are aggregated:
//! tools and prompts as `{prefix}{separator}{name}`, resources as `{prefix}+{uri}`, log messages
//! under the backend's name.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest tool name Claude Desktop and others accept (`^[a-zA-Z0-9_-]{1,64}$`).
pub const MAX_TOOL_NAME: usize = 64;

/// One backend's naming rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The backend's configured name.
    pub backend: String,
    /// Its prefix; `None` when unprefixed.
    pub prefix: Option<String>,
    /// Between prefix and tool or prompt name.
    pub separator: &'static str,
}

/// Why a tool cannot be exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToolName(pub String);

fn valid_tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Naming {
    /// The exposed name of a prompt (or of a tool before the length rule).
    pub fn name(&self, name: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}{}{name}", self.separator),
            None => name.to_owned(),
        }
    }

    /// The exposed name of a tool: prefixed, and shortened with a hash of the full name when
    /// longer than 64 characters, so it stays unique and stable. Names with characters outside
    /// `[a-zA-Z0-9_-]` cannot be made valid.
    pub fn tool(&self, name: &str) -> Result<String, InvalidToolName> {
        let full = self.name(name);
        if name.is_empty() || !full.chars().all(valid_tool_char) {
            return Err(InvalidToolName(format!(
                "tool '{name}' of backend '{}' has characters outside [a-zA-Z0-9_-]",
                self.backend
            )));
        }
        if full.len() <= MAX_TOOL_NAME {
            return Ok(full);
        }
        let digest = Sha256::digest(full.as_bytes());
        let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        // ASCII only (checked above), so byte slicing is char slicing.
        Ok(format!(
            "{}_{hash}",
            &full[..MAX_TOOL_NAME - hash.len() - 1]
        ))
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

    /// The backend's tool or prompt name for an exposed one, if the prefix fits.
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

    /// Rewrites every resource URI inside a result (resource contents, resource links and
    /// embedded resources in tool results and prompt messages).
    pub fn rewrite_uris(&self, value: &mut Value) {
        if self.prefix.is_none() {
            return;
        }
        match value {
            Value::Object(map) => {
                let is_resource_link =
                    map.get("type").and_then(Value::as_str) == Some("resource_link");
                let is_contents = map.contains_key("uri")
                    && (map.contains_key("text") || map.contains_key("blob"));
                if (is_resource_link || is_contents)
                    && let Some(Value::String(uri)) = map.get_mut("uri")
                {
                    *uri = self.uri(uri);
                }
                for (key, child) in map.iter_mut() {
                    // Tool output is the backend's own data, not MCP structure.
                    if key != "structuredContent" && key != "_meta" {
                        self.rewrite_uris(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.rewrite_uris(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn naming(prefix: Option<&str>) -> Naming {
        Naming {
            backend: "tools".into(),
            prefix: prefix.map(str::to_owned),
            separator: "_",
        }
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

    #[test]
    fn result_uris_are_rewritten_but_tool_data_is_not() {
        let n = naming(Some("tools"));
        let mut result = json!({
            "content": [
                {"type": "resource_link", "uri": "mem://a", "name": "a"},
                {"type": "resource", "resource": {"uri": "mem://b", "text": "b"}},
                {"type": "text", "text": "uri"}
            ],
            "structuredContent": {"uri": "mem://c", "text": "kept"}
        });
        n.rewrite_uris(&mut result);
        assert_eq!(result["content"][0]["uri"], "tools+mem://a");
        assert_eq!(result["content"][1]["resource"]["uri"], "tools+mem://b");
        assert_eq!(result["structuredContent"]["uri"], "mem://c");
    }
}
