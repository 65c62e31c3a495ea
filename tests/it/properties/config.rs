//! Configuration: parsing, `validate`, and the start-up path (file → layers → Settings).

use std::{collections::BTreeMap, time::Duration};

use authful_mcp_proxy::{
    config::{self, Format, Separator, Settings, Sources, validate},
    glob::Glob,
};
use proptest::{prelude::*, sample::Index};
use serde_json::Value;
use serde_yaml::{Mapping, Value as Yaml};
use url::Url;

use super::cases;

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
                prop_assert_eq!(profile.issuer_url.as_ref(), Some(&spec.issuer_url));
                let client_id = match &spec.client_id {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                prop_assert_eq!(profile.client_id.as_ref(), Some(&client_id));
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
