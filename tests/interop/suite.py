"""Interop scenarios for authful-mcp-proxy against real third-party components.

Run through ./run, which installs everything and sets:
  AUTHFUL_MCP_PROXY_BIN   the proxy binary under test
  INTEROP_RUN_DIR         where every scenario leaves its logs
  INTEROP_PARITY_PYTHON   python of the optional venv with the Python original (may be unset)
  INTEROP_ONLY            optional comma-separated scenario names to run

Each scenario starts its own processes on 127.0.0.1 with fresh ports and a fresh HOME, and stops
them when it ends. The harness (processes, components, client side, checks) is in harness.py.
"""

from __future__ import annotations

from harness import *  # noqa: F401,F403  (the scenarios' vocabulary)
from harness import _spawned  # noqa: F401

import base64

from mcp.shared.exceptions import MCPError

# --------------------------------------------------------------------------------------------
# Scenarios


def first_login_public_client(sc: Scenario) -> None:
    idp, backend_url, cb = fastmcp_stack(sc)
    home = sc.home()
    env = sc.proxy_env(home, backend_url, idp.issuer, cb)
    out: dict = {}

    async def body(session: ClientSession) -> None:
        out["whoami"] = await call_json(session, "whoami")
        tools, pages = await list_all(session, "tools")
        out["tools"], out["pages"] = sorted(t.name for t in tools), pages
        out["echo"] = await call_json(session, "echo", {"text": "héllo interop"})
        out["add"] = await call_json(session, "add", {"a": 2, "b": 40})

    asyncio.run(with_proxy(sc, env, body))
    check_whoami(out["whoami"], "interop-public")
    check(out["tools"] == ["add", "count_with_progress", "echo", "whoami"], f"tools/list gave {out['tools']}")
    check(out["pages"] == 1, f"tools/list came in {out['pages']} pages: the backend pages by 2, the proxy answers whole")
    check(out["echo"] == "héllo interop", f"echo gave {out['echo']!r}")
    check(out["add"] == 42, f"add gave {out['add']!r}")
    url = auth_url_line(sc.dir / "proxy.stderr.log")
    check(url is not None and url.startswith(f"{idp.issuer}/auth?"), f"no 'in your browser: {idp.issuer}/auth?...' line on stderr (got {url!r})")
    check("code_challenge_method=S256" in url, "authorization URL without code_challenge_method=S256")
    check(browser_finished(sc), f"browser stand-in did not finish:\n{tail(sc.dir / 'browser.log')}")
    check("connection refused" not in (sc.dir / "browser.log").read_text(), "the browser was opened before the callback server listened")
    path = cache_file(home)
    mode = stat.S_IMODE(path.stat().st_mode)
    check(mode == 0o600, f"{path.name} has mode {oct(mode)}, expected 0o600")
    dmode = stat.S_IMODE(path.parent.stat().st_mode)
    check(dmode == 0o700, f"{path.parent} has mode {oct(dmode)}, expected 0o700")
    tokens = json.loads(path.read_text())
    check(bool(tokens.get("access_token")) and bool(tokens.get("refresh_token")), f"cache file lacks tokens: keys {sorted(tokens)}")
    grants = [e for e in idp.events() if e["event"] == "grant.success"]
    check([g["grant_type"] for g in grants] == ["authorization_code"], f"IdP saw grants {[g['grant_type'] for g in grants]}")
    check_no_secrets([sc.dir / "proxy.stderr.log"], [tokens["access_token"], tokens["refresh_token"]])


def cached_login_no_browser(sc: Scenario) -> None:
    idp, backend_url, cb = fastmcp_stack(sc)
    home = sc.home()
    check_whoami(login_once(sc, idp, backend_url, cb, home), "interop-public")
    before = cached_tokens(home)
    out: dict = {}
    env = sc.proxy_env(home, backend_url, idp.issuer, cb, browser="fail", label="failing-browser")
    asyncio.run(with_proxy(sc, env, whoami_body(out), args=["--login-timeout", "15"], label="proxy-cached"))
    check(not browser_invoked(sc, "failing-browser"), "the second run opened the browser")
    check(auth_url_line(sc.dir / "proxy-cached.stderr.log") is None, "the second run printed an authorization URL")
    check_whoami(out["whoami"], "interop-public")
    check(cached_tokens(home) == before, "the cache file changed although the cached access token was fresh")
    grants = [e["grant_type"] for e in idp.events() if e["event"] == "grant.success"]
    check(grants == ["authorization_code"], f"IdP saw grants {grants}; expected only the first login")


def refresh_with_rotation(sc: Scenario) -> None:
    idp, backend_url, cb = fastmcp_stack(sc, access_ttl=10)
    home = sc.home()
    first = login_once(sc, idp, backend_url, cb, home)
    check_whoami(first, "interop-public")
    rt1 = cached_tokens(home)["refresh_token"]
    jtis = [first["claims"].get("jti")]
    rts = [rt1]
    for run in (2, 3):
        out: dict = {}
        env = sc.proxy_env(home, backend_url, idp.issuer, cb, browser="fail", label="failing-browser")
        asyncio.run(with_proxy(sc, env, whoami_body(out), args=["--login-timeout", "15"], label=f"proxy-run{run}"))
        check(not browser_invoked(sc, "failing-browser"), f"run {run} opened the browser")
        check_whoami(out["whoami"], "interop-public")
        jtis.append(out["whoami"]["claims"].get("jti"))
        rts.append(cached_tokens(home)["refresh_token"])
        check(rts[-1] != rts[-2], f"run {run}: the refresh token in the cache file did not change")
    check(len(set(jtis)) == 3, f"the three runs did not use three different access tokens: {jtis}")
    grants = [e["grant_type"] for e in idp.events() if e["event"] == "grant.success"]
    check(grants[0] == "authorization_code" and grants.count("authorization_code") == 1, f"IdP grants {grants}")
    check(grants.count("refresh_token") >= 2, f"IdP saw {grants.count('refresh_token')} refresh grant(s), expected >= 2: {grants}")
    errors = [e for e in idp.events() if e["event"] in ("grant.error", "server_error")]
    check(not errors, f"IdP reported errors: {errors}")
    check_no_secrets([sc.dir / f"proxy-run{r}.stderr.log" for r in (2, 3)], rts)


def short_error(message: str) -> str:
    """`label: ...Io error: <cause>, when ...` -> `label: <cause>` for proxy errors relayed to the client."""
    message = message.split("; stderr tail:")[0]
    label = message.split(":", 1)[0]
    m = re.search(r"Io error: (.*?)(?:, when |$)", message)
    return f"{label}: {m.group(1)}" if m else message


