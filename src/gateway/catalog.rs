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

    /// Records a route; `false` when another backend already owns the exposed name.
    fn claim(&self, kind: Kind, exposed: &str, route: Route) -> bool {
        let Some(Ok(mut table)) = self.table(kind).map(|t| t.lock()) else {
            return true;
        };
        match table.get(exposed) {
            Some(existing) if existing.slot != route.slot => false,
            _ => {
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

/// Exposes one backend item under the gateway's names; `None` hides it.
fn expose(
    kind: Kind,
    index: usize,
    slot: &Slot,
    routes: &Routes,
    mut item: Value,
) -> Option<Value> {
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
        Kind::Resources | Kind::Templates => naming.uri(&original),
    };
    let route = Route {
        slot: index,
        original: original.clone(),
    };
    if !routes.claim(kind, &exposed, route) {
        tracing::warn!(
            "Skipping {} '{original}' of backend '{}': '{exposed}' is already taken by another backend",
            kind.items(),
            slot.backend.name
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
            .filter_map(|item| expose(kind, index, slot, routes, item))
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
}
