//! The experimental tasks of MCP 2025-11-25, carried across the proxy between a client and a
//! backend that both speak that revision.
//!
//! rmcp models tasks only as the later extension (SEP-2663), and its typed messages drop what
//! the 2025-11-25 tasks add to the core: a server's `capabilities.tasks`, a tool's `execution`,
//! a call's `params.task`, and the shapes of `tasks/*` answers. So the proxy stows each of them,
//! while the message is still JSON, where the types keep it — under the key [`STOWED`] — and
//! puts it back, again as JSON, where the other side reads it:
//!
//! | what | stowed at | under | put back at |
//! |---|---|---|---|
//! | a server's `capabilities.tasks` | the backend's answer (its SSE events) | `capabilities.experimental` | stdout |
//! | a tool's `execution` | the backend's answer | the tool's `_meta` | stdout |
//! | a call's `params.task` | stdin | the call's `_meta` | the request to the backend ([`for_backend`]) |
//! | the answer to a task call or to `tasks/*` | the backend's answer | a result of its own, `{STOWED: answer}` | stdout |
//!
//! A client of 2026-07-28 never sees them (`server/era.rs`): that revision has tasks only as the
//! extension. A backend that answers with plain JSON rather than SSE (rare: every SDK's server
//! answers with SSE unless told otherwise) is read by rmcp before the proxy sees its answer,
//! so its tasks are not relayed.

use rmcp::model::{ClientRequest, CustomRequest, RequestMetaObject, ServerResult};
use serde_json::{Map, Value};

/// The key under which what rmcp's types would drop travels.
pub const STOWED: &str = "authful-mcp-proxy/2025-11-25";

/// The methods of 2025-11-25 tasks whose answers are carried whole.
const TASK_METHODS: &[&str] = &["tasks/get", "tasks/result", "tasks/list", "tasks/cancel"];

/// Whether the answer to `request` (as sent to a backend) must be carried whole: a task call's,
/// or a `tasks/*` method's.
pub fn answer_carried_whole(request: &ClientRequest) -> bool {
    match request {
        ClientRequest::CustomRequest(custom) => {
            TASK_METHODS.contains(&custom.method.as_str())
                || (custom.method == "tools/call"
                    && custom
                        .params
                        .as_ref()
                        .is_some_and(|p| p.get("task").is_some()))
        }
        ClientRequest::GetTaskRequest(_) | ClientRequest::CancelTaskRequest(_) => true,
        _ => false,
    }
}

/// A backend's message (one SSE event's data), with what the types would drop stowed; `whole`:
/// it answers a request whose answer is carried whole. `None` when nothing needed stowing.
pub fn stow_answer(data: &str, whole: bool) -> Option<String> {
    if !whole && !data.contains("\"tasks\"") && !data.contains("\"execution\"") {
        return None;
    }
    let mut message: Value = serde_json::from_str(data).ok()?;
    let result = message.get_mut("result")?.as_object_mut()?;
    let mut changed = false;
    if whole {
        let answer = std::mem::take(result);
        result.insert(STOWED.to_owned(), Value::Object(answer));
        changed = true;
    } else {
        if let Some(capabilities) = result
            .get_mut("capabilities")
            .and_then(Value::as_object_mut)
            && let Some(tasks) = capabilities.remove("tasks")
        {
            stow(capabilities, "experimental", "tasks", tasks);
            changed = true;
        }
        if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
            for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(execution) = tool.remove("execution") {
                    stow(tool, "_meta", "execution", execution);
                    changed = true;
                }
            }
        }
    }
    changed.then(|| message.to_string())
}

/// A client's request (one line of stdin), with a call's `params.task` stowed in its `_meta`.
/// `None` when there was none.
pub fn stow_request(line: &[u8]) -> Option<Vec<u8>> {
    if memchr(line, b"\"task\"").is_none() || memchr(line, b"tools/call").is_none() {
        return None;
    }
    let mut message: Value = serde_json::from_slice(line).ok()?;
    if message.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    let params = message.get_mut("params")?.as_object_mut()?;
    let task = params.remove("task")?;
    stow(params, "_meta", "task", task);
    serde_json::to_vec(&message).ok()
}

/// `request` as the backend must get it: a call whose `_meta` (`meta`, the client's) holds a
/// stowed `task` goes as the plain JSON of 2025-11-25, with `params.task`; the mark is taken
/// off `meta` either way. `modern`: the backend speaks 2026-07-28, which has no such tasks —
/// the call goes without.
pub fn for_backend(
    request: ClientRequest,
    meta: &mut RequestMetaObject,
    modern: bool,
) -> ClientRequest {
    let Some(stowed) = meta.remove(STOWED) else {
        return request;
    };
    let task = stowed.get("task").cloned();
    match (request, task) {
        (ClientRequest::CallToolRequest(call), Some(task)) if !modern => {
            let mut params = match serde_json::to_value(&call.params) {
                Ok(Value::Object(params)) => params,
                _ => return ClientRequest::CallToolRequest(call),
            };
            params.remove("_meta");
            params.insert("task".to_owned(), task);
            ClientRequest::CustomRequest(CustomRequest::new(
                "tools/call",
                Some(Value::Object(params)),
            ))
        }
        (request, _) => request,
    }
}

