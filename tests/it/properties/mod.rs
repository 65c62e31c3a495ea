//! Property tests (proptest) for the parts that take untrusted or hand-written input: `${VAR}`
//! interpolation, configuration parsing and `validate`, the gateway's naming (prefixes, URIs,
//! the 64-character rule) and merged catalog, glob filters, and the login callback's query.
//!
//! Each property states its case count; the counts are set explicitly (`cases(N)`), so
//! `PROPTEST_CASES` does not change them. Failures are not persisted to a regression file:
//! a minimal failing case found here becomes a unit test in the module that owns the code.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use authful_mcp_proxy::{
    auth::{AuthError, callback::CallbackServer},
    clients,
    config::{
        self, Backend, Format, Separator, Settings, Sources,
        interpolate::{Malformed, expand},
        validate,
    },
    gateway::Gateway,
    glob::Glob,
    naming::{MAX_TOOL_NAME, Naming},
};
use axum::serve::ListenerExt;
use proptest::{prelude::*, sample::Index};
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
use serde_yaml::{Mapping, Value as Yaml};
use tokio_util::sync::CancellationToken;
use url::Url;

/// `cases` cases, no regression file (see the module comment).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// One runtime for the properties that need sockets; `block_on` from several test threads at
/// once is fine on a multi-thread runtime.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

// ---------------------------------------------------------------------------------------------
// 1. `${VAR}` interpolation
// ---------------------------------------------------------------------------------------------

/// Variable names of the generated environments: a small pool, so references hit set, empty
/// and unset variables alike.
const VAR_NAMES: [&str; 5] = ["A", "TEAM", "_X", "V1", "HOME_DIR"];

