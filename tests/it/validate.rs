//! `authful-mcp-proxy validate` as users and CI run it: one test per rule with the exact
//! located line, every problem at once, the output formats, exit codes, and the proxy itself
//! refusing an invalid file with the same diagnostics.

use std::{
    io::Read,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::binary::BIN;

/// A profile and a backend that pass every rule; tests append to it or start from scratch.
const BASE: &str = "\
oidc_profiles:
  corp:
    issuer_url: https://auth.company.com
    client_id: cid
backends:
  tools:
    url: https://mcp.company.com/mcp
    oidc_profile: corp
";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// The binary with a clean environment, run in `dir`.
fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn output(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `validate ARGS c.yaml` on `yaml`, with extra env vars.
fn validate_with(yaml: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    output(
        command(dir.path())
            .arg("validate")
            .args(args)
            .arg("c.yaml")
            .envs(envs.iter().copied()),
    )
}

fn validate(yaml: &str) -> Run {
    validate_with(yaml, &[], &[])
}

/// Asserts that `yaml` is invalid with exactly these diagnostic lines.
fn assert_errors(yaml: &str, expected: &[&str]) {
    let run = validate(yaml);
    let lines = run.lines();
    let (summary, diagnostics) = lines.split_last().expect("a summary line");
    assert_eq!(diagnostics, expected, "{}", run.stdout);
    assert!(summary.starts_with("c.yaml: "), "{summary}");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

fn assert_valid(yaml: &str) {
    let run = validate(yaml);
    assert_eq!(run.lines(), ["c.yaml: valid"], "{}", run.stderr);
    assert_eq!(run.code, 0);
}

#[test]
fn a_valid_file_says_so_and_exits_0() {
    assert_valid(BASE);
}

#[test]
fn yaml_syntax_errors_are_located() {
    let run = validate("backends:\n  tools: [\n");
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .starts_with("c.yaml:3:1: error: YAML syntax error: "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.ends_with("c.yaml: 1 error\n"), "{}", run.stdout);
}

#[test]
fn the_document_must_be_a_mapping() {
    assert_errors(
        "- a\n- b\n",
        &["c.yaml:1:1: error: expected a mapping, found a list"],
    );
}

#[test]
fn unknown_keys_point_at_the_key_with_a_suggestion() {
    let yaml = BASE.replace("    url:", "    ulr:");
    assert_errors(
        &yaml,
        &[
            "c.yaml:6:3: error: backends.tools.url: missing required key 'url'",
            "c.yaml:7:5: error: backends.tools.ulr: unknown key; did you mean 'url'?",
        ],
    );
    assert_errors(
        &format!("{BASE}colour: blue\n"),
        &[
            "c.yaml:9:1: error: colour: unknown key; expected one of: backends, cache_dir, \
             gateway, oidc_profiles",
        ],
    );
}

#[test]
fn wrong_types_point_at_the_value() {
    let yaml = format!("{BASE}    enabled: maybe\n").replace(
        "    client_id: cid\n",
        "    client_id: cid\n    login_timeout: abc\n",
    );
    assert_errors(
        &yaml,
        &[
            "c.yaml:5:20: error: oidc_profiles.corp.login_timeout: expected a whole number, \
             found the text 'abc'",
            "c.yaml:10:14: error: backends.tools.enabled: expected true or false, found the \
             text 'maybe'",
        ],
    );
}

#[test]
fn two_issuers_on_one_redirect_url_are_warned_about() {
    let yaml = BASE.replace(
        "backends:",
        "  partner:\n    issuer_url: https://login.partner.example\n    client_id: p\n  \
         again:\n    issuer_url: https://auth.company.com\n    client_id: other\n    \
         redirect_url: http://127.0.0.1:9000/cb\nbackends:",
    );
    let run = validate(&yaml);
    assert_eq!(run.code, 0, "a warning: {}", run.stdout);
    assert_eq!(
        run.lines(),
        [
            "c.yaml:5:3: warning: oidc_profiles.partner.redirect_url: profile 'corp' of issuer \
             https://auth.company.com uses the same redirect URL \
             http://localhost:8080/auth/callback; give each identity provider a redirect URL \
             (port) of its own, so that a login response can only be taken for its own \
             provider's",
            "c.yaml: valid, 1 warning",
        ]
    );
}

/// Profiles that never open a browser (a service account, the device flow) share a redirect
/// URL they never listen on: nothing to warn about.
#[test]
fn profiles_without_a_browser_share_no_redirect_url() {
    let yaml = BASE.replace(
        "backends:",
        "  robot:\n    issuer_url: https://login.partner.example\n    client_id: r\n    \
         client_secret: s\n    flow: client_credentials\n  tv:\n    issuer_url: \
         https://other.example\n    client_id: t\n    flow: device\nbackends:",
    );
    assert_valid(&yaml);
}

/// Finding 1 of the hostile-backend review: a secret (or key) and no issuer would let a
/// backend's metadata choose who receives it.
#[test]
fn a_secret_without_an_issuer_is_refused() {
    let yaml = BASE.replace(
        "    issuer_url: https://auth.company.com\n    client_id: cid\n",
        "    client_id: cid\n    client_secret: s3cret\n    flow: client_credentials\n",
    );
    assert_errors(
        &yaml,
        &[
            "c.yaml:2:3: error: oidc_profiles.corp.issuer_url: missing issuer_url: a profile with \
           client_secret must name its issuer, so that its credentials only ever go there; \
           without one, a backend's metadata would choose the server that receives them",
        ],
    );
    let yaml = BASE.replace(
        "    issuer_url: https://auth.company.com\n",
        "    client_assertion:\n      key_file: key.pem\n",
    );
    let run = validate(&yaml);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "oidc_profiles.corp.issuer_url: missing issuer_url: a profile with client_assertion"
        ),
        "{}",
        run.stdout
    );
}

/// Found by `validate_is_the_start_up_judge_of_damaged_configs`: `validate` took a negative
/// timeout in the file, which start-up then refused (and blamed on an env var).
#[test]
fn negative_numbers_are_refused_where_the_schema_is_unsigned() {
    let yaml = format!(
        "{BASE}    request_timeout: -1\ngateway:\n  startup_timeout: -5\n  request_timeout: 30\n"
    );
    assert_errors(
        &yaml,
        &[
            "c.yaml:9:22: error: backends.tools.request_timeout: -1 must be at least 0",
            "c.yaml:11:20: error: gateway.startup_timeout: -5 must be at least 0",
        ],
    );
    assert_valid(&format!("{BASE}    request_timeout: 0\n"));
    // Start-up refuses the file with the same words, naming the file, not an env var.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), &yaml).unwrap();
    let run = output(command(dir.path()).args(["--config", "c.yaml"]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("backends.tools.request_timeout: -1 must be at least 0")
            && !run.stderr.contains("AUTHFUL_MCP_"),
        "{}",
        run.stderr
    );
}

#[test]
fn gateway_settings_are_bounded_and_named() {
    let yaml = format!(
        "{BASE}gateway:\n  max_name_length: 8\n  fallback_tools: sometimes\n  \
         first_list_timeout: soon\n"
    );
    assert_errors(
        &yaml,
        &[
            "c.yaml:10:20: error: gateway.max_name_length: 8 must be at least 16",
            "c.yaml:11:19: error: gateway.fallback_tools: 'sometimes' is not allowed; expected \
             one of 'auto', 'always', 'never'",
            "c.yaml:12:23: error: gateway.first_list_timeout: expected a whole number, found \
             the text 'soon'",
        ],
    );
    assert_valid(&format!(
        "{BASE}gateway:\n  max_name_length: 128\n  fallback_tools: never\n  \
         first_list_timeout: 0\n"
    ));
    // Start-up says the same of a value from the environment.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), BASE).unwrap();
    let run = output(
        command(dir.path())
            .args(["--config", "c.yaml"])
            .env("AUTHFUL_MCP_GATEWAY__MAX_NAME_LENGTH", "200"),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("gateway.max_name_length: 200 must be at most 128"),
        "{}",
        run.stderr
    );
}

#[test]
fn scopes_take_text_or_a_list_of_text() {
    let with = |scopes: &str| {
        BASE.replace(
            "client_id: cid",
            &format!("client_id: cid\n    scopes: {scopes}"),
        )
    };
    assert_valid(&with("openid profile"));
    assert_valid(&with("[openid, profile]"));
    assert_errors(
        &with("[openid, {a: 1}]"),
        &["c.yaml:5:22: error: oidc_profiles.corp.scopes[1]: expected text, found a mapping"],
    );
    assert_errors(
        &with("{a: 1}"),
        &[
            "c.yaml:5:13: error: oidc_profiles.corp.scopes: expected text or a list, found a mapping",
        ],
    );
}

#[test]
fn missing_required_keys_point_at_their_parent() {
    assert_errors(
        "oidc_profiles:\n  corp:\n    scopes: openid\n    client_secret: s\n    \
         issuer_url: https://a.example.com\nbackends:\n  tools:\n    oidc_profile: corp\n",
        &[
            "c.yaml:2:3: error: oidc_profiles.corp.client_id: missing client_id: client_secret \
             and client_assertion belong to a client an administrator registered; set its id",
            "c.yaml:7:3: error: backends.tools.url: missing required key 'url'",
        ],
    );
}

#[test]
fn urls_must_parse() {
    assert_errors(
        &BASE.replace("https://mcp.company.com/mcp", "not a url"),
        &[
            "c.yaml:7:10: error: backends.tools.url: 'not a url' is not a valid URL (relative URL \
           without a base)",
        ],
    );
}

#[test]
fn http_is_only_for_loopback_issuers_and_backends() {
    assert_errors(
        &BASE.replace("https://", "http://"),
        &[
            "c.yaml:3:17: error: oidc_profiles.corp.issuer_url: 'http://auth.company.com' must \
             use https:// (http:// is only allowed on localhost, 127.0.0.1 or [::1])",
            "c.yaml:7:10: error: backends.tools.url: 'http://mcp.company.com/mcp' must use \
             https:// (http:// is only allowed on localhost, 127.0.0.1 or [::1])",
        ],
    );
    assert_valid(
        &BASE
            .replace("https://auth.company.com", "http://127.0.0.1:9000/realms/x")
            .replace("https://mcp.company.com/mcp", "http://localhost:8000/mcp"),
    );
}

#[test]
fn redirect_urls_are_http_on_loopback_with_a_port() {
    for bad in [
        "https://localhost:8080/cb",
        "http://example.com:8080/cb",
        "http://localhost/cb",
    ] {
        let yaml = BASE.replace(
            "client_id: cid",
            &format!("client_id: cid\n    redirect_url: {bad}"),
        );
        let problem = if bad.starts_with("http://localhost") {
            "needs an explicit port other than 80 (the http default, which URLs leave out and \
             which needs root to listen on)"
        } else {
            "must be http:// on localhost, 127.0.0.1 or [::1] with an explicit port"
        };
        assert_errors(
            &yaml,
            &[&format!(
                "c.yaml:5:19: error: oidc_profiles.corp.redirect_url: '{bad}' {problem}, e.g. \
                 http://localhost:8080/auth/callback"
            )],
        );
    }
    // Port 80 written out is still port 80: URLs drop it, so it cannot be told apart.
    let yaml = BASE.replace(
        "client_id: cid",
        "client_id: cid\n    redirect_url: http://localhost:80/cb",
    );
    let run = validate(&yaml);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("other than 80"), "{}", run.stdout);
    assert_valid(&BASE.replace(
        "client_id: cid",
        "client_id: cid\n    redirect_url: http://[::1]:9876/cb",
    ));
}

#[test]
fn oidc_profile_must_name_a_profile() {
    assert_errors(
        &BASE.replace("oidc_profile: corp", "oidc_profile: crop"),
        &[
            "c.yaml:8:19: error: backends.tools.oidc_profile: no OIDC profile named 'crop'; did you \
           mean 'corp'?",
        ],
    );
}

#[test]
fn prefixes_are_well_formed_and_distinct() {
    assert_errors(
        &format!("{BASE}    prefix: Tools\n"),
        &[
            "c.yaml:9:13: error: backends.tools.prefix: prefix 'Tools' must start with a lowercase \
           letter and contain only lowercase letters, digits and '-' (^[a-z][a-z0-9-]*$)",
        ],
    );
    // Defaulted from the backend's name.
    assert_errors(
        &format!("{BASE}  my_api:\n    url: https://x.example/mcp\n"),
        &[
            "c.yaml:9:3: error: backends.my_api: prefix 'my_api' must start with a lowercase letter \
           and contain only lowercase letters, digits and '-' (^[a-z][a-z0-9-]*$); the prefix \
           defaults to the backend's name: set `prefix` or rename the backend",
        ],
    );
    assert_errors(
        &format!("{BASE}    prefix: my-tools\ngateway:\n  separator: \"-\"\n"),
        &[
            "c.yaml:9:13: error: backends.tools.prefix: prefix 'my-tools' contains the separator '-'",
        ],
    );
    assert_errors(
        &format!("{BASE}  other:\n    url: https://x.example/mcp\n    prefix: tools\n"),
        &[
            "c.yaml:11:13: error: backends.other.prefix: prefix 'tools' is already used by backend \
           'tools'",
        ],
    );
}

#[test]
fn unprefixed_and_disabled_backends_are_exempt_from_prefix_rules() {
    assert_valid(&format!(
        "{BASE}    prefix: \"\"\n  Old_One:\n    url: https://y.example/mcp\n    prefix: \
         tools\n    enabled: false\n"
    ));
    // A second unprefixed backend is allowed, but its resources cannot be routed.
    let run = validate(&format!(
        "{BASE}    prefix: \"\"\n  other:\n    url: https://x.example/mcp\n    prefix: \"\"\n"
    ));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.lines(),
        [
            "c.yaml:9:13: warning: backends.tools.prefix: backend 'other' is unprefixed too, and \
             a plain resource URI leads to it (the first in name order): this backend's \
             resources and resource templates are left out; give one of them a prefix",
            "c.yaml: valid, 1 warning",
        ],
    );
}