def concurrent_processes_shared_cache(sc: Scenario) -> None:
    """Proxy processes with one cache file (server entries with the same issuer and client in one
    desktop client) start together while the cached access token needs a refresh: all must work
    without a browser, and the IdP must never see a refresh token used twice. The race is timing
    dependent, so up to ROUNDS rounds of PROCS processes run."""
    rounds, procs = 3, 3
    idp, backend_url, cb = fastmcp_stack(sc)
    home = sc.home()
    check_whoami(login_once(sc, idp, backend_url, cb, home), "interop-public")
    for rnd in range(1, rounds + 1):
        # The access token expired meanwhile (a night's sleep, say): every process needs a refresh.
        path = cache_file(home)
        tokens = json.loads(path.read_text())
        tokens["expires_at"] = int(time.time()) - 5
        path.write_text(json.dumps(tokens))
        labels = [f"r{rnd}-proxy-{chr(97 + i)}" for i in range(procs)]
        outs: list[dict] = [{} for _ in labels]

        async def together():
            runs = []
            for i, label in enumerate(labels):
                env = sc.proxy_env(home, backend_url, idp.issuer, cb, browser="fail", label=f"failing-browser-{label}")
                runs.append(with_proxy(sc, env, whoami_body(outs[i]), args=["--login-timeout", "3"], label=label))
            return await asyncio.gather(*runs, return_exceptions=True)

        results = asyncio.run(together())
        failed = [short_error(str(r)) for r in results if isinstance(r, BaseException)]
        reused = [e for e in idp.events() if e["event"] in ("grant.revoked", "grant.error") and e.get("grant_type") == "refresh_token"]
        opened = [label for label in labels if browser_invoked(sc, f"failing-browser-{label}")]
        problems = []
        if reused:
            problems.append(f"the IdP saw a refresh token used twice and revoked the grant ({', '.join(e['event'] for e in reused)})")
        if opened:
            problems.append(f"browser opened by {', '.join(opened)}")
        if failed:
            problems.append(f"{len(failed)} of {procs} processes failed")
        if problems:
            raise Failure(f"round {rnd}: " + "; ".join(problems) + "\n" + "\n".join(m[:400] for m in failed))
        for out in outs:
            check_whoami(out["whoami"], "interop-public")


def refresh_refused_relogin(sc: Scenario) -> None:
    """The provider forgets the grant (restart): the refresh is refused, the browser logs in again."""
    idp, backend_url, cb = fastmcp_stack(sc, access_ttl=10)
    home = sc.home()
    check_whoami(login_once(sc, idp, backend_url, cb, home), "interop-public")
    rt1 = cached_tokens(home)["refresh_token"]
    idp_proc = next(p for p in sc.procs if p.name == "idp")
    idp_proc.stop()
    sc.procs.remove(idp_proc)
    idp = sc.start_idp(backend_url, [cb], access_ttl=10, port=idp.port, name="idp-restarted")
    out: dict = {}
    env = sc.proxy_env(home, backend_url, idp.issuer, cb, label="browser-relogin")
    asyncio.run(with_proxy(sc, env, whoami_body(out), args=["--login-timeout", "30"], label="proxy-relogin"))
    check_whoami(out["whoami"], "interop-public")
    check(browser_finished(sc, "browser-relogin"), f"no second browser login:\n{tail(sc.dir / 'browser-relogin.log')}")
    events = idp.events()
    refused = [e for e in events if e["event"] == "grant.error" and e.get("grant_type") == "refresh_token"]
    check(refused, f"the restarted IdP refused no refresh token; events: {[e['event'] for e in events]}")
    check(cached_tokens(home)["refresh_token"] != rt1, "the cache still holds the refused refresh token")


def login_timeout_fails_cleanly(sc: Scenario) -> None:
    """Nobody completes the login: the pending request fails after --login-timeout, no hang."""
    idp, backend_url, cb = fastmcp_stack(sc)
    env = sc.proxy_env(sc.home(), backend_url, idp.issuer, cb, browser="fail", label="failing-browser")
    out: dict = {}
    started = time.monotonic()
    try:
        asyncio.run(with_proxy(sc, env, whoami_body(out), args=["--login-timeout", "3"], label="proxy-timeout", timeout=30))
    except Failure as e:
        message = str(e).split("; stderr tail:")[0]
    else:
        raise Failure(f"the call succeeded without a login: {out}")
    took = time.monotonic() - started
    check(browser_invoked(sc, "failing-browser"), "the browser was not opened for the login")
    check("login timed out" in message, f"the client got no 'login timed out' error: {message[:300]}")
    check(took < 20, f"the failure took {took:.0f}s with --login-timeout 3")
    check(auth_url_line(sc.dir / "proxy-timeout.stderr.log") is not None, "no authorization URL on stderr")


def consent_denied(sc: Scenario) -> None:
    """The user cancels at the consent page: the client gets a clear error within seconds."""
    idp, backend_url, cb = fastmcp_stack(sc)
    env = sc.proxy_env(sc.home(), backend_url, idp.issuer, cb)
    env["INTEROP_CONSENT"] = "deny"
    out: dict = {}
    started = time.monotonic()
    try:
        asyncio.run(with_proxy(sc, env, whoami_body(out), args=["--login-timeout", "60"], label="proxy-denied", timeout=30))
    except Failure as e:
        message = str(e).split("; stderr tail:")[0]
    else:
        raise Failure(f"the call succeeded although consent was denied: {out}")
    took = time.monotonic() - started
    check("access_denied" in message, f"the client's error does not say access_denied: {message[:300]}")
    check("no answer within" not in message, f"the client waited for a timeout instead: {message[:300]}")
    check(took < 15, f"the denial took {took:.0f}s to reach the client (login timeout 60 s)")
    browser = (sc.dir / "browser.log").read_text(errors="replace")
    check("denying consent" in browser, f"the browser stand-in did not deny consent:\n{tail(sc.dir / 'browser.log')}")
    check("Login failed" in browser, f"the callback page did not say 'Login failed':\n{tail(sc.dir / 'browser.log')}")
    errors = [e for e in idp.events() if e["event"] == "authorization.error"]
    check(any("access_denied" in (e.get("error") or "") for e in errors), f"the IdP recorded no access_denied: {errors}")
    check(not [e for e in idp.events() if e["event"] == "grant.success"], "the IdP issued tokens although consent was denied")