/// A generated environment: each pool variable unset, empty, or set to any text (which may
/// itself look like a reference: values are never expanded again).
fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![
        Just(String::new()),
        any::<String>(),
        "\\$\\{[A-Z_]{1,4}(:-[a-z]{0,3})?\\}.{0,4}",
        "[a-z$]{0,4}\\$\\$[a-z]{0,4}",
    ];
    prop::collection::btree_map(prop::sample::select(VAR_NAMES.to_vec()), value, 0..=5)
        .prop_map(|env| env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// One piece of a template, with the text it must expand to.
#[derive(Debug, Clone)]
enum Piece {
    /// Text without `$`.
    Text(String),
    /// `$$`.
    Dollars,
    /// `$` and a character that is neither `$` nor `{`: kept as it is.
    Lone(char),
    /// `${NAME}` or `${NAME:-default}`; the default has no `}`.
    Ref {
        name: String,
        default: Option<String>,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => "[^$]{0,8}".prop_map(Piece::Text),
        1 => Just(Piece::Dollars),
        1 => any::<char>()
            .prop_filter("not $ or {", |c| *c != '$' && *c != '{')
            .prop_map(Piece::Lone),
        3 => (
            prop_oneof![
                prop::sample::select(VAR_NAMES.to_vec()).prop_map(str::to_owned),
                "[A-Za-z_][A-Za-z0-9_]{0,6}",
            ],
            prop::option::of("[^}]{0,8}"),
        )
            .prop_map(|(name, default)| Piece::Ref { name, default }),
    ]
}

/// The template `pieces` spell, and what it must expand to under `env`: the text, the unset
/// variables without default, and whether there was a reference.
fn model(pieces: &[Piece], env: &BTreeMap<String, String>) -> (String, String, Vec<String>, bool) {
    let (mut template, mut text, mut unset, mut had_refs) =
        (String::new(), String::new(), Vec::new(), false);
    for piece in pieces {
        match piece {
            Piece::Text(t) => {
                template.push_str(t);
                text.push_str(t);
            }
            Piece::Dollars => {
                template.push_str("$$");
                text.push('$');
            }
            Piece::Lone(c) => {
                template.push('$');
                template.push(*c);
                text.push('$');
                text.push(*c);
            }
            Piece::Ref { name, default } => {
                had_refs = true;
                match default {
                    Some(d) => template.push_str(&format!("${{{name}:-{d}}}")),
                    None => template.push_str(&format!("${{{name}}}")),
                }
                match (env.get(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => text.push_str(d),
                    (Some(v), _) => text.push_str(v),
                    (None, Some(d)) => text.push_str(d),
                    (None, None) => unset.push(name.clone()),
                }
            }
        }
    }
    (template, text, unset, had_refs)
}

fn lookup(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.get(name).cloned()
}

/// A reference that cannot be expanded, starting at `${`.
fn malformed() -> impl Strategy<Value = String> {
    prop_oneof![
        // Unterminated: no `}` anywhere after it.
        "[^}]{0,10}".prop_map(|rest| format!("${{{rest}")),
        Just("${}".to_owned()),
        ":-[^}]{0,5}".prop_map(|d| format!("${{{d}}}")),
        // A name starting with a digit.
        "[0-9][A-Za-z0-9_]{0,5}".prop_map(|n| format!("${{{n}}}")),
        // A name with a character outside [A-Za-z0-9_] (but not the start of `:-`).
        "[A-Za-z_][A-Za-z0-9_]{0,3}[^A-Za-z0-9_}:][^}]{0,4}".prop_map(|n| format!("${{{n}}}")),
        // A modifier other than `:-`.
        "[A-Z]{1,3}:[^-}][^}]{0,3}".prop_map(|n| format!("${{{n}}}")),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    /// 1000 cases: text without `$` comes out unchanged, without references.
    #[test]
    fn text_without_dollar_is_unchanged(text in "[^$]*", env in environment()) {
        let expanded = expand(&text, &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, text);
        prop_assert!(expanded.unset.is_empty());
        prop_assert!(!expanded.had_references);
    }

    /// 1000 cases: without `{`, nothing is a reference: `$$` is a literal `$` (read left to
    /// right) and every other `$` stays as it is.
    #[test]
    fn double_dollar_is_a_literal_dollar(text in "[^{]*", env in environment()) {
        let expanded = expand(&text, &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, text.replace("$$", "$"));
        prop_assert!(!expanded.had_references);
    }

    /// 1000 cases: a template of text, `$$`, lone `$`s and references (set, empty and unset
    /// variables, with and without default) expands exactly as documented: the value as it
    /// is (never expanded again), the default when unset or empty, nothing (reported) when
    /// unset without default.
    #[test]
    fn templates_expand_as_documented(
        pieces in prop::collection::vec(piece(), 0..8),
        env in environment(),
    ) {
        let (template, text, unset, had_refs) = model(&pieces, &env);
        let expanded = expand(&template, &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, text);
        prop_assert_eq!(expanded.unset, unset);
        prop_assert_eq!(expanded.had_references, had_refs);
    }

    /// 1000 cases: `${NAME}` is the variable's value verbatim, whatever it contains.
    #[test]
    fn values_are_not_expanded_again(
        value in prop_oneof![any::<String>(), ".*\\$\\{[A-Z]{1,3}\\}.*", ".*\\$\\$.*"],
        before in "[^$]{0,5}",
        after in "[^$]{0,5}",
    ) {
        let env = BTreeMap::from([("TEAM".to_owned(), value.clone())]);
        let expanded = expand(&format!("{before}${{TEAM}}{after}"), &lookup(&env)).unwrap();
        prop_assert_eq!(expanded.text, format!("{before}{value}{after}"));
    }

    /// 1000 cases: `${NAME:-default}` is the default when the variable is unset or empty
    /// (README: "the default applies when VAR is unset or empty"), and the value otherwise.
    #[test]
    fn defaults_apply_when_unset_or_empty(
        default in "[^}]*",
        value in prop::option::of(any::<String>()),
    ) {
        let env: BTreeMap<String, String> =
            value.iter().map(|v| ("TEAM".to_owned(), v.clone())).collect();
        let expanded = expand(&format!("${{TEAM:-{default}}}"), &lookup(&env)).unwrap();
        let expected = match value {
            Some(v) if !v.is_empty() => v,
            _ => default,
        };
        prop_assert_eq!(expanded.text, expected);
        prop_assert!(expanded.unset.is_empty());
    }

    /// 1000 cases: a malformed reference (`${` unterminated, `${}`, `${1A}`, bad characters,
    /// another modifier) after any text without `$` is an error, whatever follows it.
    #[test]
    fn malformed_references_are_errors(
        before in "[^$]{0,6}",
        reference in malformed(),
        after in ".{0,6}",
        env in environment(),
    ) {
        // An unterminated reference must stay unterminated: nothing after it.
        let after = if reference.ends_with('}') { after } else { String::new() };
        let result = expand(&format!("{before}{reference}{after}"), &lookup(&env));
        prop_assert!(result.is_err(), "{reference:?} gave {result:?}");
    }

    /// 1000 cases: any text at all (and text made of the grammar's own characters, to reach
    /// its corners) expands or fails with a [`Malformed`], never panics; failing needs `${`.
    #[test]
    fn expansion_never_panics(
        text in prop_oneof![any::<String>(), "[${}:\\-A-Z_0-9a ]{0,24}"],
        env in environment(),
    ) {
        match expand(&text, &lookup(&env)) {
            Ok(expanded) => {
                for name in &expanded.unset {
                    let reference = format!("${{{name}");
                    prop_assert!(text.contains(&reference));
                }
            }
            Err(reason) => {
                prop_assert!(text.contains("${"), "{text:?}: {reason}");
                let known = matches!(
                    reason,
                    Malformed::Unclosed | Malformed::EmptyName | Malformed::BadReference(_)
                );
                prop_assert!(known);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Configuration: parsing, `validate`, and the start-up path (file → layers → Settings)
// ---------------------------------------------------------------------------------------------

/// A variable that no environment sets: references to it must carry a default.
const UNSET_VAR: &str = "AUTHFUL_PROPTEST_NEVER_SET";

fn no_env(_: &str) -> Option<String> {
    None
}

/// Checks `text` the way `authful-mcp-proxy validate` does (strict or not).
fn check(text: &str, strict: bool) -> validate::Checked {
    let options = validate::Options {
        strict,
        env: &no_env,
    };
    validate::check_text("c.yaml", text, &options)
}

/// The start-up path on a file holding `text`: the file checked, then every layer merged
/// (resolving is the caller's next step).
fn start_up(text: &str) -> Result<config::Config, config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let sources = Sources {
        file: Some(path),
        ..Sources::default()
    };
    sources.load()
}

/// Invariants of any check result: positions inside the text, `value` iff no errors, every
/// format renders.
fn check_invariants(text: &str, checked: &validate::Checked) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    for d in &checked.diagnostics.items {
        if let Some(line) = d.line {
            prop_assert!(line >= 1 && line <= lines + 1, "{d:?} in {lines} lines");
        }
        if let Some(column) = d.column {
            prop_assert!(column >= 1, "{d:?}");
        }
    }
    prop_assert_eq!(
        checked.value.is_some(),
        !checked.diagnostics.has_errors(),
        "{:?}",
        checked.diagnostics
    );
    let json: Value = serde_json::from_str(&checked.diagnostics.render(Format::Json)).unwrap();
    prop_assert_eq!(
        json.as_array().map(Vec::len),
        Some(checked.diagnostics.items.len())
    );
    let _ = checked.diagnostics.render(Format::Human);
    let _ = checked.diagnostics.render(Format::Github);
    Ok(())
}

/// When `validate --strict` finds no problem, the proxy starts on the file: loading and
/// resolving succeed. When plain `validate` finds errors, loading fails with those diagnostics
/// (the same check runs). In between (unset variables without default, only warnings), the
/// file loads, and resolving may fail: an empty value where a URL is needed, say.
fn start_up_agrees_with_validate(text: &str) -> Result<Option<Settings>, TestCaseError> {
    let checked = check(text, false);
    check_invariants(text, &checked)?;
    // `--strict` differs only in turning the unset-variable warnings into errors.
    let strict_accepts = checked.diagnostics.warning_count() == 0 || {
        let strict = check(text, true);
        check_invariants(text, &strict)?;
        strict.value.is_some()
    };
    let loaded = start_up(text);
    match (checked.value.is_some(), loaded) {
        (true, Ok(config)) => match config.resolve() {
            Ok(settings) => Ok(Some(settings)),
            Err(_) if !strict_accepts => Ok(None),
            Err(e) => Err(TestCaseError::fail(format!(
                "validate --strict accepted the file, but it does not resolve: {e}\n---\n{text}"
            ))),
        },
        (true, Err(e)) => Err(TestCaseError::fail(format!(
            "validate accepted the file, but it does not load: {e}\n---\n{text}"
        ))),
        (false, Err(config::ConfigError::Diagnostics(d))) => {
            prop_assert_eq!(d.items.len(), checked.diagnostics.items.len());
            Ok(None)
        }
        (false, other) => Err(TestCaseError::fail(format!(
            "validate refused the file ({:?}), but loading gave {other:?}",
            checked.diagnostics.items
        ))),
    }
}

#[derive(Debug, Clone)]
struct GenProfile {
    issuer_url: String,
    client_id: Yaml,
    client_secret: Option<String>,
    scopes: Option<Yaml>,
    redirect_url: Option<String>,
    login_timeout: Option<u64>,
}

#[derive(Debug, Clone)]
enum GenPrefix {
    /// No `prefix` key: the backend's name.
    Default,
    /// `prefix: ""`.
    Unprefixed,
    /// `prefix: NAME0` (a digit, so it is never another backend's name).
    Explicit,
}

#[derive(Debug, Clone)]
struct GenBackend {
    url: String,
    /// Index into the profiles (modulo their number); `None` for no login.
    profile: Option<Index>,
    prefix: GenPrefix,
    enabled: Option<bool>,
    allow: Vec<String>,
    deny: Vec<String>,
    headers: BTreeMap<String, String>,
    request_timeout: Option<u64>,
    /// Write the URL as `${UNSET:-url}`.
    url_via_default: bool,
}

#[derive(Debug, Clone)]
struct GenConfig {
    profiles: BTreeMap<String, GenProfile>,
    backends: BTreeMap<String, GenBackend>,
    separator: Option<&'static str>,
    gateway_name: Option<String>,
    startup_timeout: Option<u64>,
    cache_dir: Option<String>,
}

fn loopback() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "localhost",
        "127.0.0.1",
        "[::1]",
        "LOCALHOST",
        "127.1.2.3",
    ])
}

fn endpoint_url() -> impl Strategy<Value = String> {
    prop_oneof![
        ("[a-z][a-z0-9]{0,7}", "[a-z0-9/._-]{0,12}")
            .prop_map(|(h, p)| format!("https://{h}.example.com/{p}")),
        (loopback(), 1024u16.., "[a-z0-9/]{0,8}")
            .prop_map(|(h, port, p)| format!("http://{h}:{port}/{p}")),
        (loopback(), "[a-z0-9/]{0,8}").prop_map(|(h, p)| format!("https://{h}/{p}")),
    ]
}

fn profile() -> impl Strategy<Value = GenProfile> {
    let client_id = prop_oneof![
        "[A-Za-z0-9_-]{1,12}".prop_map(Yaml::String),
        any::<u32>().prop_map(|n| Yaml::Number(n.into())),
    ];
    let scopes = prop_oneof![
        "[a-z:]{1,6}( [a-z:]{1,6}){0,2}".prop_map(Yaml::String),
        prop::collection::vec("[a-z:.]{1,6}".prop_map(Yaml::String), 0..3).prop_map(Yaml::Sequence),
    ];
    let redirect = (loopback(), 1024u16.., "[a-z/]{0,10}")
        .prop_map(|(h, port, p)| format!("http://{h}:{port}/{p}"));
    (
        endpoint_url(),
        client_id,
        prop::option::of("[ -~]{0,12}"),
        prop::option::of(scopes),
        prop::option::of(redirect),
        prop::option::of(0u64..100_000),
    )
        .prop_map(
            |(issuer_url, client_id, client_secret, scopes, redirect_url, login_timeout)| {
                GenProfile {
                    issuer_url,
                    client_id,
                    client_secret,
                    scopes,
                    redirect_url,
                    login_timeout,
                }
            },
        )
}

fn glob() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_*?]{1,8}",
        "[a-z]{0,3}\\[[a-z0-9!-]{1,4}\\][a-z*]{0,3}"
    ]
    .prop_filter("a valid glob", |g| Glob::new(g).is_ok())
}