#[test]
fn globs_must_be_valid() {
    assert_errors(
        &format!("{BASE}    tools: {{ allow: [\"search_*\"], deny: [\"*_delete\", \"x[\"] }}\n"),
        &[
            "c.yaml:9:54: error: backends.tools.tools.deny[1]: invalid glob 'x[': '[' without a \
           closing ']'",
        ],
    );
}

#[test]
fn headers_must_be_valid_and_not_clash_with_the_proxy() {
    let yaml = format!(
        "{BASE}    headers:\n      X-Team: core\n      Bad Name: x\n      X-Bad-Value: \"a\\nb\"\n      \
         authorization: Bearer x\n      Mcp-Session-Id: s\n"
    );
    assert_errors(
        &yaml,
        &[
            "c.yaml:11:7: error: backends.tools.headers.Bad Name: 'Bad Name' is not a valid HTTP \
             header name",
            "c.yaml:12:20: error: backends.tools.headers.X-Bad-Value: not a valid HTTP header \
             value (only visible ASCII characters, spaces and tabs, on one line)",
            "c.yaml:13:7: error: backends.tools.headers.authorization: 'authorization' would \
             replace the bearer token of the backend's oidc_profile; remove the header or the \
             oidc_profile",
            "c.yaml:14:7: error: backends.tools.headers.Mcp-Session-Id: 'Mcp-Session-Id' is set \
             by the proxy itself and cannot be configured",
        ],
    );
    // Without an oidc_profile, a static Authorization header is how the server is reached.
    assert_valid(
        "backends:\n  status:\n    url: https://status.example/mcp\n    headers:\n      \
         Authorization: Bearer key\n",
    );
}