def confidential_client(sc: Scenario) -> None:
    """client_secret_basic with offline_access; the access token expires within seconds and is
    refreshed silently in the session; after the next expiry a new process refreshes with the
    rotated refresh token from the cache, without a browser."""
    ttl = 4
    idp, backend_url, cb = fastmcp_stack(sc, access_ttl=ttl)
    home = sc.home()
    env = sc.proxy_env(
        home, backend_url, idp.issuer, cb, client_id="interop-confidential", secret=SECRET,
        scopes="openid profile email offline_access",
    )
    out: dict = {}

    async def body(session: ClientSession) -> None:
        out["first"] = await call_json(session, "whoami")
        out["rt_first"] = cached_tokens(home)["refresh_token"]
        await anyio.sleep(ttl + 1)  # the access token has expired now
        out["second"] = await call_json(session, "whoami")

    asyncio.run(with_proxy(sc, env, body, label="proxy-login"))
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    for which in ("first", "second"):
        check_whoami(out[which], "interop-confidential")
    jti = [out[w]["claims"].get("jti") for w in ("first", "second")]
    check(jti[0] != jti[1], f"the same access token was used after it expired: {jti}")
    exp = out["second"]["claims"].get("exp", 0)
    check(exp - out["second"]["claims"].get("iat", 0) <= ttl, f"the IdP issued a token living longer than {ttl}s")
    rt_in_session = cached_tokens(home)["refresh_token"]
    check(rt_in_session != out["rt_first"], "the silent refresh did not persist the rotated refresh token")

    time.sleep(ttl + 1)  # the next expiry
    later: dict = {}
    env2 = sc.proxy_env(
        home, backend_url, idp.issuer, cb, client_id="interop-confidential", secret=SECRET,
        scopes="openid profile email offline_access", browser="fail", label="failing-browser",
    )
    asyncio.run(with_proxy(sc, env2, whoami_body(later), args=["--login-timeout", "10"], label="proxy-later"))
    check(not browser_invoked(sc, "failing-browser"), "the new process opened the browser")
    check_whoami(later["whoami"], "interop-confidential")
    check(later["whoami"]["claims"].get("jti") not in jti, "the new process used an expired access token")
    check(cached_tokens(home)["refresh_token"] != rt_in_session, "the new process did not rotate the refresh token")

    grants = [(e["grant_type"], e["client"]) for e in idp.events() if e["event"] == "grant.success"]
    check(grants[0] == ("authorization_code", "interop-confidential"), f"IdP grants {grants}")
    check(grants.count(("authorization_code", "interop-confidential")) == 1, f"more than one login: {grants}")
    check(grants.count(("refresh_token", "interop-confidential")) >= 2, f"expected >= 2 refresh grants: {grants}")
    errors = [e for e in idp.events() if e["event"] in ("grant.error", "server_error")]
    check(not errors, f"IdP reported errors: {errors}")
    tokens = cached_tokens(home)
    logs = [sc.dir / "proxy-login.stderr.log", sc.dir / "proxy-later.stderr.log"]
    check_no_secrets(logs, [SECRET, tokens["access_token"], tokens.get("refresh_token", ""), rt_in_session, out["rt_first"]])


# Arguments for every tool server-everything lists; a tool missing here fails the scenario, so a
# new server-everything release cannot add a tool that goes unexercised. Lists mean several calls.
EVERYTHING_CALLS: dict[str, list[dict]] = {
    "echo": [{"message": "through the proxy ✓"}],
    "get-annotated-message": [
        {"messageType": "error", "includeImage": True}, {"messageType": "success"}, {"messageType": "debug"},
    ],
    "get-env": [{}],
    "get-resource-links": [{"count": 4}],
    "get-resource-reference": [{"resourceType": "Text", "resourceId": 2}, {"resourceType": "Blob", "resourceId": 3}],
    "get-structured-content": [{"location": "Chicago"}],
    "get-sum": [{"a": 19, "b": 23}, {"a": "not a number", "b": 1}],
    "get-tiny-image": [{}],
    "gzip-file-as-resource": [
        {"name": "note.txt.gz", "data": "data:text/plain;base64,aW50ZXJvcCBub3RlCg==", "outputType": "resource"},
        {"name": "link.txt.gz", "data": "data:text/plain;base64,aW50ZXJvcCBsaW5rCg==", "outputType": "resourceLink"},
    ],
    "trigger-long-running-operation": [{"duration": 1, "steps": 3}],
    "trigger-sampling-request": [{"prompt": "hi", "maxTokens": 10}],
    "trigger-elicitation-request": [{}],
    "trigger-url-elicitation": [{"url": "https://consent.interop.test/approve", "elicitationId": "interop-elicitation"}],
    "get-roots-list": [{}],
    # A task-only tool (experimental tasks): called plainly, the error must match too; its tasks
    # are run by exercise_tasks.
    "simulate-research-query": [{"topic": "interop"}],
    # Driven by the subscription and logging steps below.
    "toggle-simulated-logging": [],
    "toggle-subscriber-updates": [],
}
EVERYTHING_PROMPT_ARGS: dict[str, dict[str, str]] = {
    "simple-prompt": {},
    "args-prompt": {"city": "Lisbon", "state": "LX"},
    "completable-prompt": {"department": "Engineering", "name": "Alice"},
    "resource-prompt": {"resourceType": "Text", "resourceId": "2"},
}

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CLOCK_RE = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\s?[AP]M)?")
TIMESTAMP_RE = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def normalized(value: Any) -> Any:
    """A result with what legitimately differs between two sessions masked: the backend's
    session ids (server-everything puts them in texts), wall-clock times of dynamic
    resources (also inside base64 blobs) and the ISO 8601 times of tasks (createdAt,
    lastUpdatedAt)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "blob" and isinstance(v, str):
                try:
                    v = "decoded:" + normalized(base64.b64decode(v).decode("utf-8"))
                except ValueError:
                    pass  # binary: compared as is
            out[k] = normalized(v)
        return out
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, str):
        return CLOCK_RE.sub("<time>", TIMESTAMP_RE.sub("<timestamp>", UUID_RE.sub("<uuid>", value)))
    return value


async def outcome(step: Awaitable[Any]) -> Any:
    """A request's result (a model, or a dict as it came), or the JSON-RPC error it got (errors
    must match too)."""
    try:
        result = await step
    except MCPError as e:
        return {"jsonrpc_error": dump(e.error)}
    return result if isinstance(result, dict) else dump(result)


TERMINAL_TASK_STATUSES = ("completed", "failed", "cancelled")


async def raw_request(session: ClientSession, method: str, params: dict | None = None) -> dict:
    """A request sent with the session's headers and its result as it came, unvalidated. The
    SDK's typed path does not fit experimental tasks: for 2025-11-25 it validates every
    tools/call answer as a CallToolResult, so a task's CreateTaskResult would be refused."""
    data = {"method": method, "params": params or {}}
    opts: dict = {}
    session._stamp(data, opts)  # what send_request adds: the negotiated version's header
    return await session._dispatcher.send_raw_request(method, data["params"], opts)


