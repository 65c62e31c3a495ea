//! A backend that speaks MCP 2026-07-28 alone, over Streamable HTTP on 127.0.0.1: it refuses
//! `initialize` (`-32022`, naming 2026-07-28) and is found with `server/discover`. Its tool
//! `ask` asks for input the new way, answering `input_required` with an elicitation until the
//! call comes again with the answer; `grow` adds a tool and tells subscribers of
//! `subscriptions/listen`. It counts the `initialize` and `server/discover` requests it saw.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    middleware::{self, Next},
    response::Response,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequest,
        ElicitRequestParams, ElicitationSchema, InputRequest, InputRequiredResult, ListToolsResult,
        PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
        ServerNotification, SubscriptionFilter, Tool, ToolListChangedNotification, object,
    },
    service::{RequestContext, SubscriptionContext},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What the backend saw.
#[derive(Default)]
pub struct Seen {
    pub initialize: AtomicU32,
    pub discover: AtomicU32,
    pub listens: AtomicU32,
}

#[derive(Clone)]
struct Modern {
    seen: Arc<Seen>,
    extra_tools: Arc<Mutex<Vec<String>>>,
    changes: broadcast::Sender<()>,
}

fn tool(name: &str) -> Tool {
    Tool::new(
        name.to_owned(),
        format!("the {name} tool"),
        object(json!({"type": "object"})),
    )
}

fn text(text: String) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(text)]))
}

impl ServerHandler for Modern {
    fn get_info(&self) -> ServerConfig {
        let capabilities: ServerCapabilities =
            serde_json::from_value(json!({"tools": {"listChanged": true}})).unwrap();
        ServerConfig::new(capabilities)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(vec![ProtocolVersion::V_2026_07_28])
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let region = Tool::new(
            "region",
            "says the region it was given, which also goes in a header (SEP-2243)",
            object(json!({"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"}
            }})),
        );
        let mut tools = vec![tool("echo"), tool("ask"), tool("grow"), region];
        tools.extend(self.extra_tools.lock().unwrap().iter().map(|n| tool(n)));
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.clone().unwrap_or_default();
        match request.name.as_ref() {
            // As a server of 2026-07-28 checks: the argument's header must be there.
            "region" => {
                let header = context
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|parts| parts.headers.get("mcp-param-region"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match header {
                    Some(region) => Ok(text(format!("region {region}"))),
                    None => Err(ErrorData::new(
                        rmcp::model::ErrorCode(-32020),
                        "the body carries region but the Mcp-Param-Region header is absent",
                        None,
                    )),
                }
            }
            "echo" => Ok(text(
                arguments
                    .get("text")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )),
            "ask" => match (&request.input_responses, &request.request_state) {
                (Some(responses), Some(state)) if state == "asked-for-a-name" => {
                    let answer = responses
                        .get("name")
                        .and_then(|r| r.get("content"))
                        .and_then(|c| c.get("answer"))
                        .and_then(|a| a.as_str())
                        .unwrap_or("nobody");
                    Ok(text(format!("hello {answer}")))
                }
                _ => {
                    let schema = ElicitationSchema::builder()
                        .required_string("answer")
                        .build()
                        .map_err(|e| ErrorData::internal_error(e, None))?;
                    let asked = InputRequest::Elicitation(ElicitRequest::new(
                        ElicitRequestParams::FormElicitationParams {
                            meta: None,
                            message: "Your name?".into(),
                            requested_schema: schema,
                        },
                    ));
                    let requests = BTreeMap::from([("name".to_owned(), asked)]);
                    Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                        Some(requests),
                        Some("asked-for-a-name".into()),
                    )))
                }
            },
            "grow" => {
                let mut extra = self.extra_tools.lock().unwrap();
                let name = format!("grown_{}", extra.len());
                extra.push(name.clone());
                let _ = self.changes.send(());
                Ok(text(name))
            }
            other => Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::default();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.seen.listens.fetch_add(1, Ordering::SeqCst);
        let mut changes = self.changes.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => {
                    if change.is_err() {
                        return Ok(());
                    }
                    let changed = ServerNotification::ToolListChangedNotification(
                        ToolListChangedNotification::default(),
                    );
                    let _ = context.sink().send(changed).await;
                }
            }
        }
    }
}

/// A running modern backend; stops when dropped.
pub struct ModernBackend {
    addr: std::net::SocketAddr,
    pub seen: Arc<Seen>,
    stop: CancellationToken,
}

impl ModernBackend {
    pub async fn start() -> Self {
        let seen = Arc::new(Seen::default());
        let (changes, _) = broadcast::channel(16);
        let handler = Modern {
            seen: seen.clone(),
            extra_tools: Arc::default(),
            changes,
        };
        let stop = CancellationToken::new();
        let service = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
        );
        let counting = seen.clone();
        let router = axum::Router::new()
            .route_service("/mcp", service)
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                let seen = counting.clone();
                async move { count(seen, request, next).await }
            }));
        let addr = super::serve_http(router, &stop).await;
        Self { addr, seen, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn initializes(&self) -> u32 {
        self.seen.initialize.load(Ordering::SeqCst)
    }

    pub fn discovers(&self) -> u32 {
        self.seen.discover.load(Ordering::SeqCst)
    }
}

impl Drop for ModernBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counts the requests by method, reading each body (small in these tests) before passing it on.
async fn count(seen: Arc<Seen>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    if let Ok(message) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        match message.get("method").and_then(|m| m.as_str()) {
            Some("initialize") => {
                seen.initialize.fetch_add(1, Ordering::SeqCst);
            }
            Some("server/discover") => {
                seen.discover.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
