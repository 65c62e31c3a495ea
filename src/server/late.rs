//! Backends that join late, for clients whose tool list is frozen.
//!
//! Claude Desktop reads `tools/list` once per session and ignores `list_changed`, so a backend
//! whose login finished after that list, or a server that was down, would stay out of reach
//! until the client restarts. When a backend is missing from the first tool list
//! (`gateway.fallback_tools: auto`, the default; `always` offers them from the start), that list
//! and every later one carry two small tools of the gateway's own, under stable names:
//! - `gateway_list_tools`: every backend, whether it is ready and whether it was in the first
//!   tool list; with `backend`, that backend's tools as the gateway exposes them, schemas
//!   included;
//! - `gateway_call_tool`: calls one of those tools by its exposed name, with `arguments`.
//!
//! A call through `gateway_call_tool` takes the same route as a direct call: the backends'
//! `tools.allow`/`tools.deny` filters hold, and progress and cancellation pass through.

use std::sync::Arc;

use rmcp::model::{CallToolRequest, CallToolResult, JsonObject, Tool};
use serde_json::{Value, json};

use super::{Server, convert, keeper::Keeper};
use crate::{lists::Kind, request_error::RequestError};

/// Lists the backends and their tools.
pub const LIST_TOOLS: &str = "gateway_list_tools";
/// Calls a backend's tool by its exposed name.
pub const CALL_TOOL: &str = "gateway_call_tool";
/// Both names, reserved for the gateway unless `fallback_tools` is `never`.
pub const NAMES: [&str; 2] = [LIST_TOOLS, CALL_TOOL];

/// The two tools as `tools/list` shows them.
pub fn definitions(keepers: &[Arc<Keeper>]) -> Vec<Tool> {
    let backends: Vec<&str> = keepers.iter().map(|s| s.backend.name.as_str()).collect();
    let tools = [
        json!({
            "name": LIST_TOOLS,
            "title": "List the gateway's backend tools",
            "description": "Lists the tools of this gateway's backends, including backends that \
                came up after your tool list was read (a login that finished late, a server \
                that was down). Without `backend`: every backend, whether it is ready, and how \
                many tools it has. With `backend`: its tools, with descriptions and input \
                schemas. Call a tool you cannot find in your own tool list with gateway_call_tool.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "backend": {
                        "type": "string",
                        "enum": backends,
                        "description": "The backend whose tools to list."
                    }
                },
                "additionalProperties": false
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }),
        json!({
            "name": CALL_TOOL,
            "title": "Call a backend tool by name",
            "description": "Calls a tool of one of this gateway's backends by the name that \
                gateway_list_tools shows, for tools missing from your own tool list. Returns \
                the tool's own result.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "description": "The tool's name, as gateway_list_tools shows it."
                    },
                    "arguments": {
                        "type": "object",
                        "description": "The tool's arguments, as its input schema describes them."
                    }
                },
                "required": ["name"],
                "additionalProperties": false
            }
        }),
    ];
    // Both are valid tools: neither conversion can fail.
    tools
        .into_iter()
        .filter_map(|tool| serde_json::from_value(tool).ok())
        .collect()
}

/// The `tools/call` request that a `gateway_call_tool` request stands for, with the original
/// request's `_meta` (its progress token).
pub fn inner_call(mut call: CallToolRequest) -> Result<CallToolRequest, RequestError> {
    let mut arguments = call.params.arguments.take().unwrap_or_default();
    let Some(Value::String(name)) = arguments.remove("name") else {
        return Err(RequestError::InvalidParams(format!(
            "{CALL_TOOL}: `name` must be the name of a tool (see {LIST_TOOLS})"
        )));
    };
    if NAMES.contains(&name.as_str()) {
        return Err(RequestError::InvalidParams(format!(
            "{CALL_TOOL} calls backend tools, not {name}"
        )));
    }
    let inner_arguments = match arguments.remove("arguments") {
        None | Some(Value::Null) => JsonObject::new(),
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(RequestError::InvalidParams(format!(
                "{CALL_TOOL}: `arguments` must be an object"
            )));
        }
    };
    call.params.name = name.into();
    call.params.arguments = Some(inner_arguments);
    Ok(call)
}

/// A tool result carrying `value` as structured content and as its JSON text.
fn json_result(value: Value) -> Result<CallToolResult, RequestError> {
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    convert(json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": value
    }))
}

impl Server {
    /// `gateway_list_tools`: every backend, or one backend's tools.
    pub(super) fn late_list_tools(
        &self,
        arguments: &JsonObject,
    ) -> Result<CallToolResult, RequestError> {
        let first = self
            .first_tools
            .lock()
            .ok()
            .and_then(|first| first.clone())
            .unwrap_or_default();
        let tools = self.catalog.list::<Tool>(&self.keepers);
        let tools_of = |index: usize| -> Vec<Value> {
            tools
                .iter()
                .filter(|tool| {
                    self.catalog
                        .route(Kind::Tools, &self.keepers, &tool.name)
                        .is_some_and(|route| route.keeper == index)
                })
                .map(|tool| {
                    let tool = serde_json::to_value(tool).unwrap_or_default();
                    let mut shown = json!({});
                    for key in ["name", "title", "description", "inputSchema", "annotations"] {
                        if let Some(value) = tool.get(key) {
                            shown[key] = value.clone();
                        }
                    }
                    shown
                })
                .collect()
        };
        // Ready means its tools can be called: connected, and its tool list read.
        let status = |keeper: &Keeper| match keeper.connection() {
            Ok(_) if keeper.listed::<Tool>().is_some() => json!({"ready": true}),
            Ok(_) => json!({"ready": false, "status": "connected; reading its lists"}),
            Err(reason) => json!({"ready": false, "status": reason}),
        };
        match arguments.get("backend").unwrap_or(&Value::Null) {
            Value::Null => {
                let backends: Vec<Value> = self
                    .keepers
                    .iter()
                    .enumerate()
                    .map(|(index, keeper)| {
                        let mut entry = json!({
                            "backend": keeper.backend.name,
                            "tools": tools_of(index).len(),
                            "in_first_tool_list": first.contains(&keeper.backend.name),
                        });
                        if let (Value::Object(entry), Value::Object(status)) =
                            (&mut entry, status(keeper))
                        {
                            entry.extend(status);
                        }
                        entry
                    })
                    .collect();
                json_result(json!({ "backends": backends }))
            }
            Value::String(name) => {
                let Some(index) = self.keepers.iter().position(|s| s.backend.name == *name) else {
                    let known: Vec<&str> = self
                        .keepers
                        .iter()
                        .map(|s| s.backend.name.as_str())
                        .collect();
                    return Err(RequestError::InvalidParams(format!(
                        "{LIST_TOOLS}: no backend named '{name}' (backends: {})",
                        known.join(", ")
                    )));
                };
                let keeper = &self.keepers[index];
                let mut listing = json!({
                    "backend": keeper.backend.name,
                    "tools": tools_of(index),
                });
                if let (Value::Object(listing), Value::Object(status)) =
                    (&mut listing, status(keeper))
                {
                    listing.extend(status);
                }
                json_result(listing)
            }
            _ => Err(RequestError::InvalidParams(format!(
                "{LIST_TOOLS}: `backend` must be a backend's name"
            ))),
        }
    }
}