def record_task_statuses(session: ClientSession) -> list[dict]:
    """The params of every notifications/tasks/status the session receives from now on. The SDK
    drops them unread (its 2025-11-25 tables lack them), so they are taken where its dispatcher
    shows a session each notification first."""
    seen: list[dict] = []
    dispatcher = session._dispatcher
    intercept = dispatcher._on_notify_intercept

    def recording(method: str, params: Any) -> bool:
        if method == "notifications/tasks/status":
            seen.append(dict(params or {}))
        return intercept(method, params) if intercept else False

    dispatcher._on_notify_intercept = recording
    return seen


def masked_task_ids(value: Any, ids: dict[str, str]) -> Any:
    """`value` with each task id named as in `ids` (`<task 1>`, ...): ids are random, but which
    answer names which task must match."""
    text = json.dumps(value)
    for task_id, name in ids.items():
        text = text.replace(task_id, name)
    return json.loads(text)


async def exercise_tasks(session: ClientSession) -> dict[str, Any]:
    """Experimental tasks (2025-11-25) on the task-only simulate-research-query: a task-augmented
    tools/call creates a task, tasks/get is polled until its status is terminal (the distinct
    statuses seen are recorded), tasks/result gives the tool's result, tasks/list names the task;
    a second task is cancelled at once, and cancelling it again, its result and an unknown task
    are errors; the server's notifications/tasks/status for both arrive. Every step goes through
    `outcome`, so errors are compared too."""
    r: dict[str, Any] = {}
    ids: dict[str, str] = {}
    told = record_task_statuses(session)

    async def create(topic: str) -> str | None:
        params = {"name": "simulate-research-query", "arguments": {"topic": topic}, "task": {"ttl": 60000}}
        created = await outcome(raw_request(session, "tools/call", params))
        task_id = (created.get("task") or {}).get("taskId")
        if task_id:
            ids[task_id] = f"<task {len(ids) + 1}>"
        r[f"tools/call simulate-research-query with task ({topic})"] = created
        return task_id

    task_id = await create("interop")
    if task_id:
        statuses: list = []
        got: dict = {}
        with anyio.move_on_after(30):
            while True:
                got = await outcome(raw_request(session, "tasks/get", {"taskId": task_id}))
                if not statuses or statuses[-1] != got.get("status"):
                    statuses.append(got.get("status"))
                if got.get("status") in TERMINAL_TASK_STATUSES or "jsonrpc_error" in got:
                    break
                await anyio.sleep(min(got.get("pollInterval") or 500, 2000) / 1000)
        r["tasks/get until terminal"] = got
        r["tasks/get statuses seen"] = statuses
        r["tasks/result"] = await outcome(raw_request(session, "tasks/result", {"taskId": task_id}))
    r["tasks/list"] = await outcome(raw_request(session, "tasks/list"))

    task_id = await create("cancelled")
    if task_id:
        for step in ("tasks/cancel", "tasks/cancel again", "tasks/result"):
            method = step.split()[0]
            r[f"{step} of the cancelled task"] = await outcome(raw_request(session, method, {"taskId": task_id}))
    r["tasks/get unknown"] = await outcome(raw_request(session, "tasks/get", {"taskId": "no-such-task"}))
    r["tasks/list after cancelling"] = await outcome(raw_request(session, "tasks/list"))
    with anyio.move_on_after(5):  # server-everything tells the second task's first status too
        while task_id and not any(n.get("taskId") == task_id for n in told):
            await anyio.sleep(0.1)
    r["notifications/tasks/status"] = told
    return masked_task_ids(r, ids)


async def exercise_everything(session: ClientSession, notes: list) -> dict[str, Any]:
    """Everything server-everything offers, through one client session; returns one entry per step."""
    r: dict[str, Any] = {}
    init = session.interop_initialize
    r["initialize"] = {k: v for k, v in dump(init).items() if k != "_meta"}
    tools, _ = await list_all(session, "tools")
    r["tools/list"] = [dump(t) for t in tools]
    for tool in tools:
        check(tool.name in EVERYTHING_CALLS, f"server-everything has a tool this scenario does not exercise: {tool.name}")
        for i, args in enumerate(EVERYTHING_CALLS[tool.name]):
            progress: list = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append([p, total, message])

            r[f"tools/call {tool.name} #{i}"] = await outcome(session.call_tool(tool.name, args, progress_callback=on_progress))
            if progress:
                r[f"progress {tool.name} #{i}"] = sorted(progress, key=lambda x: x[0])
    r["tools/call unknown"] = await outcome(session.call_tool("no-such-tool", {}))
    r.update(await exercise_tasks(session))

    resources, _ = await list_all(session, "resources")
    r["resources/list"] = [dump(x) for x in resources]
    for res in resources[:12]:
        r[f"resources/read {res.uri}"] = await outcome(session.read_resource(str(res.uri)))
    templates, _ = await list_all(session, "resource_templates")
    r["resources/templates/list"] = [dump(t) for t in templates]
    for uri in ("demo://resource/dynamic/text/3", "demo://resource/dynamic/blob/4", "demo://no/such/resource"):
        r[f"resources/read {uri}"] = await outcome(session.read_resource(uri))

    # Subscribe, let the server push updates, stop them.
    subscribed = "demo://resource/dynamic/text/1"
    r["resources/subscribe"] = await outcome(session.subscribe_resource(subscribed))
    r["toggle-subscriber-updates on"] = await outcome(session.call_tool("toggle-subscriber-updates", {}))
    with anyio.move_on_after(8):
        while not any(getattr(n, "method", "") == "notifications/resources/updated" for n in notes):
            await anyio.sleep(0.1)
    r["toggle-subscriber-updates off"] = await outcome(session.call_tool("toggle-subscriber-updates", {}))
    r["resources/unsubscribe"] = await outcome(session.unsubscribe_resource(subscribed))

    prompts, _ = await list_all(session, "prompts")
    r["prompts/list"] = [dump(p) for p in prompts]
    for prompt in prompts:
        check(prompt.name in EVERYTHING_PROMPT_ARGS, f"server-everything has a prompt this scenario does not exercise: {prompt.name}")
        r[f"prompts/get {prompt.name}"] = await outcome(session.get_prompt(prompt.name, EVERYTHING_PROMPT_ARGS[prompt.name]))
    r["prompts/get missing argument"] = await outcome(session.get_prompt("args-prompt", {}))

    prompt_ref = types.PromptReference(type="ref/prompt", name="completable-prompt")
    r["completion prompt"] = await outcome(session.complete(prompt_ref, {"name": "department", "value": "Eng"}))
    r["completion prompt with context"] = await outcome(
        session.complete(prompt_ref, {"name": "name", "value": ""}, context_arguments={"department": "Sales"})
    )
    template_ref = types.ResourceTemplateReference(type="ref/resource", uri="demo://resource/dynamic/text/{resourceId}")
    r["completion resource template"] = await outcome(session.complete(template_ref, {"name": "resourceId", "value": "1"}))

    # Logging: the level is honoured and simulated messages arrive.
    r["logging/setLevel"] = await outcome(session.set_logging_level("debug"))
    r["toggle-simulated-logging on"] = await outcome(session.call_tool("toggle-simulated-logging", {}))
    with anyio.move_on_after(8):
        while not any("SessionId" in str(getattr(getattr(n, "params", None), "data", "")) for n in notes):
            await anyio.sleep(0.1)
    r["toggle-simulated-logging off"] = await outcome(session.call_tool("toggle-simulated-logging", {}))
    r["ping"] = await outcome(session.send_ping())
    return r


