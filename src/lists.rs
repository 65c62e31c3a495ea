//! Complete lists: every page of a backend's list, read in one go and within bounds.
//!
//! Claude Desktop and Claude Code read one page of `tools/list` and never follow
//! `nextCursor`, so a backend that pages its lists (FastMCP's `list_page_size`, Laravel MCP's
//! pages of 15) would show them only its first few tools. The proxy follows the cursors itself
//! and answers every list with all of its items and no cursor.
//!
//! A backend cannot make that walk endless or unbounded: it stops after [`LIMITS`] (pages,
//! items, bytes) or at a cursor the backend has handed out before, keeps what it has read,
//! and says in a warning what was cut. Every page is an ordinary request to the backend, with
//! its request timeout and the caller's cancellation.

use std::collections::HashSet;

use rmcp::model::{ClientRequest, RequestMetaObject, ServerCapabilities, ServerResult};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::{backend::Connection, request_error::RequestError};

/// The four lists of MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 4] = [Kind::Tools, Kind::Prompts, Kind::Resources, Kind::Templates];

    /// The list request's method.
    pub fn method(self) -> &'static str {
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

    /// The member that identifies an item.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Tools | Kind::Prompts => "name",
            Kind::Resources => "uri",
            Kind::Templates => "uriTemplate",
        }
    }

    /// A position in [`Kind::ALL`], for tables indexed by kind.
    pub fn index(self) -> usize {
        match self {
            Kind::Tools => 0,
            Kind::Prompts => 1,
            Kind::Resources => 2,
            Kind::Templates => 3,
        }
    }

    /// Whether a server with `capabilities` serves this list at all.
    pub fn served_by(self, capabilities: &ServerCapabilities) -> bool {
        match self {
            Kind::Tools => capabilities.tools.is_some(),
            Kind::Prompts => capabilities.prompts.is_some(),
            Kind::Resources | Kind::Templates => capabilities.resources.is_some(),
        }
    }

    /// The list request for the page at `cursor` (the first page without one).
    fn request(self, cursor: Option<&str>) -> Result<ClientRequest, RequestError> {
        let params = match cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        serde_json::from_value(json!({ "method": self.method(), "params": params }))
            .map_err(RequestError::internal)
    }

    /// A complete list result: `items`, the other members of `rest`, and no `nextCursor`.
    pub fn result(
        self,
        items: Vec<Value>,
        mut rest: Map<String, Value>,
    ) -> Result<ServerResult, RequestError> {
        rest.remove("nextCursor");
        rest.insert(self.items().to_owned(), Value::Array(items));
        let value = Value::Object(rest);
        let typed = RequestError::internal;
        Ok(match self {
            Kind::Tools => {
                ServerResult::ListToolsResult(serde_json::from_value(value).map_err(typed)?)
            }
            Kind::Prompts => {
                ServerResult::ListPromptsResult(serde_json::from_value(value).map_err(typed)?)
            }
            Kind::Resources => {
                ServerResult::ListResourcesResult(serde_json::from_value(value).map_err(typed)?)
            }
            Kind::Templates => ServerResult::ListResourceTemplatesResult(
                serde_json::from_value(value).map_err(typed)?,
            ),
        })
    }
}

/// The list a request asks for, and its cursor; `None` for other requests.
pub fn asked_for(request: &ClientRequest) -> Option<(Kind, Option<String>)> {
    let (kind, params) = match request {
        ClientRequest::ListToolsRequest(r) => (Kind::Tools, &r.params),
        ClientRequest::ListPromptsRequest(r) => (Kind::Prompts, &r.params),
        ClientRequest::ListResourcesRequest(r) => (Kind::Resources, &r.params),
        ClientRequest::ListResourceTemplatesRequest(r) => (Kind::Templates, &r.params),
        _ => return None,
    };
    Some((kind, params.as_ref().and_then(|p| p.cursor.clone())))
}

/// How far one walk through one backend's list may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Pages read at most.
    pub pages: usize,
    /// Items kept at most.
    pub items: usize,
    /// Bytes of items (as JSON) kept at most.
    pub bytes: usize,
}

/// The bounds of every walk: far above what real servers list (a few hundred tools of a few
/// KiB each), far below what would hurt a desktop machine.
pub const LIMITS: Limits = Limits {
    pages: 1000,
    items: 10_000,
    bytes: 16 * 1024 * 1024,
};

/// A backend's whole list.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every item, in the backend's order.
    pub items: Vec<Value>,
    /// The other members of the first page (`_meta`, say), without `nextCursor`.
    pub rest: Map<String, Value>,
    /// Why the walk stopped before the end, if it did.
    pub cut: Option<String>,
}

/// Counts the bytes a value serializes to, without keeping them.
#[derive(Default)]
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_size(value: &Value) -> usize {
    let mut counter = Counter::default();
    // Writing to a counter cannot fail; a value that cannot serialize counts as nothing.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Reads every page of `kind` from `backend`, following its cursors, within `limits`. An
/// error on the first page is the error; on a later one, what was read is kept and the
/// failure is reported as the cut.
pub async fn read_all(
    backend: &Connection,
    kind: Kind,
    cancelled: &CancellationToken,
    limits: Limits,
) -> Result<Listing, RequestError> {
    let mut listing = Listing::default();
    let mut seen_cursors = HashSet::new();
    let mut seen_items = HashSet::new();
    let mut bytes = 0usize;
    let mut cursor: Option<String> = None;
    for page_number in 1.. {
        if page_number > limits.pages {
            listing.cut = Some(format!("it has more than {} pages", limits.pages));
            break;
        }
        let request = kind.request(cursor.as_deref())?;
        let page = match backend
            .request(request, RequestMetaObject::default(), cancelled)
            .await
        {
            Ok(page) => page,
            Err(e) if page_number == 1 => return Err(e),
            Err(e) => {
                listing.cut = Some(format!("page {page_number} failed: {e}"));
                break;
            }
        };
        let Ok(Value::Object(mut page)) = serde_json::to_value(page) else {
            return Err(RequestError::Internal(format!(
                "backend '{}' answered {} with something else",
                backend.name(),
                kind.method()
            )));
        };
        let items = match page.remove(kind.items()) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let next = match page.remove("nextCursor") {
            Some(Value::String(next)) if !next.is_empty() => Some(next),
            _ => None,
        };
        if page_number == 1 {
            listing.rest = page;
        }
        for item in items {
            // A name listed twice (a page served again) would reach the client twice.
            let key = item.get(kind.key()).cloned().unwrap_or(Value::Null);
            if !seen_items.insert(key.to_string()) {
                continue;
            }
            if listing.items.len() >= limits.items {
                listing.cut = Some(format!(
                    "it has more than {} {}",
                    limits.items,
                    kind.items()
                ));
                break;
            }
            let size = json_size(&item);
            if bytes + size > limits.bytes {
                listing.cut = Some(format!(
                    "its {} take more than {} MiB",
                    kind.items(),
                    limits.bytes / (1024 * 1024)
                ));
                break;
            }
            bytes += size;
            listing.items.push(item);
        }
        if listing.cut.is_some() {
            break;
        }
        match next {
            None => break,
            Some(next) if !seen_cursors.insert(next.clone()) => {
                listing.cut = Some(format!("it handed out the cursor {next:?} a second time"));
                break;
            }
            Some(next) => cursor = Some(next),
        }
    }
    if let Some(cut) = &listing.cut {
        tracing::warn!(
            "Backend '{}': {} stopped after {} {}, because {cut}; the rest is left out",
            backend.name(),
            kind.method(),
            listing.items.len(),
            kind.items(),
        );
    }
    Ok(listing)
}