#[test]
fn no_backends_is_an_error_at_backends() {
    assert_errors(
        "oidc_profiles: {}\nbackends: {}\n",
        &["c.yaml:2:1: error: backends: no backends: define at least one under `backends`"],
    );
    assert_errors(
        "cache_dir: /tmp/x\n",
        &["c.yaml: error: backends: no backends: define at least one under `backends`"],
    );
    assert_errors(
        "backends:\n  a:\n    url: https://a.example/mcp\n    enabled: false\n",
        &[
            "c.yaml:1:1: error: backends: every backend is disabled (enabled: false): nothing to \
           serve",
        ],
    );
}

#[test]
fn unset_variables_warn_and_strict_makes_them_errors() {
    let yaml = BASE.replace(
        "client_id: cid",
        "client_id: cid\n    client_secret: ${CORP_SECRET}",
    );
    let line = "c.yaml:5:20: {}: oidc_profiles.corp.client_secret: environment variable \
                CORP_SECRET is not set and has no default (write ${CORP_SECRET:-default} to give \
                one); it expands to an empty string";
    let run = validate(&yaml);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.lines(),
        [&line.replace("{}", "warning"), "c.yaml: valid, 1 warning"]
    );
    let run = validate_with(&yaml, &["--strict"], &[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        [&line.replace("{}", "error"), "c.yaml: 1 error"]
    );
    // Set, or with a default: nothing to say.
    let run = validate_with(&yaml, &["--strict"], &[("CORP_SECRET", "s3cret")]);
    assert_eq!(run.lines(), ["c.yaml: valid"]);
    assert_valid(&yaml.replace("${CORP_SECRET}", "${CORP_SECRET:-}"));
}