def notification_summary(notes: list) -> dict[str, Any]:
    """What a client saw pushed: resource updates by URI, log messages (the simulated ones with
    their random level masked), and which other notifications arrived at all."""
    updated = sorted({str(n.params.uri) for n in notes if n.method == "notifications/resources/updated"})
    logs = []
    for n in notes:
        if n.method == "notifications/message":
            data = normalized(str(n.params.data))
            if "SessionId" in data:
                data = "<simulated message>"
            logs.append(json.dumps([n.params.logger, data]))
    others = sorted({n.method for n in notes} - {"notifications/resources/updated", "notifications/message", "notifications/progress"})
    return {"resources/updated": updated, "log messages": sorted(set(logs)), "other notifications": others}


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{path or '.'}: {json.dumps(a)[:160]} != {json.dumps(b)[:160]}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only {'direct' if k in a else 'proxied'}"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items direct, {len(b)} proxied"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path or '.'}: {json.dumps(a)[:160]} != {json.dumps(b)[:160]}"


def everything_direct_vs_proxy(sc: Scenario) -> None:
    """server-everything through the proxy in single-backend mode gives exactly what a direct
    Streamable HTTP connection gives, step by step, experimental tasks included, except for
    session ids, task ids and clock times."""
    port, cb = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{port}/mcp"
    idp = sc.start_idp(backend_url, [cb])
    sc.start_everything(port)
    runs: dict[str, dict] = {}
    for label in ("direct", "proxied"):
        notes: list = []

        async def body(session: ClientSession, notes=notes) -> dict:
            return await exercise_everything(session, notes)

        if label == "direct":
            steps = asyncio.run(with_direct(backend_url, body, timeout=90, notifications=notes))
        else:
            # Signed in first, with the `login` command: this scenario compares relaying. During
            # a first login `initialize` may be answered provisionally — a client that takes URL
            # elicitation, as this one does, is asked to open the sign-in page, which it can only
            # do once answered; first logins have scenarios of their own.
            home = sc.home()
            env = sc.proxy_env(home, backend_url, idp.issuer, cb)
            code, _ = flows.run_cli(sc, "login", ["login"], env)
            check(code == 0, f"`login` exited {code}:\n{tail(sc.dir / 'login.stderr.log')}")
            steps = asyncio.run(with_proxy(sc, env, body, timeout=90, notifications=notes))
        runs[label] = {"steps": normalized(steps), "notifications": notification_summary(notes)}
        (sc.dir / f"everything-{label}.json").write_text(json.dumps(runs[label], indent=2, ensure_ascii=False))

    direct, proxied = runs["direct"], runs["proxied"]
    differences = []
    for step in list(direct["steps"]) + [k for k in proxied["steps"] if k not in direct["steps"]]:
        d = first_difference(direct["steps"].get(step), proxied["steps"].get(step))
        if d:
            differences.append(f"{step}: {d}")
    d = first_difference(direct["notifications"], proxied["notifications"])
    if d:
        differences.append(f"notifications: {d}")
    (sc.dir / "differences.txt").write_text("\n".join(differences) + "\n")
    check(not differences, f"{len(differences)} step(s) differ from the direct connection (everything-*.json):\n" + "\n".join(differences[:12]))

    # The comparison is only as good as what it covered: make sure the interesting parts ran.
    steps = direct["steps"]
    check(len(steps) >= 40, f"only {len(steps)} steps ran")
    check("progress trigger-long-running-operation #0" in steps, "no progress notifications for the long-running operation")
    check("interop-sampled-answer" in json.dumps(steps.get("tools/call trigger-sampling-request #0")), "sampling was not answered by the client")
    check(ROOT_URI in json.dumps(steps.get("tools/call get-roots-list #0")), "roots were not answered by the client")
    check("tasks" in steps["initialize"].get("capabilities", {}), "the server did not advertise tasks")
    check(steps.get("tasks/get until terminal", {}).get("status") == "completed",
          f"the task did not complete: {json.dumps(steps.get('tasks/get until terminal'))[:300]}")
    report = [c.get("text", "") for c in steps.get("tasks/result", {}).get("content", [])]
    check(any("Research Report: interop" in t for t in report), f"tasks/result gave no report: {json.dumps(steps.get('tasks/result'))[:300]}")
    check(steps.get("tasks/cancel of the cancelled task", {}).get("status") == "cancelled", "the second task was not cancelled")
    told = [(n.get("taskId"), n.get("status")) for n in steps.get("notifications/tasks/status", [])]
    check(("<task 1>", "completed") in told, f"no notifications/tasks/status told the task completed: {told}")
    check(direct["notifications"]["resources/updated"], "no notifications/resources/updated after subscribing")
    check(any("<simulated message>" in x for x in direct["notifications"]["log messages"]), "no simulated log message arrived")
    check(browser_finished(sc), f"browser stand-in did not finish:\n{tail(sc.dir / 'browser.log')}")


