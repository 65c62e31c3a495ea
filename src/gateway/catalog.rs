//! The merged catalog: lists that page through every backend in turn, and the routes from
//! exposed tool and prompt names back to their backend.

use std::{collections::HashMap, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rmcp::model::{ClientRequest, ErrorData};
use serde_json::{Value, json};

use super::slots::Slot;
use crate::forward::client_error;

/// The four lists a client can page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tools/list`
    Tools,
    /// `prompts/list`
    Prompts,
    /// `resources/list`
    Resources,
    /// `resources/templates/list`
    Templates,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Kind::Tools => "tools/list",
            Kind::Prompts => "prompts/list",
            Kind::Resources => "resources/list",
            Kind::Templates => "resources/templates/list",
        }
    }

    /// The key of the items in a list result.
    pub fn items(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
        }
    }
}

/// Where an exposed tool or prompt lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the backend's slot.
    pub slot: usize,
    /// The backend's own name for it.
    pub original: String,
}

/// Exposed names seen in lists, so calls find their backend (also for shortened names).
#[derive(Default)]
pub struct Routes {
    tools: std::sync::Mutex<HashMap<String, Route>>,
    prompts: std::sync::Mutex<HashMap<String, Route>>,
}

impl Routes {
    fn table(&self, kind: Kind) -> Option<&std::sync::Mutex<HashMap<String, Route>>> {
        match kind {
            Kind::Tools => Some(&self.tools),
            Kind::Prompts => Some(&self.prompts),
            Kind::Resources | Kind::Templates => None,
        }
    }

    /// The route of an exposed name, if it has been listed.
    pub fn get(&self, kind: Kind, exposed: &str) -> Option<Route> {
        self.table(kind)?.lock().ok()?.get(exposed).cloned()
    }

    /// Records a route; `false` when another item already owns the exposed name: one of
    /// another backend, or another of this backend's own (a shortened name can equal a
    /// 64-character name the backend also has). The first to be listed keeps the name.
    fn claim(&self, kind: Kind, exposed: &str, route: Route) -> bool {
        let Some(Ok(mut table)) = self.table(kind).map(|t| t.lock()) else {
            return true;
        };
        match table.get(exposed) {
            Some(existing) => *existing == route,
            None => {
                table.insert(exposed.to_owned(), route);
                true
            }
        }
    }
}

/// A position in a merged list: which backend, and that backend's own cursor.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Cursor {
    #[serde(rename = "b")]
    backend: String,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

fn encode(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode(text: &str) -> Option<Cursor> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()
}

fn bad_cursor() -> ErrorData {
    ErrorData::invalid_params("invalid or expired cursor: list again from the start", None)
}

/// The slot that serves an exposed resource URI, with the backend's own URI: the prefixed
/// backend whose `{prefix}+` starts it, otherwise the first unprefixed backend. URIs are
/// routed by their shape (templates cannot be looked up in a table), so a prefixed backend
/// wins over an unprefixed one whose URI happens to start with its `{prefix}+`.
pub fn uri_owner<'a>(slots: &[Arc<Slot>], exposed: &'a str) -> Option<(usize, &'a str)> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.backend.prefix.is_some())
        .find_map(|(i, s)| s.naming.original_uri(exposed).map(|o| (i, o)))
        .or_else(|| {
            slots
                .iter()
                .position(|s| s.backend.prefix.is_none())
                .map(|i| (i, exposed))
        })
}