/// A message for the client (one line of stdout), with what was stowed put back where
/// 2025-11-25 has it. `None` when nothing was stowed.
pub fn restore(line: &[u8]) -> Option<Vec<u8>> {
    memchr(line, STOWED.as_bytes())?;
    let mut message: Value = serde_json::from_slice(line).ok()?;
    let result = message.get_mut("result")?.as_object_mut()?;
    if let Some(Value::Object(answer)) = result.remove(STOWED) {
        *result = answer;
    } else {
        if let Some(capabilities) = result
            .get_mut("capabilities")
            .and_then(Value::as_object_mut)
            && let Some(tasks) = unstow(capabilities, "experimental", "tasks")
        {
            capabilities.insert("tasks".to_owned(), tasks);
        }
        if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
            for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(execution) = unstow(tool, "_meta", "execution") {
                    tool.insert("execution".to_owned(), execution);
                }
            }
        }
    }
    serde_json::to_vec(&message).ok()
}

/// `result` without what was stowed in it, for a client of 2026-07-28, which has tasks only
/// as the extension.
pub fn forget(result: &mut ServerResult) {
    let capabilities = match result {
        ServerResult::ListToolsResult(list) => {
            for tool in &mut list.tools {
                if let Some(meta) = &mut tool.meta {
                    meta.remove(STOWED);
                    if meta.is_empty() {
                        tool.meta = None;
                    }
                }
            }
            return;
        }
        ServerResult::DiscoverResult(discover) => &mut discover.capabilities,
        ServerResult::InitializeResult(init) => &mut init.capabilities,
        _ => return,
    };
    if let Some(experimental) = &mut capabilities.experimental {
        experimental.remove(STOWED);
        if experimental.is_empty() {
            capabilities.experimental = None;
        }
    }
}

/// Puts `value` at `object[within][STOWED][name]`.
fn stow(object: &mut Map<String, Value>, within: &str, name: &str, value: Value) {
    let inner = object
        .entry(within)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(inner) = inner.as_object_mut() {
        let stowed = inner
            .entry(STOWED)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(stowed) = stowed.as_object_mut() {
            stowed.insert(name.to_owned(), value);
        }
    }
}

/// Takes `object[within][STOWED][name]` out, leaving no empty object behind.
fn unstow(object: &mut Map<String, Value>, within: &str, name: &str) -> Option<Value> {
    let inner = object.get_mut(within)?.as_object_mut()?;
    let stowed = inner.get_mut(STOWED)?.as_object_mut()?;
    let value = stowed.remove(name);
    if stowed.is_empty() {
        inner.remove(STOWED);
    }
    if inner.is_empty() {
        object.remove(within);
    }
    value
}

/// Where `needle` first occurs in `haystack`.
fn memchr(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What a backend's answers lose in rmcp's types survives the trip: stowed where the
    /// types keep it, put back on the way out, and nothing of the proxy's own is left.
    #[test]
    fn capabilities_and_execution_survive_the_trip() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "capabilities": {"tools": {}, "tasks": {"list": {}, "requests": {"tools": {"call": {}}}}},
            "tools": [{"name": "a", "inputSchema": {}, "execution": {"taskSupport": "required"}},
                      {"name": "b", "inputSchema": {}, "_meta": {"x": 1}}],
        }});
        let stowed = stow_answer(&answer.to_string(), false).expect("stowed");
        let typed: Value = serde_json::from_str(&stowed).unwrap();
        assert!(typed["result"]["capabilities"].get("tasks").is_none());
        assert!(typed["result"]["tools"][0].get("execution").is_none());
        let back: Value = serde_json::from_slice(&restore(stowed.as_bytes()).unwrap()).unwrap();
        assert_eq!(back, answer);
        assert_eq!(
            stow_answer(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
            None
        );
    }

    /// The answer to a task call travels whole and comes out as it went in.
    #[test]
    fn a_task_answer_travels_whole() {
        let answer = json!({"jsonrpc": "2.0", "id": 7, "result": {
            "task": {"taskId": "t1", "status": "working", "ttl": 60000, "createdAt": "x", "lastUpdatedAt": "x"}
        }});
        let stowed = stow_answer(&answer.to_string(), true).expect("stowed");
        let back: Value = serde_json::from_slice(&restore(stowed.as_bytes()).unwrap()).unwrap();
        assert_eq!(back, answer);
    }

    /// A call's `task` is stowed at stdin and sent to a backend of 2025-11-25 as it came.
    #[test]
    fn a_calls_task_reaches_the_backend() {
        let line = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow","arguments":{},"task":{"ttl":1000}}}"#;
        let stowed = stow_request(line).expect("stowed");
        let message: rmcp::service::RxJsonRpcMessage<rmcp::RoleServer> =
            serde_json::from_slice(&stowed).unwrap();
        let rmcp::model::JsonRpcMessage::Request(request) = message else {
            panic!()
        };
        let mut meta = rmcp::model::GetMeta::get_meta(&request.request).clone();
        let sent = for_backend(request.request.clone(), &mut meta, false);
        assert!(answer_carried_whole(&sent));
        let sent = serde_json::to_value(&sent).unwrap();
        assert_eq!(sent["params"]["task"], json!({"ttl": 1000}), "{sent}");
        assert_eq!(sent["params"]["name"], "slow");
        assert!(meta.get(STOWED).is_none());
        // To a backend of 2026-07-28: a plain call.
        let mut meta = rmcp::model::GetMeta::get_meta(&request.request).clone();
        let plain = for_backend(request.request, &mut meta, true);
        assert!(matches!(plain, ClientRequest::CallToolRequest(_)));
    }
}