def mcp_inspector_cli(sc: Scenario) -> None:
    """MCP Inspector's CLI as the client, after a cached login: lists tools (one page, which the
    proxy makes the whole list although the backend pages by 2) and calls whoami, without a
    browser."""
    npx = shutil.which("npx")
    if not npx or not (HERE / "node_modules" / "@modelcontextprotocol" / "inspector-cli").exists():
        raise Skip("@modelcontextprotocol/inspector-cli is not installed")
    idp, backend_url, cb = fastmcp_stack(sc)
    home = sc.home()
    check_whoami(login_once(sc, idp, backend_url, cb, home), "interop-public")
    env = sc.proxy_env(home, backend_url, idp.issuer, cb, browser="fail", label="failing-browser")
    env.pop("MCP_PROXY_DEBUG")
    env["npm_config_cache"] = str(sc.dir / "npm-cache")
    env["npm_config_offline"] = "true"
    env["npm_config_update_notifier"] = "false"

    def inspector(label: str, *method: str) -> Any:
        log = sc.dir / f"inspector-{label}.stderr.log"
        # inspector-cli 1.0.3 looks for its own package.json with fs.existsSync("../package.json"),
        # i.e. relative to the *working directory*, and otherwise imports "../../package.json"
        # (its layout inside the inspector monorepo), which does not exist in a standalone install.
        # So it runs from its build/ directory, and npx is pointed at the suite's node_modules.
        cwd = HERE / "node_modules" / "@modelcontextprotocol" / "inspector-cli" / "build"
        argv = [npx, "--no", "--prefix", str(HERE), "--", "@modelcontextprotocol/inspector-cli", "--cli", BIN, *method]
        with open(log, "wb") as err:
            try:
                done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, timeout=90, start_new_session=True)
            except subprocess.TimeoutExpired:
                raise Failure(f"inspector-cli {label} did not finish within 90s:\n{tail(log)}") from None
        (sc.dir / f"inspector-{label}.stdout.json").write_bytes(done.stdout)
        check(done.returncode == 0, f"inspector-cli {label} exited {done.returncode}:\n{tail(log)}")
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise Failure(f"inspector-cli {label} printed no JSON: {done.stdout[:300]!r}") from None

    listed = inspector("list", "--method", "tools/list")
    # inspector-cli reads one page; the backend pages by 2, the proxy answers with all of it.
    names = sorted(t["name"] for t in listed.get("tools", []))
    check(names == ["add", "count_with_progress", "echo", "whoami"], f"inspector-cli tools/list: {names}")
    check(not listed.get("nextCursor"), f"inspector-cli tools/list: a cursor on a whole list: {listed.get('nextCursor')!r}")
    called = inspector("call", "--method", "tools/call", "--tool-name", "whoami")
    check(not called.get("isError"), f"inspector-cli tools/call whoami: {called}")
    who = called.get("structuredContent")
    if not isinstance(who, dict):
        who = json.loads(called["content"][0]["text"])
    check_whoami(who.get("result", who) if set(who) == {"result"} else who, "interop-public")
    check(not browser_invoked(sc, "failing-browser"), "inspector run opened the browser")


def python_original_parity(sc: Scenario) -> None:
    if not PARITY_PYTHON:
        raise Skip(PARITY_SKIP_REASON)
    cb_rust, cb_py = free_port(), free_port()
    idp, backend_url, _ = fastmcp_stack(sc, extra_callback_ports=[cb_rust, cb_py])
    subs = {}
    for label, command, cb in (
        ("rust", [BIN], cb_rust),
        ("python", [PARITY_PYTHON, "-m", "authful_mcp_proxy"], cb_py),
    ):
        home = sc.home(f"home-{label}")
        out: dict = {}
        env = sc.proxy_env(home, backend_url, idp.issuer, cb, label=f"browser-{label}")
        asyncio.run(with_proxy(sc, env, whoami_body(out), command=command, label=f"proxy-{label}", timeout=90))
        check_whoami(out["whoami"], "interop-public")
        check(browser_finished(sc, f"browser-{label}"), f"{label}: the browser stand-in did not finish")
        subs[label] = out["whoami"]["sub"]
    check(subs["rust"] == subs["python"], f"sub differs: {subs}")


def http_sse_backend(sc: Scenario) -> str:
    """A fastmcp server on the HTTP+SSE transport (MCP 2024-11-05) at .../sse: the drop-in with
    the URL a user of the Python original has, the gateway with it in its file, and the Python
    original on the same server; each signs in and calls whoami."""
    backend_port, cb_rust, cb_py, cb_gw = free_port(), free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{backend_port}/sse"
    idp = sc.start_idp(url, [cb_rust, cb_py, cb_gw])
    sc.start_backend(backend_port, idp.issuer, sse=True)
    subs = {}
    runs = [("rust", [BIN], cb_rust)]
    if PARITY_PYTHON:
        runs.append(("python", [PARITY_PYTHON, "-m", "authful_mcp_proxy"], cb_py))
    for label, command, cb in runs:
        out: dict = {}
        env = sc.proxy_env(sc.home(f"home-{label}"), url, idp.issuer, cb, label=f"browser-{label}")
        asyncio.run(with_proxy(sc, env, whoami_body(out), command=command, label=f"proxy-{label}", timeout=90))
        check_whoami(out["whoami"], "interop-public")
        subs[label] = out["whoami"]["sub"]
    check(len(set(subs.values())) == 1, f"sub differs: {subs}")

    config = gateway_file(sc, {"legacy": (idp.issuer, cb_gw)}, {"legacy": url})
    env = {"PATH": os.environ["PATH"], **gateway_env(sc)}
    env["HOME"] = str(sc.home("home-gateway"))
    out = {}

    async def body(session):
        tools, _ = await list_all(session, "tools")
        out["tools"] = sorted(t.name for t in tools)
        out["whoami"] = await call_json(session, "legacy_whoami")

    asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label="proxy-gateway", timeout=90))
    check("legacy_whoami" in out["tools"], f"gateway tools: {out['tools']}")
    check_whoami(out["whoami"], "interop-public")
    parity = "the Python original too" if PARITY_PYTHON else f"no Python original ({PARITY_SKIP_REASON})"
    return f"drop-in and gateway over HTTP+SSE; {parity}"


def modern_backend(sc: Scenario) -> str:
    """The TypeScript SDK 2.4's server with `legacy: 'reject'` (modern_server.mjs: MCP
    2026-07-28 alone) in the gateway's file, behind the official Python SDK's client of
    2025-11-25: listed and called; its `input_required` elicitation answered by the client as an
    elicitation of its own revision; its list change, told on `subscriptions/listen`, reaching
    the client as list_changed."""
    port = free_port()
    sc.start("modern", [NODE, str(HERE / "modern_server.mjs")],
             {"PATH": os.environ["PATH"], "HOME": str(sc.dir), "PORT": str(port)}, "MODERN READY")
    config = sc.dir / "gateway.yaml"
    config.write_text(f"backends:\n  new:\n    url: http://127.0.0.1:{port}/mcp\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(sc.home()), "MCP_PROXY_DEBUG": "1"}
    asked: list = []

    async def answer(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"answer": "interop"})

    notifications: list = []
    out: dict = {}

    async def body(session):
        tools, _ = await list_all(session, "tools")
        out["tools"] = sorted(t.name for t in tools)
        out["echo"] = await call_json(session, "new_echo", {"text": "stateless"})
        out["ask"] = await call_json(session, "new_ask")
        out["grow"] = await call_json(session, "new_grow")
        for _ in range(50):
            if any(getattr(n, "method", "") == "notifications/tools/list_changed" for n in notifications):
                break
            await anyio.sleep(0.1)
        tools, _ = await list_all(session, "tools")
        out["after"] = sorted(t.name for t in tools)

    asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label="proxy",
                           notifications=notifications, elicitation=answer))
    check({"new_echo", "new_ask", "new_grow"} <= set(out["tools"]), f"tools: {out['tools']}")
    check(out["echo"] == "stateless", f"echo: {out['echo']!r}")
    check(out["ask"] == "hello interop", f"ask: {out['ask']!r}")
    check(len(asked) == 1 and "Your name?" in asked[0], f"elicitations the client saw: {asked}")
    grown = [t for t in out["after"] if t.startswith("new_grown_")]
    check(grown, f"no grown tool after list_changed: {out['after']}")
    stderr = (sc.dir / "proxy.stderr.log").read_text(errors="replace")
    check("speaks only MCP 2026-07-28; discovering it" in stderr, "the proxy did not switch to server/discover")
    return f"discovered after a refused initialize; input_required answered; {grown[0]} after list_changed"