#[test]
fn variables_are_expanded_before_the_rules_run() {
    let yaml = BASE.replace(
        "https://mcp.company.com/mcp",
        "${MCP_URL:-http://mcp.company.com/mcp}",
    );
    assert_errors(
        &yaml,
        &[
            "c.yaml:7:10: error: backends.tools.url: 'http://mcp.company.com/mcp' must use \
           https:// (http:// is only allowed on localhost, 127.0.0.1 or [::1])",
        ],
    );
    let run = validate_with(&yaml, &[], &[("MCP_URL", "https://ok.example/mcp")]);
    assert_eq!(run.lines(), ["c.yaml: valid"]);
    assert_errors(
        &BASE.replace("cid", "${CLIENT"),
        &[
            "c.yaml:4:16: error: oidc_profiles.corp.client_id: '${' without a closing '}' (write \
           '$$' for a literal '$')",
        ],
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let yaml = "oidc_profiles:\n  corp:\n    issuer_url: https://auth.company.com\n    \
                client_id: cid\n    login_timeout: soon\nbackends:\n  tools:\n    ulr: x\n    \
                oidc_profile: corp\ngateway:\n  separator: \"+\"\n";
    let run = validate(yaml);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        [
            "c.yaml:5:20: error: oidc_profiles.corp.login_timeout: expected a whole number, \
             found the text 'soon'",
            "c.yaml:7:3: error: backends.tools.url: missing required key 'url'",
            "c.yaml:8:5: error: backends.tools.ulr: unknown key; did you mean 'url'?",
            "c.yaml:11:14: error: gateway.separator: '+' is not allowed; expected one of '_', \
             '__', '-'",
            "c.yaml: 4 errors",
        ]
    );
}