/// Exposes one item of the backend in `slots[index]` under the gateway's names; `None` hides
/// it.
fn expose(
    kind: Kind,
    index: usize,
    slots: &[Arc<Slot>],
    routes: &Routes,
    mut item: Value,
) -> Option<Value> {
    let slot = slots.get(index)?;
    let naming = &slot.naming;
    let field = match kind {
        Kind::Tools | Kind::Prompts => "name",
        Kind::Resources => "uri",
        Kind::Templates => "uriTemplate",
    };
    let original = item.get(field)?.as_str()?.to_owned();
    let exposed = match kind {
        Kind::Tools => {
            if !slot.backend.tools.allows(&original) {
                return None;
            }
            match naming.tool(&original) {
                Ok(name) => name,
                Err(invalid) => {
                    tracing::warn!("Skipping {}", invalid.0);
                    return None;
                }
            }
        }
        Kind::Prompts => naming.name(&original),
        Kind::Resources | Kind::Templates => {
            let exposed = naming.uri(&original);
            // Listed only if reading it reaches this backend: an unprefixed backend's
            // `tools+x` is read from backend `tools`, so listing it here would mislead.
            if uri_owner(slots, &exposed).map(|(i, _)| i) != Some(index) {
                tracing::warn!(
                    "Skipping {} '{original}' of backend '{}': '{exposed}' belongs to another \
                     backend's URIs",
                    kind.items(),
                    slot.backend.name
                );
                return None;
            }
            exposed
        }
    };
    let route = Route {
        slot: index,
        original: original.clone(),
    };
    if !routes.claim(kind, &exposed, route) {
        tracing::warn!(
            "Skipping {} '{original}' of backend '{}': '{exposed}' is already taken by another \
             {} (the first one listed keeps a name)",
            kind.items(),
            slot.backend.name,
            match kind {
                Kind::Prompts => "prompt",
                _ => "tool",
            }
        );
        return None;
    }
    item[field] = Value::String(exposed);
    Some(item)
}

/// One page of a merged list. Each page is one page of one backend; the cursor says which.
pub async fn list_page(
    kind: Kind,
    slots: &[Arc<Slot>],
    routes: &Routes,
    cursor: Option<&str>,
) -> Result<Value, ErrorData> {
    let (mut index, mut inner) = match cursor {
        None => (0, None),
        Some(text) => {
            let cursor = decode(text).ok_or_else(bad_cursor)?;
            let index = slots
                .iter()
                .position(|s| s.backend.name == cursor.backend)
                .ok_or_else(bad_cursor)?;
            (index, cursor.cursor)
        }
    };
    while let Some(slot) = slots.get(index) {
        let page = match slot.peer() {
            Ok(peer) => fetch(kind, &peer, inner.take(), &slot.backend.name).await,
            Err(reason) => {
                tracing::debug!("Listing without backend '{}': {reason}", slot.backend.name);
                Ok(None)
            }
        };
        let mut page = match page {
            Ok(Some(page)) => page,
            Ok(None) => json!({}),
            Err(e) => {
                tracing::warn!(
                    "Listing {} without backend '{}': {}",
                    kind.items(),
                    slot.backend.name,
                    e.message
                );
                json!({})
            }
        };
        let items: Vec<Value> = page
            .get_mut(kind.items())
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| expose(kind, index, slots, routes, item))
            .collect();
        let next = match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => Some(Cursor {
                backend: slot.backend.name.clone(),
                cursor: Some(c.to_owned()),
            }),
            None => slots.get(index + 1).map(|next| Cursor {
                backend: next.backend.name.clone(),
                cursor: None,
            }),
        };
        // Skip empty pages rather than send the client one.
        if items.is_empty()
            && let Some(next) = &next
        {
            index = slots
                .iter()
                .position(|s| s.backend.name == next.backend)
                .unwrap_or(slots.len());
            inner = next.cursor.clone();
            continue;
        }
        let mut result = match page {
            Value::Object(map) => Value::Object(map),
            _ => json!({}),
        };
        result[kind.items()] = Value::Array(items);
        match next {
            Some(next) => result["nextCursor"] = Value::String(encode(&next)),
            None => {
                if let Value::Object(map) = &mut result {
                    map.remove("nextCursor");
                }
            }
        }
        return Ok(result);
    }
    Ok(json!({ kind.items(): [] }))
}