def ts_client_modes(sc: Scenario) -> str:
    """The official TypeScript SDK 2.4's client starting the drop-in over stdio, in each of its
    negotiation modes (ts_client.mjs), each with a fresh HOME: `legacy` (initialize, 2025-11-25),
    `auto` (probes `server/discover` from a short-lived sibling process first, which must not
    sign in, then speaks 2026-07-28) and pinned to 2026-07-28; each signs in once and calls
    whoami."""
    idp, backend_url, cb = fastmcp_stack(sc)
    seen = {}
    expected = {"legacy": "2025-11-25", "auto": "2026-07-28", "pin": "2026-07-28"}
    for mode in expected:
        before = len(idp.requests("authorization"))
        env = sc.proxy_env(sc.home(f"home-{mode}"), backend_url, idp.issuer, cb, label=f"browser-{mode}")
        with open(sc.dir / f"ts-client-{mode}.stderr.log", "wb") as err:
            run = subprocess.run([NODE, str(HERE / "ts_client.mjs"), mode, BIN], env=env, cwd=HERE,
                                 stdout=subprocess.PIPE, stderr=err, timeout=90)
        check(run.returncode == 0, f"{mode}: exit {run.returncode}:\n{tail(sc.dir / f'ts-client-{mode}.stderr.log')}")
        result = json.loads(run.stdout.decode().strip().splitlines()[-1])
        check_whoami(result["whoami"], "interop-public")
        check("whoami" in result["tools"], f"{mode}: tools {result['tools']}")
        logins = len(idp.requests("authorization")) - before
        check(logins == 1, f"{mode}: {logins} sign-ins (the probe must not sign in)")
        seen[mode] = result["protocolVersion"]
        check(seen[mode] == expected[mode], f"{mode}: spoke {seen[mode]}, expected {expected[mode]}")
    return ", ".join(f"{mode}: {version}" for mode, version in seen.items())


def gateway_two_issuers(sc: Scenario) -> None:
    """The README's gateway, as a platform team would set it up: one config file, two identity
    providers with a fastmcp backend behind each, and server-everything behind a static API key;
    `validate` first, then one stdio server serving all three."""
    ports = {name: (free_port(), free_port()) for name in ("corp", "partner")}  # backend, callback
    urls = {name: f"http://127.0.0.1:{backend}/mcp" for name, (backend, _) in ports.items()}
    idps = {}
    for name, (backend, cb) in ports.items():
        idps[name] = sc.start_idp(urls[name], [cb], name=f"idp-{name}")
        sc.start_backend(backend, idps[name].issuer, name=f"backend-{name}")
    api_key = "interop-static-key"
    everything_url = sc.start_everything(free_port(), require_header=f"X-Api-Key: {api_key}")
    config = sc.dir / "gateway.yaml"
    lines = ["# yaml-language-server: $schema=./schemas/config.schema.json", "oidc_profiles:"]
    for name, (_, cb) in ports.items():
        lines += [
            f"  {name}:",
            f"    issuer_url: {idps[name].issuer}",
            "    client_id: ${INTEROP_CLIENT_ID:-interop-public}",
            f"    redirect_url: http://localhost:{cb}/auth/callback",
        ]
    lines.append("backends:")
    for name in ports:
        lines += [f"  {name}:", f"    url: {urls[name]}", f"    oidc_profile: {name}"]
    lines += [
        "  demo:",
        f"    url: {everything_url}",
        "    headers:",
        "      X-Api-Key: ${INTEROP_API_KEY}",
        "gateway:",
        "  name: interop-gateway",
        "  startup_timeout: 30",
    ]
    config.write_text("\n".join(lines) + "\n")

    env_base = {"PATH": os.environ["PATH"], "INTEROP_API_KEY": api_key}
    checked = subprocess.run([BIN, "validate", str(config)], capture_output=True, text=True, timeout=30, env=env_base)
    check(checked.returncode == 0, f"validate exited {checked.returncode}: {checked.stdout}{checked.stderr}")
    check(checked.stdout.strip().endswith("valid"), f"validate said {checked.stdout!r}")

    browser_log = sc.dir / "browser.log"
    sc.browser_logs.append(browser_log)
    env = {
        **env_base,
        "HOME": str(sc.home()),
        "BROWSER": str(HERE / "browser.py"),
        "MCP_PROXY_DEBUG": "1",
        "INTEROP_BROWSER_LOG": str(browser_log),
        "INTEROP_LOGIN": LOGIN,
        "INTEROP_BROWSER_MARKER": str(sc.dir / "browser.invoked"),
    }
    out: dict = {}

    async def body(session: ClientSession) -> None:
        tools, _ = await list_all(session, "tools")
        out["tools"] = sorted(t.name for t in tools)
        out["corp"] = await call_json(session, "corp_whoami")
        out["partner"] = await call_json(session, "partner_whoami")
        out["sum"] = await call_json(session, "partner_add", {"a": 2, "b": 3})
        out["demo_sum"] = await session.call_tool("demo_get-sum", {"a": 40, "b": 2})
        resources, _ = await list_all(session, "resources")
        out["resources"] = sorted(str(r.uri) for r in resources)
        out["corp_info"] = await session.read_resource("corp+interop://info")
        out["demo_doc"] = await session.read_resource("demo+demo://resource/static/document/features.md")
        out["demo_dynamic"] = await session.read_resource("demo+demo://resource/dynamic/text/7")
        templates, _ = await list_all(session, "resource_templates")
        out["templates"] = sorted(t.uri_template for t in templates)
        prompts, _ = await list_all(session, "prompts")
        out["prompts"] = sorted(p.name for p in prompts)

    asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label="gateway"))
    fastmcp_tools = ["add", "count_with_progress", "echo", "whoami"]
    for p in ports:
        for t in fastmcp_tools:
            check(f"{p}_{t}" in out["tools"], f"tools/list lacks {p}_{t}: {out['tools']}")
    demo_tools = [t for t in out["tools"] if t.startswith("demo_")]
    check({"demo_echo", "demo_get-sum", "demo_get-tiny-image"} <= set(demo_tools), f"server-everything's tools missing: {demo_tools}")
    check(len(out["tools"]) == 2 * len(fastmcp_tools) + len(demo_tools), f"unprefixed or foreign tools: {out['tools']}")
    check_whoami(out["corp"], "interop-public")
    check_whoami(out["partner"], "interop-public")
    check(out["sum"] == 5, f"partner_add gave {out['sum']!r}")
    check("42" in " ".join(getattr(c, "text", "") for c in out["demo_sum"].content), f"demo_get-sum: {out['demo_sum'].content}")
    for uri in ("corp+interop://info", "partner+interop://info", "demo+demo://resource/static/document/features.md"):
        check(uri in out["resources"], f"resources/list lacks {uri}: {out['resources'][:12]}")
    check([str(c.uri) for c in out["corp_info"].contents] == ["corp+interop://info"], f"corp+interop://info read back as {out['corp_info'].contents}")
    check(out["demo_doc"].contents and str(out["demo_doc"].contents[0].uri).startswith("demo+demo://"), f"demo doc: {out['demo_doc'].contents}")
    check("Resource 7" in getattr(out["demo_dynamic"].contents[0], "text", ""), f"dynamic template read: {out['demo_dynamic'].contents}")
    check("demo+demo://resource/dynamic/text/{resourceId}" in out["templates"], f"templates: {out['templates']}")
    check({"corp_greet", "partner_greet", "demo_simple-prompt"} <= set(out["prompts"]), f"prompts: {out['prompts']}")
    for name, idp in idps.items():
        grants = [e["grant_type"] for e in idp.events() if e["event"] == "grant.success"]
        check(grants == ["authorization_code"], f"{name} IdP saw grants {grants}: one login per issuer")
    rejected = (sc.dir / "everything.log").read_text(errors="replace").count("rejected ")
    check(rejected == 0, f"server-everything rejected {rejected} request(s) without the static X-Api-Key header")