#[test]
fn json_format_is_an_array_of_diagnostics() {
    let yaml = format!("{BASE}    ulr: x\n");
    let run = validate_with(&yaml, &["--format", "json"], &[]);
    assert_eq!(run.code, 1);
    let parsed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!([{
            "severity": "error",
            "path": "backends.tools.ulr",
            "line": 9,
            "column": 5,
            "message": "unknown key; did you mean 'url'?"
        }])
    );
    let run = validate_with("cache_dir: x\n", &["--format", "json"], &[]);
    let parsed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(parsed[0]["line"], serde_json::Value::Null);
    assert_eq!(parsed[0]["column"], serde_json::Value::Null);
    let run = validate_with(BASE, &["--format", "json"], &[]);
    assert_eq!(run.stdout.trim(), "[]");
    assert_eq!(run.code, 0);
}

#[test]
fn github_format_is_workflow_commands() {
    let yaml =
        BASE.replace("client_id: cid", "client_id: cid\n    client_secret: ${S}") + "    ulr: x\n";
    let run = validate_with(&yaml, &["--format", "github"], &[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        [
            "::warning file=c.yaml,line=5,col=20::oidc_profiles.corp.client_secret: environment \
             variable S is not set and has no default (write ${S:-default} to give one); it \
             expands to an empty string",
            "::error file=c.yaml,line=10,col=5::backends.tools.ulr: unknown key; did you mean \
             'url'?",
            "c.yaml: 1 error, 1 warning",
        ]
    );
}

#[test]
fn unreadable_files_and_missing_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = output(command(dir.path()).args(["validate", "nope.yaml"]));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read config file nope.yaml"),
        "{}",
        run.stderr
    );
    let run = output(command(dir.path()).arg("validate"));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no configuration file"),
        "{}",
        run.stderr
    );
    let run = output(command(dir.path()).args(["validate", "--format", "xml", "c.yaml"]));
    assert_eq!(run.code, 2);
}

