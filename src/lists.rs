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

use std::{collections::HashSet, sync::Arc};

use rmcp::model::{
    ClientRequest, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, Prompt, RequestMetaObject, Resource, ResourceTemplate, ServerCapabilities,
    ServerResult, Tool,
};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    backend::{Connection, Origin},
    request_error::RequestError,
};

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

    /// The answer to a list request with a cursor, if it has one: the proxy hands out none,
    /// so a cursor is stale or foreign, and its page is the end of the list — an empty one.
    pub fn past_the_end(self, cursor: Option<&str>) -> Option<ServerResult> {
        cursor?;
        tracing::debug!(
            "Answered {} with a cursor with an empty page",
            self.method()
        );
        Some(self.empty())
    }

    /// An empty list result.
    fn empty(self) -> ServerResult {
        match self {
            Kind::Tools => Tool::answer(Tool::fresh_page(), Vec::new()),
            Kind::Prompts => Prompt::answer(Prompt::fresh_page(), Vec::new()),
            Kind::Resources => Resource::answer(Resource::fresh_page(), Vec::new()),
            Kind::Templates => ResourceTemplate::answer(ResourceTemplate::fresh_page(), Vec::new()),
        }
    }
}

/// An item of one of the four lists, as rmcp types it: a [`Tool`], [`Prompt`], [`Resource`]
/// or [`ResourceTemplate`]. Lists stay typed from the backend's page to the client's answer:
/// a typed tool shares its schemas, so keeping, merging and answering a list copies little.
pub trait Item: Clone + Serialize + Send + Sync + 'static {
    /// A page of its list: the result of a list request.
    type Page: Send;
    /// Its list.
    const KIND: Kind;

    /// What identifies it: a name, a URI, a URI template.
    fn key(&self) -> &str;
    /// Gives it another identity (the name or URI it is exposed under).
    fn set_key(&mut self, key: String);
    /// A page with nothing in it, as the proxy makes one (no `resultType`, as in the
    /// revisions it speaks).
    fn fresh_page() -> Self::Page;
    /// The page that `result` is, if it is a page of this list.
    fn page(result: ServerResult) -> Option<Self::Page>;
    /// Takes the items and the next cursor out of `page`, leaving its other members.
    fn take(page: &mut Self::Page) -> (Vec<Self>, Option<String>);
    /// `page`'s other members with `items`, and no cursor: a complete list.
    fn answer(page: Self::Page, items: Vec<Self>) -> ServerResult;
    /// This list among a backend's [`Lists`].
    fn of(lists: &Lists) -> &Option<Arc<Vec<Self>>>;
    /// The same, to replace it.
    fn of_mut(lists: &mut Lists) -> &mut Option<Arc<Vec<Self>>>;
}

/// One list of each kind, each `None` until read.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    /// `tools/list`
    pub tools: Option<Arc<Vec<Tool>>>,
    /// `prompts/list`
    pub prompts: Option<Arc<Vec<Prompt>>>,
    /// `resources/list`
    pub resources: Option<Arc<Vec<Resource>>>,
    /// `resources/templates/list`
    pub templates: Option<Arc<Vec<ResourceTemplate>>>,
}

impl Lists {
    /// How many items the list of `kind` has (0 before it is read).
    pub fn count(&self, kind: Kind) -> usize {
        self.read(kind).unwrap_or(0)
    }

    /// How many items the list of `kind` has; `None` before it is read.
    pub fn read(&self, kind: Kind) -> Option<usize> {
        match kind {
            Kind::Tools => self.tools.as_ref().map(|l| l.len()),
            Kind::Prompts => self.prompts.as_ref().map(|l| l.len()),
            Kind::Resources => self.resources.as_ref().map(|l| l.len()),
            Kind::Templates => self.templates.as_ref().map(|l| l.len()),
        }
    }
}

macro_rules! item {
    ($item:ident, $kind:ident, $page:ident, $items:ident, $key:ident, $field:ident) => {
        impl Item for $item {
            type Page = $page;
            const KIND: Kind = Kind::$kind;

            fn key(&self) -> &str {
                &self.$key
            }

            fn set_key(&mut self, key: String) {
                self.$key = key.into();
            }

            fn fresh_page() -> $page {
                let mut page = $page::with_all_items(Vec::new());
                page.result_type = None;
                page
            }

            fn page(result: ServerResult) -> Option<$page> {
                match result {
                    ServerResult::$page(page) => Some(page),
                    _ => None,
                }
            }

            fn take(page: &mut $page) -> (Vec<Self>, Option<String>) {
                (std::mem::take(&mut page.$items), page.next_cursor.take())
            }

            fn answer(mut page: $page, items: Vec<Self>) -> ServerResult {
                page.$items = items;
                page.next_cursor = None;
                ServerResult::$page(page)
            }

            fn of(lists: &Lists) -> &Option<Arc<Vec<Self>>> {
                &lists.$field
            }

            fn of_mut(lists: &mut Lists) -> &mut Option<Arc<Vec<Self>>> {
                &mut lists.$field
            }
        }
    };
}