SCENARIOS: list[Callable[[Scenario], str | None]] = [
    first_login_public_client,
    cached_login_no_browser,
    refresh_with_rotation,
    concurrent_processes_shared_cache,
    refresh_refused_relogin,
    login_timeout_fails_cleanly,
    consent_denied,
    confidential_client,
    everything_direct_vs_proxy,
    mcp_inspector_cli,
    python_original_parity,
    http_sse_backend,
    modern_backend,
    ts_client_modes,
    gateway_two_issuers,
]

# Scenarios that live in modules of their own: the device and client-credentials flows, RFC 9728
# resources and logout, a real browser, the MCP conformance suite, a desktop client as it really
# behaves, the packages users install, both eras of MCP from other SDKs' clients, and the real
# desktop clients themselves.
import chromium  # noqa: E402
import conformance_suite  # noqa: E402
import desktop  # noqa: E402
import eras  # noqa: E402
import flows  # noqa: E402
import packages  # noqa: E402
from real_clients import scenarios as real_clients  # noqa: E402

SCENARIOS += (
    flows.SCENARIOS + chromium.SCENARIOS + conformance_suite.SCENARIOS + desktop.SCENARIOS + packages.SCENARIOS
    + eras.SCENARIOS + real_clients.SCENARIOS
)


def run_one(fn: Callable[[Scenario], str | None]) -> tuple[str, str]:
    """Runs one scenario; a scenario may return a note (timings, say) for its summary line."""
    sc = Scenario(fn.__name__, RUN_DIR / fn.__name__)
    sc.dir.mkdir(parents=True, exist_ok=True)

    def on_alarm(*_):
        raise Failure(f"scenario timed out after {SCENARIO_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(SCENARIO_TIMEOUT)
    try:
        note = fn(sc)
        return "PASS", note or ""
    except Skip as e:
        return "SKIP", str(e)
    except Failure as e:
        return "FAIL", str(e)
    except Exception as e:  # noqa: BLE001
        (sc.dir / "traceback.txt").write_text(traceback.format_exc())
        return "FAIL", f"{type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        sc.stop_all()


class Terminated(BaseException):
    """SIGTERM/SIGINT: unwind so every scenario's finally-block stops its processes."""


def on_terminate(signum, _frame):
    raise Terminated(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGINT, on_terminate)
    only = {n for n in (os.environ.get("INTEROP_ONLY") or "").split(",") if n}
    unknown = only - {fn.__name__ for fn in SCENARIOS}
    if unknown:
        print(f"run: INTEROP_ONLY names unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, float, str]] = []  # scenario, result, seconds, reason
    suite_started = time.monotonic()
    for fn in SCENARIOS:
        if only and fn.__name__ not in only:
            continue
        started = time.monotonic()
        try:
            status, reason = run_one(fn)
        except Terminated as e:
            status, reason = "FAIL", f"interrupted ({e})"
        took = time.monotonic() - started
        rows.append((fn.__name__, status, took, reason))
        first, _, rest = reason.partition("\n")
        if status == "FAIL":
            # One line per scenario: the reason's first line here, the rest (log tails) indented.
            print(f"FAIL {fn.__name__}: {first} [logs: {RUN_DIR / fn.__name__}]", flush=True)
            for line in rest.splitlines():
                print(f"    | {line}", flush=True)
        else:
            print(f"{status} {fn.__name__} ({took:.1f}s){': ' + first if first else ''}", flush=True)
        if reason.startswith("interrupted"):
            break
    print_summary(rows, time.monotonic() - suite_started)
    if any(r[3].startswith("interrupted") for r in rows):
        return 130
    return 0 if all(r[1] != "FAIL" for r in rows) else 1


def print_summary(rows: list[tuple[str, str, float, str]], total: float) -> None:
    """The summary table on stdout, and as summary.txt/summary.json in the run directory."""
    width = max([len("scenario")] + [len(r[0]) for r in rows])
    lines = [f"{'scenario':<{width}}  result  seconds", f"{'-' * width}  ------  -------"]
    lines += [f"{name:<{width}}  {status:<6}  {took:7.1f}" for name, status, took, _ in rows]
    passed = sum(1 for r in rows if r[1] == "PASS")
    failed = sum(1 for r in rows if r[1] == "FAIL")
    skipped = sum(1 for r in rows if r[1] == "SKIP")
    lines += [f"{'-' * width}  ------  -------", f"{'total':<{width}}  {'':<6}  {total:7.1f}"]
    table = "\n".join(lines)
    print("\n" + table)
    (RUN_DIR / "summary.txt").write_text(table + "\n")
    (RUN_DIR / "summary.json").write_text(json.dumps(
        [{"scenario": n, "result": st, "seconds": round(t, 1), "reason": r} for n, st, t, r in rows], indent=2
    ))
    print(f"{passed} passed, {failed} failed, {skipped} skipped")


if __name__ == "__main__":
    sys.exit(main())
