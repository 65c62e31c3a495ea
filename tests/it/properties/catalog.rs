//! The merged catalog, through the real gateway and real Streamable HTTP backends.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use authful_mcp_proxy::{
    clients,
    config::{self, Backend, Separator},
    naming::{MAX_TOOL_NAME, Naming},
    server::Server,
};
use proptest::prelude::*;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, ListPromptsResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, Prompt, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
        ResourceContents, Role, ServerCapabilities, ServerConfig, Tool, object,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::support;

use super::{
    RUNTIME, cases,
    naming::{is_valid_tool_name, item_name, separator},
};

/// Tags an item with its backend, in its description and in what the backend answers.
fn tag(backend: &str, item: &str) -> String {
    format!("{backend}\u{1f}{item}")
}

/// A Streamable HTTP backend that lists given names and answers every call, prompt and read
/// with the backend's name and the name it was asked for.
#[derive(Clone)]
struct Echo(Arc<EchoItems>);

#[derive(Debug, Clone)]
struct EchoItems {
    backend: String,
    tools: Vec<String>,
    prompts: Vec<String>,
    resources: Vec<String>,
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.0.tools.iter().map(|name| {
            Tool::new(
                name.clone(),
                tag(&self.0.backend, name),
                object(json!({"type": "object"})),
            )
        });
        Ok(ListToolsResult::with_all_items(tools.collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = tag(&self.0.backend, &request.name);
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = self
            .0
            .prompts
            .iter()
            .map(|name| Prompt::new(name.clone(), Some(tag(&self.0.backend, name)), None));
        Ok(ListPromptsResult::with_all_items(prompts.collect()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, "hi")]);
        result.description = Some(tag(&self.0.backend, &request.name));
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = self
            .0
            .resources
            .iter()
            .map(|uri| Resource::new(uri.clone(), tag(&self.0.backend, uri)));
        Ok(ListResourcesResult::with_all_items(resources.collect()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let contents =
            ResourceContents::text(tag(&self.0.backend, &request.uri), request.uri.clone());
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// Starts an [`Echo`] backend on a free loopback port until `stop`.
async fn start_echo(items: EchoItems, stop: &CancellationToken) -> SocketAddr {
    let handler = Echo(Arc::new(items));
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
    );
    let router = axum::Router::new().route_service("/mcp", service);
    support::serve_http(router, stop).await
}

static GATEWAY_HTTP: LazyLock<reqwest::Client> = LazyLock::new(clients::backend);

/// Names shared by every backend, so that an unprefixed backend's names meet prefixed ones.
const SHARED_NAMES: [&str; 4] = ["search", "get", "a_b", "x-y"];

/// A backend of a generated gateway: its prefix (`None`: unprefixed) and its items.
#[derive(Debug, Clone)]
struct GenGatewayBackend {
    name: String,
    prefix: Option<String>,
    tools: Vec<String>,
    prompts: Vec<String>,
    resources: Vec<String>,
}

/// One to three backends with distinct names; each is prefixed by its name, by another
/// prefix, or not at all (`prefix: ""`; configuration allows several unprefixed backends).
fn gateway_backends() -> impl Strategy<Value = (Separator, Vec<GenGatewayBackend>)> {
    let shape = (
        separator(),
        prop::collection::btree_set("[a-z]{1,4}", 1..=3),
        prop::collection::vec(0u8..3, 3),
    );
    shape.prop_flat_map(|(sep, names, prefix_kinds)| {
        let heads: Vec<(String, Option<String>)> = names
            .into_iter()
            .zip(prefix_kinds)
            .map(|(name, kind)| {
                let prefix = match kind {
                    0 => None,
                    1 => Some(format!("{name}9")),
                    _ => Some(name.clone()),
                };
                (name, prefix)
            })
            .collect();
        // Names that collide on purpose: another backend's exposed names, for the unprefixed.
        let exposed_elsewhere: Vec<String> = heads
            .iter()
            .filter_map(|(_, p)| p.clone())
            .flat_map(|p| {
                SHARED_NAMES
                    .iter()
                    .map(move |n| format!("{p}{}{n}", sep.as_str()))
            })
            .collect();
        let uris_elsewhere: Vec<String> = heads
            .iter()
            .filter_map(|(_, p)| p.clone())
            .map(|p| format!("{p}+mem://x"))
            .collect();
        let backends: Vec<_> = heads
            .into_iter()
            .map(|(name, prefix)| {
                let mut name_pool: Vec<String> =
                    SHARED_NAMES.iter().map(|s| (*s).to_owned()).collect();
                if prefix.is_none() {
                    name_pool.extend(exposed_elsewhere.iter().cloned());
                }
                let mut uri_pool = vec!["mem://x".to_owned(), "file:///a+b".to_owned()];
                if prefix.is_none() {
                    uri_pool.extend(uris_elsewhere.iter().cloned());
                }
                let names = prop_oneof![
                    3 => prop::sample::select(name_pool),
                    2 => item_name(),
                ];
                let uris = prop_oneof![
                    2 => prop::sample::select(uri_pool),
                    1 => "[a-z+]{1,6}:[a-z/+]{0,8}",
                    1 => any::<String>(),
                ];
                (
                    Just(name),
                    Just(prefix),
                    prop::collection::vec(names.clone(), 0..6),
                    prop::collection::vec(names, 0..4),
                    prop::collection::vec(uris, 0..4),
                    any::<bool>(),
                )
                    .prop_map(
                        move |(name, prefix, tools, prompts, resources, shadow)| {
                            let mut backend = GenGatewayBackend {
                                name,
                                prefix,
                                tools: dedup(tools),
                                prompts: dedup(prompts),
                                resources: dedup(resources),
                            };
                            if shadow {
                                add_shadows(&mut backend, sep);
                            }
                            backend
                        },
                    )
            })
            .collect();
        (Just(sep), backends)
    })
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// For each tool whose exposed name is shortened, also lists the tool whose own exposed name
/// is exactly that shortened name: two tools of one backend that the naming maps to one name.
fn add_shadows(backend: &mut GenGatewayBackend, separator: Separator) {
    let n = Naming::new(&backend.name, backend.prefix.as_deref(), separator.as_str());
    let head = match &backend.prefix {
        Some(p) => format!("{p}{}", separator.as_str()),
        None => String::new(),
    };
    let shadows: Vec<String> = backend
        .tools
        .iter()
        .filter(|t| n.prefixed(t).len() > MAX_TOOL_NAME)
        .filter_map(|t| n.tool(t).ok()?.strip_prefix(&head).map(str::to_owned))
        .collect();
    for s in shadows {
        if !backend.tools.contains(&s) {
            backend.tools.push(s);
        }
    }
}

/// What a client sees of the gateway: each kind's listed names and their sources.
struct Seen {
    tools: Vec<(String, String)>,
    prompts: Vec<(String, String)>,
    resources: Vec<(String, String)>,
    /// For every listed name: what the call, prompt or read answered.
    answers: HashMap<(char, String), String>,
}

fn text_of(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("<missing>")
        .to_owned()
}

/// Runs the real server in gateway mode over an in-memory pipe in front of `backends` (also a
/// single unprefixed one, which the proxy would serve as the drop-in instead), lists every
/// kind and uses every listed item once.
async fn observe(separator: Separator, backends: &[GenGatewayBackend]) -> Seen {
    let stop = CancellationToken::new();
    let mut configured = Vec::new();
    for b in backends {
        let items = EchoItems {
            backend: b.name.clone(),
            tools: b.tools.clone(),
            prompts: b.prompts.clone(),
            resources: b.resources.clone(),
        };
        let addr = start_echo(items, &stop).await;
        let url = Url::parse(&format!("http://{addr}/mcp")).unwrap();
        configured.push(Backend::new(&b.name, url, None, b.prefix.as_deref()));
    }
    let settings = config::Gateway {
        name: "properties".into(),
        separator,
        startup_timeout: Duration::from_secs(10),
        // Each case lists its backends afresh: the cache directory is shared by every case
        // (and a port may serve another case's backend), so nothing is remembered.
        remember_lists: false,
        ..config::Gateway::default()
    };
    // No logins here; one HTTP client for every case (building one reads the system's
    // certificates, which costs more than the rest of a case).
    let settings = config::Settings {
        cache_dir: std::env::temp_dir(),
        backends: configured,
        mode: config::Mode::Gateway,
        gateway: settings,
    };
    let gateway = Server::new(&settings, |_| None, GATEWAY_HTTP.clone());
    let (client_side, gateway_side) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let closer = gateway.closer();
        if let Ok(running) = gateway.serve(tokio::io::split(gateway_side)).await {
            let _ = running.waiting().await;
        }
        closer.close().await;
    });
    let client = ().serve(tokio::io::split(client_side)).await.unwrap();
    let source = |v: &Value, field: &str| (text_of(v, field), text_of(v, "/description"));
    let tools: Vec<(String, String)> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| source(&serde_json::to_value(t).unwrap(), "/name"))
        .collect();
    let prompts: Vec<(String, String)> = client
        .list_all_prompts()
        .await
        .unwrap()
        .iter()
        .map(|p| source(&serde_json::to_value(p).unwrap(), "/name"))
        .collect();
    let resources: Vec<(String, String)> = client
        .list_all_resources()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let r = serde_json::to_value(r).unwrap();
            (text_of(&r, "/uri"), text_of(&r, "/name"))
        })
        .collect();
    let mut answers = HashMap::new();
    for (name, _) in &tools {
        let params: CallToolRequestParams = serde_json::from_value(json!({"name": name})).unwrap();
        let answer = match client.call_tool(params).await {
            Ok(result) => text_of(&serde_json::to_value(result).unwrap(), "/content/0/text"),
            Err(e) => format!("error: {e}"),
        };
        answers.insert(('t', name.clone()), answer);
    }
    for (name, _) in &prompts {
        let params: GetPromptRequestParams = serde_json::from_value(json!({"name": name})).unwrap();
        let answer = match client.get_prompt(params).await {
            Ok(result) => text_of(&serde_json::to_value(result).unwrap(), "/description"),
            Err(e) => format!("error: {e}"),
        };
        answers.insert(('p', name.clone()), answer);
    }
    for (uri, _) in &resources {
        let params: ReadResourceRequestParams =
            serde_json::from_value(json!({"uri": uri})).unwrap();
        let answer = match client.read_resource(params).await {
            Ok(result) => text_of(&serde_json::to_value(result).unwrap(), "/contents/0/text"),
            Err(e) => format!("error: {e}"),
        };
        answers.insert(('r', uri.clone()), answer);
    }
    let _ = client.cancel().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    stop.cancel();
    Seen {
        tools,
        prompts,
        resources,
        answers,
    }
}