fn backend() -> impl Strategy<Value = GenBackend> {
    (
        endpoint_url(),
        prop::option::of(any::<Index>()),
        prop_oneof![
            Just(GenPrefix::Default),
            Just(GenPrefix::Unprefixed),
            Just(GenPrefix::Explicit)
        ],
        prop::option::of(any::<bool>()),
        prop::collection::vec(glob(), 0..3),
        prop::collection::vec(glob(), 0..3),
        prop::collection::btree_map("X-[A-Z][a-z]{0,6}", "[ -~]{0,16}", 0..3),
        prop::option::of(0u64..1000),
        any::<bool>(),
    )
        .prop_map(
            |(url, profile, prefix, enabled, allow, deny, headers, request_timeout, via)| {
                GenBackend {
                    url,
                    profile,
                    prefix,
                    enabled,
                    allow,
                    deny,
                    headers,
                    request_timeout,
                    url_via_default: via,
                }
            },
        )
}

/// A configuration that is valid by construction.
fn valid_config() -> impl Strategy<Value = GenConfig> {
    let name = || prop_oneof![1 => Just("default".to_owned()), 4 => "[a-z]{1,6}"];
    (
        prop::collection::btree_map(name(), profile(), 0..3),
        prop::collection::btree_map(name(), backend(), 1..5),
        prop::option::of(prop::sample::select(vec!["_", "__", "-"])),
        prop::option::of("[ -~]{0,12}"),
        prop::option::of(0u64..60),
        prop::option::of("(~/)?[a-z/]{1,12}"),
    )
        .prop_map(
            |(mut profiles, mut backends, separator, gateway_name, startup_timeout, cache_dir)| {
                // Each provider gets a redirect URL of its own (`validate` warns otherwise).
                let mut taken: Vec<String> = Vec::new();
                for (i, profile) in profiles.values_mut().enumerate() {
                    let effective = profile
                        .redirect_url
                        .clone()
                        .unwrap_or_else(|| "http://localhost:8080/auth/callback".into());
                    if taken.contains(&effective) {
                        profile.redirect_url = Some(format!("http://127.0.0.1:{}/cb", 9000 + i));
                    }
                    taken.push(profile.redirect_url.clone().unwrap_or(effective));
                }
                if backends.values().all(|b| b.enabled == Some(false))
                    && let Some(first) = backends.values_mut().next()
                {
                    first.enabled = None;
                }
                GenConfig {
                    profiles,
                    backends,
                    separator,
                    gateway_name,
                    startup_timeout,
                    cache_dir,
                }
            },
        )
}

/// A string value as written in the file: `$` escaped, so it reads back as itself.
fn text_value(text: &str) -> Yaml {
    Yaml::String(text.replace('$', "$$"))
}

fn key(text: &str) -> Yaml {
    Yaml::String(text.to_owned())
}

impl GenConfig {
    fn profile_of(&self, backend: &GenBackend) -> Option<&str> {
        let names: Vec<&String> = self.profiles.keys().collect();
        let index = backend.profile.as_ref()?;
        (!names.is_empty()).then(|| names[index.index(names.len())].as_str())
    }

    fn to_yaml(&self) -> Yaml {
        let mut root = Mapping::new();
        if let Some(dir) = &self.cache_dir {
            root.insert(key("cache_dir"), text_value(dir));
        }
        if !self.profiles.is_empty() {
            let mut profiles = Mapping::new();
            for (name, p) in &self.profiles {
                let mut m = Mapping::new();
                m.insert(key("issuer_url"), text_value(&p.issuer_url));
                m.insert(key("client_id"), p.client_id.clone());
                if let Some(s) = &p.client_secret {
                    m.insert(key("client_secret"), text_value(s));
                }
                if let Some(s) = &p.scopes {
                    m.insert(key("scopes"), s.clone());
                }
                if let Some(r) = &p.redirect_url {
                    m.insert(key("redirect_url"), text_value(r));
                }
                if let Some(t) = p.login_timeout {
                    m.insert(key("login_timeout"), Yaml::Number(t.into()));
                }
                profiles.insert(key(name), Yaml::Mapping(m));
            }
            root.insert(key("oidc_profiles"), Yaml::Mapping(profiles));
        }
        let mut backends = Mapping::new();
        for (name, b) in &self.backends {
            let mut m = Mapping::new();
            let url = if b.url_via_default {
                // The default is literal text up to the first `}`: no escaping inside.
                Yaml::String(format!("${{{UNSET_VAR}:-{}}}", b.url))
            } else {
                text_value(&b.url)
            };
            m.insert(key("url"), url);
            if let Some(p) = self.profile_of(b) {
                m.insert(key("oidc_profile"), text_value(p));
            }
            match b.prefix {
                GenPrefix::Default => {}
                GenPrefix::Unprefixed => {
                    m.insert(key("prefix"), text_value(""));
                }
                GenPrefix::Explicit => {
                    m.insert(key("prefix"), text_value(&format!("{name}0")));
                }
            }
            if let Some(e) = b.enabled {
                m.insert(key("enabled"), Yaml::Bool(e));
            }
            let mut tools = Mapping::new();
            for (kind, list) in [("allow", &b.allow), ("deny", &b.deny)] {
                if !list.is_empty() {
                    let list = list.iter().map(|g| text_value(g)).collect();
                    tools.insert(key(kind), Yaml::Sequence(list));
                }
            }
            if !tools.is_empty() {
                m.insert(key("tools"), Yaml::Mapping(tools));
            }
            if !b.headers.is_empty() {
                let headers = b
                    .headers
                    .iter()
                    .map(|(k, v)| (key(k), text_value(v)))
                    .collect();
                m.insert(key("headers"), Yaml::Mapping(headers));
            }
            if let Some(t) = b.request_timeout {
                m.insert(key("request_timeout"), Yaml::Number(t.into()));
            }
            backends.insert(key(name), Yaml::Mapping(m));
        }
        root.insert(key("backends"), Yaml::Mapping(backends));
        let mut gateway = Mapping::new();
        if let Some(s) = self.separator {
            gateway.insert(key("separator"), text_value(s));
        }
        if let Some(n) = &self.gateway_name {
            gateway.insert(key("name"), text_value(n));
        }
        if let Some(t) = self.startup_timeout {
            gateway.insert(key("startup_timeout"), Yaml::Number(t.into()));
        }
        if !gateway.is_empty() {
            root.insert(key("gateway"), Yaml::Mapping(gateway));
        }
        Yaml::Mapping(root)
    }