#[test]
fn the_file_defaults_to_config_or_its_env_var() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), BASE).unwrap();
    let run = output(command(dir.path()).args(["--config", "c.yaml", "validate"]));
    assert_eq!((run.code, run.stdout.as_str()), (0, "c.yaml: valid\n"));
    let run = output(
        command(dir.path())
            .arg("validate")
            .env("AUTHFUL_MCP_CONFIG", "c.yaml"),
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, "c.yaml: valid\n"));
}

#[test]
fn the_example_configuration_is_valid_without_any_env_var() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = output(command(root).args(["validate", "--strict", "config.example.yaml"]));
    assert_eq!(run.stdout, "config.example.yaml: valid\n", "{}", run.stderr);
    assert_eq!(run.code, 0);
    let first = std::fs::read_to_string(root.join("config.example.yaml")).unwrap();
    assert_eq!(
        first.lines().next(),
        Some("# yaml-language-server: $schema=./schemas/config.schema.json")
    );
    // It shows every key the schema knows, written or commented out.
    let schema = authful_mcp_proxy::config::json_schema();
    let mut objects = vec![&schema];
    objects.extend(schema["$defs"].as_object().unwrap().values());
    let missing: Vec<&String> = objects
        .iter()
        .filter_map(|o| o["properties"].as_object())
        .flat_map(|p| p.keys())
        .filter(|key| !first.contains(&format!("{key}:")))
        .collect();
    assert!(missing.is_empty(), "config.example.yaml lacks {missing:?}");
}