async fn fetch(
    kind: Kind,
    peer: &rmcp::Peer<rmcp::RoleClient>,
    cursor: Option<String>,
    backend: &str,
) -> Result<Option<Value>, ErrorData> {
    let params = match cursor {
        Some(c) => json!({ "cursor": c }),
        None => json!({}),
    };
    let request: ClientRequest =
        serde_json::from_value(json!({"method": kind.method(), "params": params}))
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let result = peer
        .send_request(request)
        .await
        .map_err(|e| client_error(backend, e))?;
    serde_json::to_value(result)
        .map(Some)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// Lists every page of every backend, so that the routes know every exposed name.
pub async fn refresh(kind: Kind, slots: &[Arc<Slot>], routes: &Routes) {
    let mut cursor: Option<String> = None;
    // Bounded: a backend that hands out cursors forever must not hang a call.
    for _ in 0..1000 {
        let Ok(page) = list_page(kind, slots, routes, cursor.as_deref()).await else {
            return;
        };
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            backend: "tools".into(),
            cursor: Some("page-2".into()),
        };
        assert_eq!(decode(&encode(&cursor)), Some(cursor));
        assert_eq!(decode("not a cursor"), None);
    }

    #[test]
    fn a_name_belongs_to_the_first_backend_that_lists_it() {
        let routes = Routes::default();
        let route = |slot| Route {
            slot,
            original: "x".into(),
        };
        assert!(routes.claim(Kind::Tools, "x", route(0)));
        assert!(routes.claim(Kind::Tools, "x", route(0)));
        assert!(!routes.claim(Kind::Tools, "x", route(1)));
        assert_eq!(routes.get(Kind::Tools, "x"), Some(route(0)));
    }

    fn slot(name: &str, prefix: Option<&str>) -> Arc<Slot> {
        let url = url::Url::parse("http://127.0.0.1:1/mcp").unwrap();
        let backend = crate::config::Backend::new(name, url, None, prefix);
        Arc::new(Slot::new(backend, "_", None))
    }

    /// Found by `tests/properties.rs`: an unprefixed backend's resource `tools+mem://x` was
    /// listed, but reading it went to backend `tools` (as `mem://x`).
    #[test]
    fn a_resource_is_listed_only_where_reading_it_leads() {
        let slots = [slot("tools", Some("tools")), slot("plain", None)];
        assert_eq!(uri_owner(&slots, "tools+mem://x"), Some((0, "mem://x")));
        assert_eq!(uri_owner(&slots, "mem://y"), Some((1, "mem://y")));
        let routes = Routes::default();
        let listed = |index, uri: &str| {
            expose(Kind::Resources, index, &slots, &routes, json!({"uri": uri}))
                .map(|item| item["uri"].clone())
        };
        assert_eq!(listed(0, "mem://x"), Some(json!("tools+mem://x")));
        assert_eq!(listed(1, "mem://y"), Some(json!("mem://y")));
        assert_eq!(listed(1, "tools+mem://x"), None);
        // A second unprefixed backend's URIs would all be read from the first one.
        let slots = [slot("a", None), slot("b", None)];
        assert_eq!(uri_owner(&slots, "mem://y"), Some((0, "mem://y")));
        let template = json!({"uriTemplate": "mem://{id}"});
        assert!(expose(Kind::Templates, 1, &slots, &routes, template).is_none());
    }

    /// Found by `tests/properties.rs`: a backend listing a tool with a name longer than the
    /// limit and also the tool whose name is that name's shortened form had both exposed
    /// under one name, and calls went to whichever was listed last.
    #[test]
    fn a_shortened_name_is_not_taken_over_by_another_tool_of_the_same_backend() {
        let naming = crate::naming::Naming {
            backend: "b".into(),
            prefix: None,
            separator: "_",
        };
        let long = "a".repeat(70);
        let shortened = naming.tool(&long).unwrap();
        assert_eq!(naming.tool(&shortened).unwrap(), shortened);
        let routes = Routes::default();
        let route = |original: &str| Route {
            slot: 0,
            original: original.into(),
        };
        assert!(routes.claim(Kind::Tools, &shortened, route(&long)));
        assert!(!routes.claim(Kind::Tools, &shortened, route(&shortened)));
        // Listing again keeps the name where it is.
        assert!(routes.claim(Kind::Tools, &shortened, route(&long)));
        assert_eq!(routes.get(Kind::Tools, &shortened), Some(route(&long)));
    }
}