/// The exposed name of an item of the backend at an index (given every backend's naming), if
/// it has one.
type Expose<'a> = &'a dyn Fn(&[Naming], usize, &str) -> Option<String>;

/// The backend that serves an exposed URI, as the README states it: the prefixed backend whose
/// `{prefix}+` starts it, otherwise the first unprefixed one.
fn uri_owner(namings: &[Naming], exposed: &str) -> Option<usize> {
    let prefixed = namings
        .iter()
        .position(|n| n.prefix.is_some() && n.original_uri(exposed).is_some());
    prefixed.or_else(|| namings.iter().position(|n| n.prefix.is_none()))
}

/// Checks one kind: listed names are unique; each answers from the very item that listed it,
/// under the name its backend's naming gives that item; and every item that is not listed
/// lost its name to one listed before it (earlier backend, or earlier in its own list).
/// `kind` is `t` (tools), `p` (prompts) or `r` (resources).
fn check_kind(
    kind: char,
    separator: Separator,
    backends: &[GenGatewayBackend],
    seen: &Seen,
    expose: Expose<'_>,
) -> Result<(), TestCaseError> {
    let (items, listed): (fn(&GenGatewayBackend) -> &Vec<String>, _) = match kind {
        't' => (|b| &b.tools, &seen.tools),
        'p' => (|b| &b.prompts, &seen.prompts),
        _ => (|b| &b.resources, &seen.resources),
    };
    let answers = &seen.answers;
    let mut names = BTreeSet::new();
    for (name, _) in listed {
        prop_assert!(
            names.insert(name.clone()),
            "{kind}: '{name}' listed twice: {listed:?}"
        );
    }
    // As the gateway names them: an unprefixed backend knows the others' prefixes.
    let prefixes: Vec<String> = backends.iter().filter_map(|b| b.prefix.clone()).collect();
    let namings: Vec<Naming> = backends
        .iter()
        .map(|b| {
            let mut naming = Naming::new(&b.name, b.prefix.as_deref(), separator.as_str());
            if b.prefix.is_none() {
                naming.others = prefixes.clone();
            }
            naming
        })
        .collect();
    // Every listed item answers from its own source, under its own name.
    for (name, source) in listed {
        let answer = &answers[&(kind, name.clone())];
        prop_assert_eq!(
            answer,
            source,
            "{}: '{}' answered from elsewhere",
            kind,
            name
        );
        let (backend, item) = source.split_once('\u{1f}').unwrap();
        let slot = backends.iter().position(|b| b.name == backend).unwrap();
        prop_assert!(items(&backends[slot]).iter().any(|i| i == item));
        let exposed = expose(&namings, slot, item);
        prop_assert_eq!(exposed.as_deref(), Some(name.as_str()));
    }
    // Every item left out has a name that is taken, by an item listed before it.
    let listed_sources: BTreeSet<&String> = listed.iter().map(|(_, s)| s).collect();
    let mut before: Vec<(String, String)> = Vec::new();
    for (slot, backend) in backends.iter().enumerate() {
        for item in items(backend) {
            let source = tag(&backend.name, item);
            let Some(exposed) = expose(&namings, slot, item) else {
                prop_assert!(
                    !listed_sources.contains(&source),
                    "{kind}: {source:?} listed"
                );
                continue;
            };
            if !listed_sources.contains(&source) {
                let winner = listed.iter().find(|(n, _)| *n == exposed);
                prop_assert!(
                    winner.is_some_and(|(_, s)| before.iter().any(|(_, b)| b == s)),
                    "{kind}: {source:?} (as '{exposed}') is missing, and no earlier item holds \
                     that name: {listed:?}"
                );
            }
            before.push((exposed, source));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(32))]

    /// 32 cases (each starts one to three HTTP backends and the gateway, lists, and calls
    /// every listed tool, prompt and resource): the merged catalog exposes each name once;
    /// every exposed name routes back to exactly the backend item that listed it; tool names
    /// are valid; an item is left out only when its name is invalid, poses as another
    /// backend's, or an earlier item holds it. The generated names collide on purpose: an unprefixed backend beside prefixed
    /// ones, shared names, `prefix+` URIs, long names next to the 64-character name their
    /// shortening gives.
    #[test]
    fn catalog_exposes_each_name_once_and_routes_it_home(
        (separator, backends) in gateway_backends(),
    ) {
        let seen = RUNTIME.block_on(observe(separator, &backends));
        for (name, _) in &seen.tools {
            prop_assert!(is_valid_tool_name(name), "{name:?}");
        }
        // An unprefixed backend's name that poses as a prefixed backend's is left out too.
        let own = |n: &[Naming], i: usize, exposed: String| {
            n[i].poses_as(&exposed).is_none().then_some(exposed)
        };
        check_kind('t', separator, &backends, &seen, &|n, i, item| {
            own(n, i, n[i].tool(item).ok()?)
        })?;
        check_kind('p', separator, &backends, &seen, &|n, i, item| own(n, i, n[i].prompt(item)))?;
        // A resource is listed only where reading it leads.
        let uri: Expose<'_> = &|n, i, item| {
            let exposed = n[i].uri(item);
            (uri_owner(n, &exposed) == Some(i)).then_some(exposed)
        };
        check_kind('r', separator, &backends, &seen, uri)?;
    }
}