/// Waits for the proxy to exit by itself, with stdin left open: the error must not wait for
/// the client.
fn exit_within(child: &mut Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap();
        }
        assert!(start.elapsed() < limit, "the proxy did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_proxy_refuses_an_invalid_file_with_the_same_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("{BASE}    ulr: x\n    prefix: Bad\n");
    std::fs::write(dir.path().join("c.yaml"), &yaml).unwrap();
    let mut child = command(dir.path())
        .args(["--config", "c.yaml"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let code = exit_within(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "", "stdout is for JSON-RPC only");
    assert_eq!(stderr, validate(&yaml).stdout);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn the_proxy_warns_about_unset_variables_and_env_vars_fill_the_file() {
    // The file names the profile; the drop-in's env vars supply the backend.
    let dir = tempfile::tempdir().unwrap();
    let yaml = "oidc_profiles:\n  default:\n    issuer_url: https://127.0.0.1:9/realms/x\n    \
                client_id: cid\n    client_secret: ${UNSET_SECRET}\n";
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let run = output(
        command(dir.path())
            .args(["--config", "c.yaml"])
            .env("MCP_BACKEND_URL", "http://127.0.0.1:9/mcp"),
    );
    let mut lines = run.stderr.lines();
    assert!(
        lines.next().is_some_and(|l| l.starts_with(
            "c.yaml:5:20: warning: oidc_profiles.default.client_secret: environment variable \
             UNSET_SECRET is not set"
        )),
        "{}",
        run.stderr
    );
    // Past the checks: the banner shows the backend from the env var.
    assert!(
        run.stderr.contains("backend  http://127.0.0.1:9/mcp"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_url_argument_still_runs_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let run = output(command(dir.path()).arg("https://mcp.example.com/mcp"));
    // Not clap's usage error for an unknown subcommand: the missing issuer is the
    // configuration error it always was (exit 2, as every configuration error).
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("OIDC_ISSUER_URL"), "{}", run.stderr);
    assert!(!run.stderr.contains("subcommand"), "{}", run.stderr);
}

/// Start-up resolves every layer with the same rules as `validate`, reports every problem at
/// once, and names the env var or flag of each value that is not from the file.
#[test]
fn start_up_names_the_env_var_or_flag_of_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let run = output(
        command(dir.path())
            .args(["--oidc-redirect-url", "https://localhost:8080/cb"])
            .env("MCP_BACKEND_URL", "http://mcp.company.com/mcp")
            .env("OIDC_ISSUER_URL", "http://auth.company.com")
            .env("OIDC_CLIENT_ID", "cid"),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "", "stdout is for JSON-RPC only");
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "authful-mcp-proxy: error: oidc_profiles.default.issuer_url: 'http://auth.company.com' \
             must use https:// (http:// is only allowed on localhost, 127.0.0.1 or [::1]) (from \
             OIDC_ISSUER_URL)",
            "authful-mcp-proxy: error: oidc_profiles.default.redirect_url: \
             'https://localhost:8080/cb' must be http:// on localhost, 127.0.0.1 or [::1] with \
             an explicit port, e.g. http://localhost:8080/auth/callback (from \
             --oidc-redirect-url)",
            "authful-mcp-proxy: error: backends.default.url: 'http://mcp.company.com/mcp' must \
             use https:// (http:// is only allowed on localhost, 127.0.0.1 or [::1]) (from \
             MCP_BACKEND_URL)",
        ]
    );
}

/// A header rule holds for a header from an `AUTHFUL_MCP_*` env var as for one in the file,
/// in the same words, before anything connects.
#[test]
fn header_rules_hold_for_headers_from_env_vars() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), BASE).unwrap();
    let run = output(
        command(dir.path())
            .args(["--config", "c.yaml"])
            .env(
                "AUTHFUL_MCP_BACKENDS__TOOLS__HEADERS__AUTHORIZATION",
                "Bearer x",
            )
            .env("AUTHFUL_MCP_GATEWAY__MAX_NAME_LENGTH", "8"),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "authful-mcp-proxy: error: backends.tools.headers.authorization: 'authorization' \
             would replace the bearer token of the backend's oidc_profile; remove the header or \
             the oidc_profile (from AUTHFUL_MCP_BACKENDS__TOOLS__HEADERS__AUTHORIZATION)",
            "authful-mcp-proxy: error: gateway.max_name_length: 8 must be at least 16 (from \
             AUTHFUL_MCP_GATEWAY__MAX_NAME_LENGTH)",
            "c.yaml: 2 errors",
        ]
    );
}