    /// The settings this configuration must resolve to, compared field by field.
    fn assert_resolved(&self, settings: &Settings) -> Result<(), TestCaseError> {
        let enabled: Vec<(&String, &GenBackend)> = self
            .backends
            .iter()
            .filter(|(_, b)| b.enabled != Some(false))
            .collect();
        let names: Vec<&str> = settings.backends.iter().map(|b| b.name.as_str()).collect();
        let expected: Vec<&str> = enabled.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(names, expected);
        let only_one = self.backends.len() == 1;
        for ((name, spec), backend) in enabled.iter().zip(&settings.backends) {
            prop_assert_eq!(&backend.url, &Url::parse(&spec.url).unwrap());
            let prefix = match spec.prefix {
                GenPrefix::Default if only_one && name.as_str() == "default" => None,
                GenPrefix::Default => Some(name.to_string()),
                GenPrefix::Unprefixed => None,
                GenPrefix::Explicit => Some(format!("{name}0")),
            };
            prop_assert_eq!(&backend.prefix, &prefix);
            let headers: Vec<(String, String)> = spec.headers.clone().into_iter().collect();
            let resolved: Vec<(String, String)> = backend
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect();
            prop_assert_eq!(&resolved, &headers);
            prop_assert_eq!(backend.tools.allow.len(), spec.allow.len());
            prop_assert_eq!(backend.tools.deny.len(), spec.deny.len());
            let timeout = spec.request_timeout.unwrap_or(300);
            prop_assert_eq!(
                backend.request_timeout,
                (timeout > 0).then(|| Duration::from_secs(timeout))
            );
            let profile_name = self.profile_of(spec);
            prop_assert_eq!(
                backend.profile.as_ref().map(|p| p.name.as_str()),
                profile_name
            );
            if let (Some(profile), Some(name)) = (&backend.profile, profile_name) {
                let spec = &self.profiles[name];
                prop_assert_eq!(&profile.issuer_url, &spec.issuer_url);
                let client_id = match &spec.client_id {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                prop_assert_eq!(&profile.client_id, &client_id);
                prop_assert_eq!(
                    profile
                        .client_secret
                        .as_ref()
                        .map(|s| s.expose().to_owned()),
                    spec.client_secret.clone().filter(|s| !s.is_empty())
                );
                prop_assert_eq!(profile.scopes.first().map(String::as_str), Some("openid"));
                let redirect = spec
                    .redirect_url
                    .as_deref()
                    .unwrap_or(config::DEFAULT_REDIRECT_URL);
                prop_assert_eq!(&profile.redirect_url, &Url::parse(redirect).unwrap());
                prop_assert_eq!(
                    profile.login_timeout,
                    Duration::from_secs(spec.login_timeout.unwrap_or(300))
                );
            }
        }
        let separator = match self.separator {
            None | Some("_") => Separator::Underscore,
            Some("__") => Separator::DoubleUnderscore,
            Some(_) => Separator::Dash,
        };
        prop_assert_eq!(settings.gateway.separator, separator);
        prop_assert_eq!(
            &settings.gateway.name,
            self.gateway_name.as_deref().unwrap_or("authful-mcp-proxy")
        );
        Ok(())
    }
}

/// Keys a mutation may set, valid or not, in a backend, a profile, the gateway or the top.
const BACKEND_KEYS: [&str; 10] = [
    "url",
    "oidc_profile",
    "prefix",
    "enabled",
    "headers",
    "tools",
    "request_timeout",
    "ulr",
    "prefix",
    "url",
];
const PROFILE_KEYS: [&str; 8] = [
    "issuer_url",
    "client_id",
    "client_secret",
    "scopes",
    "redirect_url",
    "login_timeout",
    "clientid",
    "redirect_url",
];
const GATEWAY_KEYS: [&str; 8] = [
    "name",
    "separator",
    "startup_timeout",
    "request_timeout",
    "first_list_timeout",
    "max_name_length",
    "fallback_tools",
    "x",
];
const TOP_KEYS: [&str; 6] = [
    "cache_dir",
    "oidc_profiles",
    "backends",
    "gateway",
    "backend",
    "backends",
];

/// Values that break one rule or another.
const NASTY: [&str; 34] = [
    "",
    " ",
    "not a url",
    "ftp://example.com/mcp",
    "http://example.com/mcp",
    "https://",
    "http://localhost/cb",
    "http://localhost:80/cb",
    "https://localhost:8080/cb",
    "http://[::1]:8080/cb",
    "Bad_Prefix",
    "a_b",
    "a-b",
    "a__b",
    "1x",
    "default",
    "[a",
    "x]",
    "",
    "${",
    "${1X}",
    "${}",
    "$${X}",
    "${AUTHFUL_PROPTEST_NEVER_SET:-https://d.example.com/m}",
    "line\nbreak",
    "_",
    "__",
    "-",
    "Accept",
    "Authorization",
    "bad header",
    "é",
    "*",
    "12345",
];

fn nasty_value() -> impl Strategy<Value = Yaml> {
    let leaf = prop_oneof![
        4 => prop::sample::select(NASTY.to_vec()).prop_map(|s| Yaml::String(s.to_owned())),
        1 => any::<String>().prop_map(Yaml::String),
        1 => any::<i64>().prop_map(|n| Yaml::Number(n.into())),
        1 => any::<f64>().prop_map(|n| Yaml::Number(n.into())),
        1 => any::<bool>().prop_map(Yaml::Bool),
        1 => Just(Yaml::Null),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Yaml::Sequence),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(
                            [
                                "allow",
                                "deny",
                                "X-Key",
                                "Accept",
                                "Authorization",
                                "bad header"
                            ]
                            .to_vec()
                        )
                        .prop_map(|s| Yaml::String(s.to_owned())),
                        prop::sample::select(NASTY.to_vec())
                            .prop_map(|s| Yaml::String(s.to_owned())),
                    ],
                    inner
                ),
                0..3
            )
            .prop_map(|pairs| Yaml::Mapping(pairs.into_iter().collect())),
        ]
    })
}