item!(Tool, Tools, ListToolsResult, tools, name, tools);
item!(Prompt, Prompts, ListPromptsResult, prompts, name, prompts);
item!(
    Resource,
    Resources,
    ListResourcesResult,
    resources,
    uri,
    resources
);
item!(
    ResourceTemplate,
    Templates,
    ListResourceTemplatesResult,
    resource_templates,
    uri_template,
    templates
);

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
#[derive(Debug)]
pub struct Listing<T: Item> {
    /// Every item, in the backend's order.
    pub items: Vec<T>,
    /// The first page without its items and cursor: its other members (`_meta`, say).
    pub page: T::Page,
    /// `false` when a later page failed: what was read is served, but it is not the backend's
    /// list, so it is not remembered for the next run. (A list cut at [`Limits`] is as whole
    /// as it will ever be.)
    pub complete: bool,
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

fn json_size(value: &impl Serialize) -> usize {
    let mut counter = Counter::default();
    // Writing to a counter cannot fail; a value that cannot serialize counts as nothing.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// A backend's whole list of `kind` as one result: what the drop-in answers; with whether
/// every page was read (see [`Listing::complete`]).
pub async fn read_answer(
    backend: &Connection,
    kind: Kind,
    cancelled: &CancellationToken,
    limits: Limits,
) -> Result<(ServerResult, bool), RequestError> {
    async fn whole<T: Item>(
        backend: &Connection,
        cancelled: &CancellationToken,
        limits: Limits,
    ) -> Result<(ServerResult, bool), RequestError> {
        let listing = read_all::<T>(backend, cancelled, limits, Origin::Client).await?;
        Ok((T::answer(listing.page, listing.items), listing.complete))
    }
    match kind {
        Kind::Tools => whole::<Tool>(backend, cancelled, limits).await,
        Kind::Prompts => whole::<Prompt>(backend, cancelled, limits).await,
        Kind::Resources => whole::<Resource>(backend, cancelled, limits).await,
        Kind::Templates => whole::<ResourceTemplate>(backend, cancelled, limits).await,
    }
}

/// Reads every page of `T`'s list from `backend`, following its cursors, within `limits`, for
/// `origin`. An error on the first page is the error, and so is any once `cancelled` (the
/// client gave up, or the proxy is stopping: a list cut short by that is nobody's list); on a
/// later page, what was read is kept and the failure is reported as the cut.
pub async fn read_all<T: Item>(
    backend: &Connection,
    cancelled: &CancellationToken,
    limits: Limits,
    origin: Origin,
) -> Result<Listing<T>, RequestError> {
    let kind = T::KIND;
    let mut items: Vec<T> = Vec::new();
    let mut first: Option<T::Page> = None;
    let mut cut = None;
    let mut seen_cursors = HashSet::new();
    let mut seen_items = HashSet::new();
    let mut bytes = 0usize;
    let mut cursor: Option<String> = None;
    let mut complete = true;
    for page_number in 1.. {
        if page_number > limits.pages {
            cut = Some(format!("it has more than {} pages", limits.pages));
            break;
        }
        let request = kind.request(cursor.as_deref())?;
        let result = match backend
            .send(request, RequestMetaObject::default(), cancelled, origin)
            .await
        {
            Ok(result) => result,
            Err(e) if page_number == 1 || cancelled.is_cancelled() => return Err(e),
            Err(e) => {
                cut = Some(format!("page {page_number} failed: {e}"));
                complete = false;
                break;
            }
        };
        let Some(mut page) = T::page(result) else {
            return Err(RequestError::Internal(format!(
                "backend '{}' answered {} with something else",
                backend.name(),
                kind.method()
            )));
        };
        let (page_items, next) = T::take(&mut page);
        let next = next.filter(|next| !next.is_empty());
        if first.is_none() {
            first = Some(page);
        }
        for item in page_items {
            // A name listed twice (a page served again) would reach the client twice.
            if !seen_items.insert(item.key().to_owned()) {
                continue;
            }
            if items.len() >= limits.items {
                cut = Some(format!(
                    "it has more than {} {}",
                    limits.items,
                    kind.items()
                ));
                break;
            }
            let size = json_size(&item);
            if bytes + size > limits.bytes {
                cut = Some(format!(
                    "its {} take more than {} MiB",
                    kind.items(),
                    limits.bytes / (1024 * 1024)
                ));
                break;
            }
            bytes += size;
            items.push(item);
        }
        if cut.is_some() {
            break;
        }
        match next {
            None => break,
            Some(next) if !seen_cursors.insert(next.clone()) => {
                cut = Some(format!("it handed out the cursor {next:?} a second time"));
                break;
            }
            Some(next) => cursor = Some(next),
        }
    }
    if let Some(cut) = &cut {
        tracing::warn!(
            "Backend '{}': {} stopped after {} {}, because {cut}; the rest is left out",
            backend.name(),
            kind.method(),
            items.len(),
            kind.items(),
        );
    }
    Ok(Listing {
        items,
        page: first.unwrap_or_else(T::fresh_page),
        complete,
    })
}