/// The sign-in settings: a service account needs credentials (one kind, not two), the
/// parameters the proxy sets itself cannot be overridden, and a resource indicator is an
/// absolute URL without a fragment.
#[test]
fn sign_in_settings_are_checked() {
    let with = |profile: &str, backend: &str| {
        BASE.replace(
            "    client_id: cid\n",
            &format!("    client_id: cid\n{profile}"),
        )
        .replace(
            "    oidc_profile: corp\n",
            &format!("    oidc_profile: corp\n{backend}"),
        )
    };
    assert_errors(
        &with("    flow: client_credentials\n", ""),
        &[
            "c.yaml:5:11: error: oidc_profiles.corp.flow: client_credentials needs the client's \
           credentials: set client_secret, or client_assertion with a key_file",
        ],
    );
    assert_errors(
        &with(
            "    client_secret: s\n    client_assertion:\n      key_file: /k.pem\n",
            "",
        ),
        &[
            "c.yaml:7:7: error: oidc_profiles.corp.client_assertion: set either client_secret or \
           client_assertion, not both: the client authenticates one way",
        ],
    );
    assert_errors(
        &with(
            "    authorize_params:\n      prompt: consent\n      state: x\n      code_challenge_method: plain\n",
            "",
        ),
        &[
            "c.yaml:7:14: error: oidc_profiles.corp.authorize_params.state: 'state' is set by \
             the proxy itself and cannot be overridden",
            "c.yaml:8:30: error: oidc_profiles.corp.authorize_params.code_challenge_method: \
             'code_challenge_method' is set by the proxy itself and cannot be overridden",
        ],
    );
    assert_errors(
        &with("", "    resource: https://mcp.company.com/mcp#frag\n"),
        &[
            "c.yaml:9:15: error: backends.tools.resource: 'https://mcp.company.com/mcp#frag' has \
           a fragment (#...); a resource indicator has none",
        ],
    );
    assert_valid(&with(
        "    flow: device\n    open_browser: false\n    resource: false\n    authorize_params:\n      prompt: login\n",
        "    resource: true\n",
    ));
    assert_valid(&with(
        "    flow: client_credentials\n    client_assertion:\n      key_file: ~/keys/ci.pem\n      algorithm: ES256\n      key_id: ci-1\n      audience: issuer\n",
        "    resource: https://mcp.company.com/mcp\n",
    ));
}

#[test]
fn a_backend_signs_in_one_way() {
    assert_valid("backends:\n  public:\n    url: https://mcp.example.com/mcp\n    auth: oauth\n");
    assert_errors(
        "oidc_profiles:\n  corp:\n    client_id: c\nbackends:\n  public:\n    url: \
         https://mcp.example.com/mcp\n    auth: oauth\n    oidc_profile: corp\n",
        &[
            "c.yaml:7:11: error: backends.public.auth: auth: oauth and oidc_profile both say how \
           to sign in; keep one (oidc_profile for a server that takes your identity provider's \
           tokens, auth: oauth for one that runs OAuth itself)",
        ],
    );
    assert_errors(
        "gateway:\n  client_metadata_url: http://tools.example.com/c.json\nbackends:\n  \
         public:\n    url: https://mcp.example.com/mcp\n    auth: oauth\n",
        &[
            "c.yaml:2:24: error: gateway.client_metadata_url: 'http://tools.example.com/c.json' \
           is not a client ID metadata document's URL: it must be https:// with a path",
        ],
    );
}

#[test]
fn cross_app_access_names_where_the_id_token_comes_from() {
    let with = |assertion: &str| {
        format!(
            "oidc_profiles:\n  corp:\n    issuer_url: https://login.company.com\n    client_id: \
             gw\n  server:\n    issuer_url: https://as.example.com\n    client_id: c\n    \
             identity_assertion:\n{assertion}backends:\n  tools:\n    url: \
             https://mcp.example.com/mcp\n    oidc_profile: server\n"
        )
    };
    assert_valid(&with("      profile: corp\n"));
    assert_valid(&with(
        "      issuer_url: https://login.company.com\n      client_id: gw\n      \
         id_token_file: ~/.sso/id_token\n",
    ));
    assert_errors(
        &with("      profile: nowhere\n"),
        &[
            "c.yaml:9:16: error: oidc_profiles.server.identity_assertion.profile: no OIDC \
           profile named 'nowhere'",
        ],
    );
    assert_errors(
        &with("      profile: server\n"),
        &[
            "c.yaml:9:16: error: oidc_profiles.server.identity_assertion.profile: profile \
           'server' cannot provide the ID token: it must sign in at an issuer_url of its own, \
           not by an identity assertion",
        ],
    );
    assert_errors(
        &with("      issuer_url: https://login.company.com\n      client_id: gw\n"),
        &[
            "c.yaml:8:5: error: oidc_profiles.server.identity_assertion.id_token_file: missing \
           required key 'id_token_file'",
        ],
    );
}