/// A value that fits `key`, so that a good part of the edited files stay valid.
fn plausible_value(key_: &'static str) -> BoxedStrategy<Yaml> {
    let text = |s: &[&'static str]| {
        prop::sample::select(s.to_vec())
            .prop_map(|s| Yaml::String(s.to_owned()))
            .boxed()
    };
    let number = || (0u64..100_000).prop_map(|n| Yaml::Number(n.into())).boxed();
    match key_ {
        "url" | "issuer_url" => endpoint_url().prop_map(Yaml::String).boxed(),
        "redirect_url" => text(&["http://localhost:8081/cb", "http://[::1]:1/x"]),
        "oidc_profile" => text(&["default", "corp", ""]),
        "prefix" => {
            prop_oneof![text(&["", "p", "q-2"]), "[a-z]{1,5}".prop_map(Yaml::String)].boxed()
        }
        "enabled" => any::<bool>().prop_map(Yaml::Bool).boxed(),
        "headers" => Just(Yaml::Mapping(Mapping::from_iter([(
            key("X-Team"),
            key("pa$$word"),
        )])))
        .boxed(),
        "tools" => Just(Yaml::Mapping(Mapping::from_iter([(
            key("allow"),
            Yaml::Sequence(vec![key("search_*"), key("v[0-9]")]),
        )])))
        .boxed(),
        "request_timeout" | "login_timeout" | "startup_timeout" | "first_list_timeout" => {
            prop_oneof![number(), text(&["${AUTHFUL_PROPTEST_NEVER_SET:-7}"])].boxed()
        }
        "client_id" => {
            prop_oneof![number(), text(&["cid", "${AUTHFUL_PROPTEST_NEVER_SET:-x}"])].boxed()
        }
        "client_secret" | "name" => "[ -~]{0,8}".prop_map(Yaml::String).boxed(),
        "scopes" => text(&["openid mcp:read", ""]),
        "separator" => text(&["_", "__", "-"]),
        "fallback_tools" => text(&["auto", "always", "never", "sometimes"]),
        "max_name_length" => prop_oneof![
            (0u64..200).prop_map(|n| Yaml::Number(n.into())),
            text(&["${AUTHFUL_PROPTEST_NEVER_SET:-40}", "sixty"]),
        ]
        .boxed(),
        "cache_dir" => text(&["/tmp/authful", "~/x"]),
        _ => nasty_value().boxed(),
    }
}

