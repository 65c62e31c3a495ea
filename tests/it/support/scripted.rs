//! A backend whose lists are scripted: any number of tools in pages of any size, lists that
//! page forever or hand out one cursor again and again, MCP Apps tools with their `ui://`
//! resources, and capability extensions. Streamable HTTP on 127.0.0.1; stops when dropped.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ListResourcesResult,
        ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How `tools/list` pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// The tools, `page_size` at a time, then no cursor.
    Finite,
    /// Page after page of new tools, each with a fresh cursor, without end.
    Endless,
    /// The first page, and the same cursor every time.
    RepeatCursor,
    /// The first page with a cursor; every later page is an error.
    FailAfterFirst,
}

/// What the backend lists and answers.
#[derive(Debug, Clone)]
pub struct Script {
    /// `serverInfo.name`.
    pub name: String,
    /// Tools as JSON (`name`, `inputSchema`, any `_meta`).
    pub tools: Vec<Value>,
    /// Tools per page.
    pub page_size: usize,
    /// How the pages go.
    pub paging: Paging,
    /// Resources as JSON, with their text as `"text"` (left out of the listing).
    pub resources: Vec<Value>,
    /// `capabilities.extensions`.
    pub extensions: Option<Value>,
}

impl Script {
    /// `count` plain tools `tool_0`, `tool_1`, ... whose descriptions are `description_bytes`
    /// long, in pages of `page_size`.
    pub fn tools(name: &str, count: usize, page_size: usize, description_bytes: usize) -> Self {
        let description = "d".repeat(description_bytes);
        Self {
            name: name.into(),
            tools: (0..count)
                .map(|i| tool(&format!("tool_{i}"), &description))
                .collect(),
            page_size,
            paging: Paging::Finite,
            resources: Vec::new(),
            extensions: None,
        }
    }
}

/// A tool with an empty object schema.
pub fn tool(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object"}})
}

#[derive(Clone)]
struct Scripted {
    script: Arc<Script>,
    pages_served: Arc<AtomicU32>,
}

/// A running scripted backend.
pub struct ScriptedBackend {
    addr: SocketAddr,
    pages_served: Arc<AtomicU32>,
    stop: CancellationToken,
}

impl ScriptedBackend {
    /// Serves `script` at `http://127.0.0.1:PORT/mcp`.
    pub async fn start(script: Script) -> Self {
        let stop = CancellationToken::new();
        let pages_served = Arc::new(AtomicU32::new(0));
        let handler = Scripted {
            script: Arc::new(script),
            pages_served: Arc::clone(&pages_served),
        };
        let service = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
        );
        // `/moved` is where the server used to live: a same-origin 307 to `/mcp`.
        let router = axum::Router::new().route_service("/mcp", service).route(
            "/moved",
            axum::routing::any(|| async {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, "/mcp")],
                )
            }),
        );
        let addr = super::serve_http(router, &stop).await;
        Self {
            addr,
            pages_served,
            stop,
        }
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// `tools/list` pages served so far.
    pub fn pages_served(&self) -> u32 {
        self.pages_served.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a scripted value of the right shape")
}

impl ServerHandler for Scripted {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = json!({
            "tools": {"listChanged": true},
            "resources": {},
        });
        if let Some(extensions) = &self.script.extensions {
            capabilities["extensions"] = extensions.clone();
        }
        ServerConfig::new(from_json::<ServerCapabilities>(capabilities))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.pages_served.fetch_add(1, Ordering::SeqCst);
        let size = self.script.page_size.max(1);
        let page: usize = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor
                .strip_prefix('p')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ErrorData::invalid_params("bad cursor", None))?,
        };
        let (tools, next) = match self.script.paging {
            Paging::Finite => {
                let start = (page * size).min(self.script.tools.len());
                let end = (start + size).min(self.script.tools.len());
                let next = (end < self.script.tools.len()).then(|| format!("p{}", page + 1));
                (self.script.tools[start..end].to_vec(), next)
            }
            Paging::Endless => (
                (0..size)
                    .map(|i| tool(&format!("page{page}_tool{i}"), "endless"))
                    .collect(),
                Some(format!("p{}", page + 1)),
            ),
            Paging::RepeatCursor => (
                self.script.tools.iter().take(size).cloned().collect(),
                Some("p1".to_owned()),
            ),
            Paging::FailAfterFirst if page > 0 => {
                return Err(ErrorData::internal_error("page unavailable", None));
            }
            Paging::FailAfterFirst => (
                self.script.tools.iter().take(size).cloned().collect(),
                Some("p1".to_owned()),
            ),
        };
        Ok(from_json(json!({"tools": tools, "nextCursor": next})))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // What the client said it can do, as it reached this backend (MCP Apps support, say).
        let extensions = context
            .peer
            .peer_info()
            .and_then(|info| serde_json::to_value(&info.capabilities.extensions).ok())
            .unwrap_or(Value::Null);
        let text = format!(
            "{} ran {}; client extensions: {extensions}",
            self.script.name, request.name
        );
        let mut content = vec![json!({"type": "text", "text": text})];
        // `{"link": URI}`: the answer links to that resource, and embeds it too.
        if let Some(uri) = request.arguments.as_ref().and_then(|a| a.get("link")) {
            content.push(json!({"type": "resource_link", "uri": uri, "name": "linked"}));
            content.push(json!({"type": "resource", "resource": {"uri": uri, "text": "embedded"}}));
        }
        let result: CallToolResult = from_json(json!({ "content": content }));
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let listed: Vec<Value> = self
            .script
            .resources
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().map(|m| m.remove("text"));
                r
            })
            .collect();
        Ok(from_json(json!({ "resources": listed })))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(resource) = self
            .script
            .resources
            .iter()
            .find(|r| r["uri"] == request.uri)
        else {
            return Err(ErrorData::resource_not_found(request.uri, None));
        };
        let mut contents = json!({"uri": resource["uri"], "text": resource["text"]});
        for key in ["mimeType", "_meta"] {
            if let Some(value) = resource.get(key) {
                contents[key] = value.clone();
            }
        }
        let result: ReadResourceResult = from_json(json!({ "contents": [contents] }));
        Ok(result.into())
    }
}