/// One edit of a valid configuration's tree.
#[derive(Debug, Clone)]
enum Mutation {
    Backend(Index, &'static str, Option<Yaml>),
    Profile(Index, &'static str, Option<Yaml>),
    Gateway(&'static str, Option<Yaml>),
    Top(&'static str, Option<Yaml>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // A key, and for it a value that fits (2 in 3) or breaks a rule, or no value (removed).
    let keyed = |keys: &[&'static str]| {
        prop::sample::select(keys.to_vec()).prop_flat_map(|k| {
            let value = prop_oneof![2 => plausible_value(k), 1 => nasty_value().boxed()];
            (Just(k), prop::option::weighted(0.9, value))
        })
    };
    prop_oneof![
        4 => (any::<Index>(), keyed(&BACKEND_KEYS))
            .prop_map(|(i, (k, v))| Mutation::Backend(i, k, v)),
        2 => (any::<Index>(), keyed(&PROFILE_KEYS))
            .prop_map(|(i, (k, v))| Mutation::Profile(i, k, v)),
        1 => keyed(&GATEWAY_KEYS).prop_map(|(k, v)| Mutation::Gateway(k, v)),
        1 => keyed(&TOP_KEYS).prop_map(|(k, v)| Mutation::Top(k, v)),
    ]
}

/// Sets (or removes, for `None`) `key` in the `index`-th mapping under `section`.
fn edit_entry(root: &mut Yaml, section: &str, index: &Index, key_: &str, value: &Option<Yaml>) {
    let Some(Yaml::Mapping(entries)) = root.get_mut(section) else {
        return;
    };
    if entries.is_empty() {
        return;
    }
    let i = index.index(entries.len());
    if let Some((_, Yaml::Mapping(entry))) = entries.iter_mut().nth(i) {
        edit(entry, key_, value);
    }
}

fn edit(map: &mut Mapping, key_: &str, value: &Option<Yaml>) {
    match value {
        Some(v) => {
            map.insert(key(key_), v.clone());
        }
        None => {
            map.remove(key_);
        }
    }
}

fn mutate(root: &mut Yaml, mutation: &Mutation) {
    match mutation {
        Mutation::Backend(i, k, v) => edit_entry(root, "backends", i, k, v),
        Mutation::Profile(i, k, v) => edit_entry(root, "oidc_profiles", i, k, v),
        Mutation::Gateway(k, v) => {
            if let Yaml::Mapping(top) = root {
                let gateway = top
                    .entry(key("gateway"))
                    .or_insert_with(|| Yaml::Mapping(Mapping::new()));
                if let Yaml::Mapping(gateway) = gateway {
                    edit(gateway, k, v);
                }
            }
        }
        Mutation::Top(k, v) => {
            if let Yaml::Mapping(top) = root {
                edit(top, k, v);
            }
        }
    }
}

/// Lines of YAML-looking text from the grammar's own pieces: keys of the model and others,
/// indentation, flow and block collections, anchors, aliases, merge keys, tags, references.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "backends",
        "oidc_profiles",
        "gateway",
        "url",
        "prefix",
        "tools",
        "allow",
        "headers",
        "default",
        "a",
        "<<",
        "? x",
        "- ",
        "-",
        "",
    ]);
    let value = prop::sample::select(vec![
        "",
        "https://x.example.com/mcp",
        "http://127.0.0.1:1/cb",
        "&a",
        "*a",
        "&a {}",
        "[",
        "]",
        "{",
        "}",
        "[a, b]",
        "{a: 1}",
        "|",
        ">-",
        "!!str x",
        "!tag",
        "${A}",
        "${",
        "$$",
        "'q'",
        "\"q\\u00e9\"",
        "null",
        "~",
        "0x1F",
        "1e400",
        "-1",
        "true",
        "\"",
        "'",
        "#",
        "%YAML 1.2",
        "---",
        "...",
        "\t",
    ]);
    let line =
        (0usize..6, key, prop::option::of(value)).prop_map(|(indent, key, value)| match value {
            Some(value) => format!("{}{key}: {value}", " ".repeat(indent)),
            None => format!("{}{key}", " ".repeat(indent)),
        });
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

/// A valid configuration's text with a few characters inserted, deleted or replaced.
fn damaged_text() -> impl Strategy<Value = String> {
    let edit = (any::<Index>(), 0u8..3, any::<char>());
    (valid_config(), prop::collection::vec(edit, 1..4)).prop_map(|(config, edits)| {
        let mut chars: Vec<char> = serde_yaml::to_string(&config.to_yaml())
            .unwrap()
            .chars()
            .collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: a configuration valid by construction (random profiles, backends, prefixes
    /// of the three kinds, separators, globs, headers with `$$`, URLs behind
    /// `${UNSET:-default}`) passes `validate --strict` without a problem and resolves to
    /// settings with exactly its backends, prefixes, profiles and headers.
    #[test]
    fn valid_configs_validate_and_resolve_to_the_same_backends(config in valid_config()) {
        let text = serde_yaml::to_string(&config.to_yaml()).unwrap();
        let checked = check(&text, true);
        // Several unprefixed backends are valid; `validate` only warns that the resources of
        // all but the first cannot be routed.
        let problems: Vec<_> = checked
            .diagnostics
            .items
            .iter()
            .filter(|d| !d.message.contains("is unprefixed too"))
            .collect();
        prop_assert!(problems.is_empty(), "{}\n---\n{text}", checked.diagnostics);
        let settings = start_up(&text).unwrap().resolve().unwrap();
        config.assert_resolved(&settings)?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: a valid configuration with one to three keys (known or not, in a backend,
    /// a profile, `gateway` or the top) set to a value that fits the key or breaks a rule, or
    /// removed; about a third of them stay valid. `validate` never panics, and it is the
    /// start-up path's judge: what `--strict` accepts loads and resolves, what it refuses
    /// fails to load with the same diagnostics.
    #[test]
    fn validate_is_the_start_up_judge_of_damaged_configs(
        config in valid_config(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut tree = config.to_yaml();
        for m in &mutations {
            mutate(&mut tree, m);
        }
        let text = serde_yaml::to_string(&tree).unwrap();
        start_up_agrees_with_validate(&text)?;
    }

    /// 256 cases: YAML-looking text (anchors, aliases, merge keys, tags, flow collections,
    /// references, bad indentation) never panics the check or the start-up path, and they
    /// agree.
    #[test]
    fn yaml_looking_text_never_panics(text in yamlish()) {
        start_up_agrees_with_validate(&text)?;
    }

    /// 256 cases: a valid configuration's text with characters inserted, deleted or replaced
    /// never panics the check or the start-up path, and they agree.
    #[test]
    fn damaged_text_never_panics(text in damaged_text()) {
        start_up_agrees_with_validate(&text)?;
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// 512 cases: `validate` and the start-up path on arbitrary text (any Unicode, control
    /// characters) return diagnostics within the text's lines, never panic, and agree.
    #[test]
    fn validate_never_panics_on_arbitrary_text(text in any::<String>()) {
        start_up_agrees_with_validate(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Naming: prefixes, URIs, the 64-character rule
// ---------------------------------------------------------------------------------------------

const SEPARATORS: [Separator; 3] = [
    Separator::Underscore,
    Separator::DoubleUnderscore,
    Separator::Dash,
];

/// A prefix `Config::resolve` accepts with `separator`.
fn valid_prefix(separator: Separator) -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}".prop_filter("a valid prefix", move |p| {
        config::prefix_problem(p, separator).is_none()
    })
}

fn separator() -> impl Strategy<Value = Separator> {
    prop::sample::select(SEPARATORS.to_vec())
}

fn naming(prefix: Option<String>, separator: Separator) -> Naming {
    Naming::new("b", prefix.as_deref(), separator.as_str())
}

/// Item names of every kind: short and long valid tool names, names containing separators,
/// and names no tool may have (Unicode, dots, spaces).
fn item_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,20}",
        "[a-z_-]{50,90}",
        "[a-z]{1,5}(_|__|-)[a-z_-]{0,8}",
        any::<String>(),
        "[a-zé. +/:]{1,12}",
    ]
}

fn is_tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `^[a-zA-Z0-9_-]{1,64}$`
fn is_valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME).contains(&name.len()) && name.chars().all(is_tool_char)
}

/// A prefix and separator, or none.
fn prefixing() -> impl Strategy<Value = (Option<String>, Separator)> {
    separator().prop_flat_map(|s| (prop::option::weighted(0.8, valid_prefix(s)), Just(s)))
}

proptest! {
    #![proptest_config(cases(1000))]

    /// 1000 cases: a prefixed name (before the name budget) maps back to itself under its
    /// backend's naming, for any name: long, Unicode, with separators inside.
    #[test]
    fn names_round_trip((prefix, sep) in prefixing(), name in item_name()) {
        let n = naming(prefix, sep);
        let exposed = n.prefixed(&name);
        prop_assert_eq!(n.original_name(&exposed), Some(name.as_str()));
    }

    /// 1000 cases: a resource URI maps back to itself, for any URI (with `+`, `://`, Unicode).
    #[test]
    fn uris_round_trip(
        (prefix, sep) in prefixing(),
        uri in prop_oneof![any::<String>(), "[a-z+]{1,8}\\+?[a-z]{0,4}://[a-z+/]{0,10}"],
    ) {
        let n = naming(prefix, sep);
        let exposed = n.uri(&uri);
        prop_assert_eq!(n.original_uri(&exposed), Some(uri.as_str()));
    }

    /// 1000 cases: with two different valid prefixes, a name or URI one backend exposes never
    /// maps back under the other: prefixed backends cannot collide.
    #[test]
    fn different_prefixes_never_collide(
        (a, b, sep) in separator().prop_flat_map(|s| (valid_prefix(s), valid_prefix(s), Just(s))),
        name in item_name(),
        other in item_name(),
    ) {
        prop_assume!(a != b);
        let (na, nb) = (naming(Some(a), sep), naming(Some(b), sep));
        let (as_name, as_uri) = (na.prefixed(&name), na.uri(&name));
        prop_assert_eq!(nb.original_name(&as_name), None);
        prop_assert_eq!(nb.original_uri(&as_uri), None);
        prop_assert_ne!(na.prefixed(&name), nb.prefixed(&other));
        if let (Ok(x), Ok(y)) = (na.tool(&name), nb.tool(&other)) {
            // Shortened names keep the prefix: the first 55 characters are the full name's.
            prop_assert_ne!(x, y);
        }
    }

    /// 1000 cases: an exposed tool name matches `^[a-zA-Z0-9_-]{1,64}$`; it is the full name
    /// (which maps back) when that fits, otherwise 64 characters: the full name's first 55,
    /// `_` and 8 hex digits, the same every time. A name that cannot be valid is refused.
    #[test]
    fn tool_names_are_valid_and_stable((prefix, sep) in prefixing(), name in item_name()) {
        let n = naming(prefix, sep);
        let full = n.prefixed(&name);
        match n.tool(&name) {
            Ok(exposed) => {
                prop_assert!(is_valid_tool_name(&exposed), "{exposed:?}");
                prop_assert_eq!(n.tool(&name).unwrap(), exposed.clone());
                if full.len() <= MAX_TOOL_NAME {
                    prop_assert_eq!(&exposed, &full);
                    prop_assert_eq!(n.original_name(&exposed), Some(name.as_str()));
                } else {
                    prop_assert_eq!(exposed.len(), MAX_TOOL_NAME);
                    prop_assert_eq!(&exposed[..55], &full[..55]);
                    let (_, hash) = exposed.split_at(55);
                    prop_assert!(hash.starts_with('_'));
                    prop_assert!(hash[1..].chars().all(|c| c.is_ascii_hexdigit()));
                }
            }
            Err(_) => prop_assert!(name.is_empty() || !full.chars().all(is_tool_char)),
        }
    }

    /// 1000 cases: distinct tool names of one backend get distinct exposed names when both fit
    /// or both are shortened (a shortened name against a 64-character one is the catalog's
    /// business: see `catalog_exposes_each_name_once_and_routes_it_home`).
    #[test]
    fn tool_naming_is_injective_among_full_or_among_shortened_names(
        (prefix, sep) in prefixing(),
        a in item_name(),
        b in item_name(),
    ) {
        prop_assume!(a != b);
        let n = naming(prefix, sep);
        if let (Ok(x), Ok(y)) = (n.tool(&a), n.tool(&b)) {
            let shortened = |s: &str| n.prefixed(s).len() > MAX_TOOL_NAME;
            if shortened(&a) == shortened(&b) {
                prop_assert_ne!(x, y);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3b. The merged catalog, through the real gateway and real Streamable HTTP backends
// ---------------------------------------------------------------------------------------------

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signal = stop.clone().cancelled_owned();
    // Without TCP_NODELAY each small response waits on a delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await;
    });
    addr
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

/// Runs the real gateway over an in-memory pipe in front of `backends` (also a single
/// unprefixed one, which the proxy would serve with the transparent relay instead), lists
/// every kind and uses every listed item once.
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
        ..config::Gateway::default()
    };
    // No logins here; one HTTP client for every case (building one reads the system's
    // certificates, which costs more than the rest of a case).
    let gateway = Gateway::new(settings, &configured, |_| None, GATEWAY_HTTP.clone());
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

// ---------------------------------------------------------------------------------------------
// 4. Glob filters
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(1000))]

    /// 1000 cases: a pattern without wildcard characters is a valid glob that matches exactly
    /// itself; `*` matches everything.
    #[test]
    fn plain_patterns_match_exactly_themselves(
        pattern in "[^*?\\[\\]]{1,12}",
        other in prop_oneof![any::<String>(), "[^*?\\[\\]]{0,12}"],
    ) {
        let glob = Glob::new(&pattern).unwrap();
        prop_assert!(glob.matches(&pattern));
        prop_assert_eq!(glob.matches(&other), other == pattern);
        prop_assert!(Glob::new("*").unwrap().matches(&other));
    }

    /// 1000 cases: any pattern is a glob or an error, and matching any name never panics.
    #[test]
    fn globs_never_panic(
        pattern in prop_oneof![any::<String>(), "[a-z*?\\[\\]!-]{0,10}"],
        name in prop_oneof![any::<String>(), "[a-z\\]-]{0,10}"],
    ) {
        if let Ok(glob) = Glob::new(&pattern) {
            let _ = glob.matches(&name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The login callback's query, through the real callback server over HTTP
// ---------------------------------------------------------------------------------------------

/// The query parameters the callback reads.
const CALLBACK_KEYS: [&str; 5] = ["code", "state", "error", "error_description", "iss"];

/// The issuer of the callback servers here.
const CALLBACK_ISSUER: &str = "https://issuer.example.com";

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A callback server for one login with `state`, and the URL it serves.
async fn callback_server(state: &str) -> (CallbackServer, Url) {
    for _ in 0..10 {
        let url = Url::parse(&format!("http://127.0.0.1:{}/auth/callback", free_port())).unwrap();
        match CallbackServer::start(&url, state, CALLBACK_ISSUER, false).await {
            Ok(server) => return (server, url),
            // Another test took the port in between: take another.
            Err(AuthError::PortInUse { .. }) => continue,
            Err(e) => panic!("callback server: {e}"),
        }
    }
    panic!("no free port for the callback server")
}

static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
});

/// GETs the callback with a raw query (sent as it is, apart from the URL parser's own
/// encoding of characters a query may not hold): the query sent, the status, the content
/// type and the body.
async fn hit(url: &Url, query: &str) -> (String, u16, String, String) {
    let mut url = url.clone();
    url.set_query(Some(query));
    let sent = url.query().unwrap_or_default().to_owned();
    let response = HTTP
        .get(url)
        .send()
        .await
        .expect("the callback server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (sent, status, content_type, response.text().await.unwrap())
}

/// The title and message slots of a callback page, or why the page is not the template with
/// two escaped slots.
fn page_slots(body: &str) -> Result<(String, String), String> {
    let rest = body
        .strip_prefix("<!doctype html><html><head><meta charset=\"utf-8\"><title>")
        .ok_or("head")?;
    let (title, rest) = rest.split_once("</title>").ok_or("title")?;
    let rest = rest
        .strip_prefix(
            "</head><body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\"><h1>",
        )
        .ok_or("body")?;
    let (h1, rest) = rest.split_once("</h1><p>").ok_or("h1")?;
    let message = rest
        .strip_suffix("</p><p><small>authful-mcp-proxy</small></p></body></html>")
        .ok_or("tail")?;
    if h1 != title {
        return Err("h1 differs from title".into());
    }
    for slot in [title, message] {
        if slot.contains(['<', '>', '"', '\'']) {
            return Err(format!("unescaped markup in {slot:?}"));
        }
    }
    Ok((unescape(title), unescape(message)))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `text` percent-encoded in a random way: every byte outside the unreserved set encoded,
/// unreserved ones encoded or not, hex digits in either case, spaces as `+` or `%20`.
fn encode(text: &str, choices: &[bool]) -> String {
    let mut out = String::new();
    for (i, byte) in text.bytes().enumerate() {
        let flip = choices
            .get(i % choices.len().max(1))
            .copied()
            .unwrap_or(false);
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        if byte == b' ' && flip {
            out.push('+');
        } else if unreserved && !flip {
            out.push(byte as char);
        } else if flip {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Query values: anything, markup, and text that needs encoding.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._~-]{1,16}",
        "<script>alert\\('[a-z]{1,4}'\\)</script>",
        "[<>&\"' =+%#;a-z]{0,16}",
    ]
}

/// Parameters a provider may add: `iss` (the right issuer or another), `session_state`,
/// anything.
fn extra_param() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        1 => prop_oneof![Just(CALLBACK_ISSUER.to_owned()), query_value()]
            .prop_map(|iss| ("iss".to_owned(), iss)),
        3 => other_param(),
    ]
}

fn other_param() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![Just("session_state".to_owned()), "[a-z_]{1,8}"]
            .prop_filter("not a callback key", |k| {
                !CALLBACK_KEYS.contains(&k.as_str())
            }),
        query_value(),
    )
}

/// Builds a query from `params`, each key and value encoded with `choices`.
fn build_query(params: &[(String, String)], choices: &[bool]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, choices), encode(v, choices)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What the callback must do with a query, from the same decoding its parser uses
/// (`application/x-www-form-urlencoded`): the status, and the login's outcome if it ends it.
#[derive(Debug, PartialEq)]
enum Expected {
    /// 400, the login goes on.
    Rejected,
    /// 200, the login ends with this code.
    Code(String),
    /// 200, the login ends refused.
    Denied(String, String),
    /// 400, the login ends: the response names another issuer (RFC 9207).
    WrongIssuer,
}

fn expected(query: &str, state: &str) -> Expected {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        seen.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    // OAuth parameters must not repeat (RFC 6749 section 3.1): a repeated one is refused.
    if CALLBACK_KEYS
        .iter()
        .any(|k| seen.get(*k).is_some_and(|v| v.len() > 1))
    {
        return Expected::Rejected;
    }
    let one = |k: &str| seen.get(k).and_then(|v| v.first()).cloned();
    if one("state").as_deref() != Some(state) {
        return Expected::Rejected;
    }
    let ends_login = one("error").is_some() || one("code").is_some_and(|c| !c.is_empty());
    if ends_login && one("iss").is_some_and(|iss| iss != CALLBACK_ISSUER) {
        return Expected::WrongIssuer;
    }
    if let Some(error) = one("error") {
        return Expected::Denied(error, one("error_description").unwrap_or_default());
    }
    match one("code") {
        Some(code) if !code.is_empty() => Expected::Code(code),
        _ => Expected::Rejected,
    }
}

/// Whether `got` is the provider's `original` text as the proxy may keep it: as it is, or
/// without control characters and cut short (ending in `…`).
fn kept_as(got: &str, original: &str) -> bool {
    let clean: String = original.chars().filter(|c| !c.is_control()).collect();
    got == original
        || got == clean
        || got
            .strip_suffix('…')
            .is_some_and(|head| clean.starts_with(head))
}

/// Raw query text of query-ish characters, `%` escapes broken or not.
const RAW_QUERY_TEXT: &str = "[a-z_=&;%+0-9A-F<>\"'/?:@!$()*,{}|^` -]{0,40}";
/// Raw parameters named like the callback's own, any values, often repeated.
const RAW_QUERY_PARAMS: &str = "(state|code|error|error_description|iss)=[^#]{0,10}\
                                (&(state|code|error|error_description)=[^#]{0,10}){0,4}";

/// Sends `query` to a fresh callback server for `state`, checks the status and page against
/// [`expected`], then sends a sentinel code: the login's outcome is the query's when it ended
/// the login, the sentinel's otherwise.
async fn callback_case(state: &str, query: &str) -> Result<(), TestCaseError> {
    const SENTINEL: &str = "sentinel-code";
    let (server, url) = callback_server(state).await;
    let (sent, status, content_type, body) = hit(&url, query).await;
    // The model reads what went on the wire (the URL parser encodes a few characters).
    let want = expected(&sent, state);
    let want_status = match want {
        Expected::Rejected | Expected::WrongIssuer => 400,
        Expected::Code(_) | Expected::Denied(..) => 200,
    };
    prop_assert_eq!(status, want_status, "{:?} for {:?}: {}", want, sent, body);
    let page = if content_type.starts_with("text/html") {
        Some(page_slots(&body).map_err(TestCaseError::fail)?)
    } else {
        // Only the query extractor's own rejection is not a page, and it is plain text.
        prop_assert!(
            content_type.starts_with("text/plain"),
            "{content_type}: {body}"
        );
        prop_assert_eq!(status, 400);
        None
    };
    let sentinel = build_query(
        &[
            ("state".to_owned(), state.to_owned()),
            ("code".to_owned(), SENTINEL.to_owned()),
        ],
        &[],
    );
    let _ = hit(&url, &sentinel).await;
    let outcome = server.wait(Duration::from_secs(10)).await;
    match (want, outcome) {
        (Expected::Code(code), Ok(secret)) => prop_assert_eq!(secret.expose(), code),
        (Expected::Rejected, Ok(secret)) => prop_assert_eq!(secret.expose(), SENTINEL),
        (
            Expected::Denied(error, description),
            Err(AuthError::Denied {
                error: e,
                description: d,
            }),
        ) => {
            prop_assert!(kept_as(&e, &error), "{e:?} from {error:?}");
            prop_assert!(kept_as(&d, &description), "{d:?} from {description:?}");
            // The page tells the user what the provider said, escaped.
            let (title, message) = page.ok_or_else(|| TestCaseError::fail("no page"))?;
            prop_assert_eq!(title, "Login failed");
            let detail = if d.is_empty() { e } else { format!("{e}: {d}") };
            prop_assert_eq!(
                message,
                format!("The identity provider said: {detail}. Return to your app to retry.")
            );
        }
        (Expected::WrongIssuer, Err(AuthError::WrongIssuer(_))) => {
            let (title, _) = page.ok_or_else(|| TestCaseError::fail("no page"))?;
            prop_assert_eq!(title, "Login refused");
        }
        (want, outcome) => {
            return Err(TestCaseError::fail(format!(
                "expected {want:?}, the login ended with {outcome:?}"
            )));
        }
    }
    Ok(())
}

/// A callback query: the login's state (right, wrong or absent), a code, maybe an error,
/// extra parameters, sometimes a repeated key, in any order and any encoding.
fn callback_query() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z0-9_-]{1,43}",
        prop_oneof![
            3 => Just(None),
            1 => query_value().prop_map(Some),
        ],
        prop::option::weighted(0.8, query_value()),
        prop::option::weighted(0.3, query_value()),
        prop::option::of(query_value()),
        prop::collection::vec(extra_param(), 0..3),
        prop::option::weighted(0.15, prop::sample::select(CALLBACK_KEYS.to_vec())),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<prop::sample::Selector>(),
    )
        .prop_map(
            |(state, wrong_state, code, error, description, extra, repeat, choices, order)| {
                let mut params: Vec<(String, String)> = extra;
                params.push(("state".into(), wrong_state.unwrap_or_else(|| state.clone())));
                if let Some(code) = code {
                    params.push(("code".into(), code));
                }
                if let Some(error) = error {
                    params.push(("error".into(), error));
                }
                if let Some(description) = description {
                    params.push(("error_description".into(), description));
                }
                if let Some(key) = repeat
                    && let Some(p) = params.iter().find(|(k, _)| k == key).cloned()
                {
                    params.push(p);
                }
                // A random order: rotate by a chosen amount.
                let n = params.len();
                let by = order.select(0..n.max(1));
                params.rotate_left(by.min(n));
                (state, build_query(&params, &choices))
            },
        )
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: a callback query with the login's state and a code ends the login with
    /// exactly that code (any characters, any percent-encoding, extra parameters, any order);
    /// a wrong or missing state, a missing code or a repeated OAuth parameter is answered 400
    /// and does not end it; an `error` ends it refused, with the provider's description on
    /// an escaped page.
    #[test]
    fn callback_queries_end_the_login_only_when_they_should((state, query) in callback_query()) {
        RUNTIME.block_on(callback_case(&state, &query))?;
    }

    /// 256 cases: arbitrary raw query text (broken escapes, invalid UTF-8, markup, separators,
    /// repeated OAuth parameters)
    /// gets an answer — the page with every slot escaped, or the extractor's plain-text 400 —
    /// and the same decision as above; the server keeps serving.
    #[test]
    fn arbitrary_callback_queries_never_break_the_server(
        state in "[A-Za-z0-9_-]{1,12}",
        raw in prop_oneof![RAW_QUERY_TEXT, RAW_QUERY_PARAMS],
    ) {
        RUNTIME.block_on(callback_case(&state, &raw))?;
    }
}
