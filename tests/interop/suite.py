"""Interop scenarios for authful-mcp-proxy against real third-party components.

Run through ./run, which installs everything and sets:
  AUTHFUL_MCP_PROXY_BIN   the proxy binary under test
  INTEROP_RUN_DIR         where every scenario leaves its logs
  INTEROP_PARITY_PYTHON   python of the optional venv with the Python original (may be unset)
  INTEROP_ONLY            optional comma-separated scenario names to run

Each scenario starts its own processes on 127.0.0.1 with fresh ports and a fresh HOME, and stops
them when it ends. Prints "PASS name", "FAIL name: reason" or "SKIP name: reason" per scenario and
ends with "N passed, M failed".
"""

from __future__ import annotations

import asyncio
import contextvars
import glob
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import warnings

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
import mcp.client.stdio as mcp_stdio
from mcp.client.stdio import StdioServerParameters, stdio_client

warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")

HERE = Path(__file__).resolve().parent
BIN = os.environ["AUTHFUL_MCP_PROXY_BIN"]
RUN_DIR = Path(os.environ["INTEROP_RUN_DIR"])
PARITY_PYTHON = os.environ.get("INTEROP_PARITY_PYTHON") or ""
PARITY_SKIP_REASON = os.environ.get("INTEROP_PARITY_SKIP_REASON") or "the parity venv is not installed"
NODE = shutil.which("node") or "node"
PYTHON = sys.executable
LOGIN = "interop-alice"
SECRET = "interop-secret"

SCENARIO_TIMEOUT = 120  # seconds, per scenario, everything included
CALL_TIMEOUT = 60  # seconds, per proxy session


class Skip(Exception):
    """The scenario cannot run here; reported as SKIP."""


class Failure(Exception):
    """A check failed; the message is the reason."""


def check(cond: bool, reason: str) -> None:
    if not cond:
        raise Failure(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=5)


@dataclass
class Scenario:
    name: str
    dir: Path
    procs: list[Proc] = field(default_factory=list)
    browser_logs: list[Path] = field(default_factory=list)

    # -- generic -------------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: dict[str, str], ready: str, timeout: float = 30) -> Proc:
        log = self.dir / f"{name}.log"
        f = open(log, "ab")
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=HERE,
            start_new_session=True,
        )
        f.close()
        with open(RUN_DIR / "pids", "a") as pids:  # for ./run's last-resort cleanup
            pids.write(f"{popen.pid}\n")
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready in log.read_text(errors="replace"):
                return proc
            if not proc.alive():
                raise Failure(f"{name} exited with {popen.returncode} before it was ready:\n{tail(log)}")
            time.sleep(0.1)
        raise Failure(f"{name} not ready after {timeout}s:\n{tail(log)}")

    def wait_http(self, url: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                return
            except Exception as e:  # noqa: BLE001
                last = e
                time.sleep(0.2)
        raise Failure(f"{url} did not answer within {timeout}s: {last}")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        # The browser stand-in detaches from the proxy; stop the ones this scenario started.
        for log in self.browser_logs:
            for pid in set(re.findall(r"\[browser (\d+)\]", log.read_text(errors="replace") if log.exists() else "")):
                try:
                    # Only if that PID is still a browser stand-in (PIDs get reused).
                    if b"browser.py" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ProcessLookupError, PermissionError):
                    pass

    # -- components ----------------------------------------------------------------------------

    def start_idp(
        self, backend_url: str, callback_ports: list[int], access_ttl: int = 3600, port: int | None = None,
        name: str = "idp",
    ) -> "Idp":
        port = port or free_port()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.dir),
            "IDP_PORT": str(port),
            "IDP_CALLBACK_PORTS": ",".join(map(str, callback_ports)),
            "IDP_RESOURCE": backend_url,
            "IDP_ACCESS_TTL": str(access_ttl),
            "IDP_EVENTS_LOG": str(self.dir / f"{name}-events.jsonl"),
            # Per port: an IdP restarted on the same port keeps its signing key (and so the
            # backends' cached JWKS stays valid).
            "IDP_KEY_FILE": str(self.dir / f"idp-{port}-key.json"),
        }
        self.start(name, [NODE, str(HERE / "idp.mjs")], env, "IDP READY")
        issuer = f"http://127.0.0.1:{port}"
        self.wait_http(f"{issuer}/.well-known/openid-configuration")
        return Idp(issuer, self.dir / f"{name}-events.jsonl", port)

    def start_backend(self, port: int, issuer: str, page_size: int = 2, name: str = "backend") -> str:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "FASTMCP_SHOW_SERVER_BANNER": "false"}
        argv = [PYTHON, str(HERE / "backend.py"), "--port", str(port), "--issuer", issuer, "--page-size", str(page_size)]
        self.start(name, argv, env, "BACKEND READY")
        return f"http://127.0.0.1:{port}/mcp"

    def start_everything(self, port: int) -> str:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "PORT": str(port)}
        self.start("everything", [NODE, str(HERE / "everything.mjs")], env, "listening on port")
        return f"http://127.0.0.1:{port}/mcp"

    def home(self, label: str = "home") -> Path:
        home = self.dir / label
        home.mkdir(parents=True, exist_ok=True)
        return home

    def proxy_env(
        self,
        home: Path,
        backend_url: str,
        issuer: str,
        callback_port: int,
        *,
        client_id: str = "interop-public",
        secret: str | None = None,
        scopes: str | None = None,
        browser: str = "login",
        label: str = "browser",
    ) -> dict[str, str]:
        """The env block a desktop client would pass, plus PATH/HOME/BROWSER."""
        browser_log = self.dir / f"{label}.log"
        self.browser_logs.append(browser_log)
        env = {
            "HOME": str(home),
            "PATH": os.environ["PATH"],
            "MCP_BACKEND_URL": backend_url,
            "OIDC_ISSUER_URL": issuer,
            "OIDC_CLIENT_ID": client_id,
            "OIDC_REDIRECT_URL": f"http://localhost:{callback_port}/auth/callback",
            "MCP_PROXY_DEBUG": "1",
            "INTEROP_BROWSER_LOG": str(browser_log),
            "INTEROP_LOGIN": LOGIN,
            "INTEROP_BROWSER_MARKER": str(self.dir / f"{label}.invoked"),
        }
        if browser == "login":
            env["BROWSER"] = str(HERE / "browser.py")
        elif browser == "fail":
            env["BROWSER"] = str(HERE / "browser_fail.sh")
        if secret is not None:
            env["OIDC_CLIENT_SECRET"] = secret
        if scopes is not None:
            env["OIDC_SCOPES"] = scopes
        return env


@dataclass
class Idp:
    issuer: str
    events_log: Path
    port: int

    def events(self) -> list[dict]:
        if not self.events_log.exists():
            return []
        return [json.loads(line) for line in self.events_log.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# The MCP client side


async def sampling_answer(context, params: types.CreateMessageRequestParams):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="interop-sampled-answer"),
        model="interop-fake-model",
        stop_reason="endTurn",
    )


async def elicitation_answer(context, params):
    return types.ElicitResult(action="decline")


ROOT_URI = "file:///interop/workspace"


async def roots_answer(context):
    return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="interop-root")])


# The SDK's stdio_client hides the child process; keep a handle to it (per calling task) to read
# its exit status.
_spawned: contextvars.ContextVar[list | None] = contextvars.ContextVar("spawned", default=None)
_original_spawn = mcp_stdio._create_platform_compatible_process


async def _recording_spawn(*args, **kwargs):
    process = await _original_spawn(*args, **kwargs)
    spawned = _spawned.get()
    if spawned is not None:
        spawned.append(process)
    return process


mcp_stdio._create_platform_compatible_process = _recording_spawn


async def with_proxy(
    sc: Scenario,
    env: dict[str, str],
    body: Callable[[ClientSession], Awaitable[Any]],
    *,
    args: list[str] | None = None,
    label: str = "proxy",
    command: list[str] | None = None,
    timeout: float = CALL_TIMEOUT,
    logs: list | None = None,
) -> Any:
    """Starts the proxy with the official MCP Python SDK's stdio_client and runs `body`."""
    cmd = command or [BIN]
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], *(args or [])], env=env, cwd=str(sc.dir))
    errlog_path = sc.dir / f"{label}.stderr.log"
    stream_errors: list[str] = []
    spawned: list = []
    _spawned.set(spawned)

    async def on_log(params) -> None:
        if logs is not None:
            logs.append(params)

    async def on_message(message) -> None:
        # Transport-level exceptions: e.g. a stdout line that is not JSON-RPC.
        if isinstance(message, Exception):
            stream_errors.append(f"{type(message).__name__}: {message}")

    with open(errlog_path, "a") as errlog:
        try:
            with anyio.fail_after(timeout):
                async with stdio_client(params, errlog=errlog) as (read, write):
                    async with ClientSession(
                        read,
                        write,
                        read_timeout_seconds=timeout,
                        sampling_callback=sampling_answer,
                        elicitation_callback=elicitation_answer,
                        message_handler=on_message,
                        list_roots_callback=roots_answer,
                        logging_callback=on_log,
                    ) as session:
                        await session.initialize()
                        result = await body(session)
            check(not stream_errors, f"{label}: the client saw non-JSON-RPC output on stdout: {stream_errors[:3]}")
            if cmd == [BIN] and spawned:
                # README: exit code 0 after the client closed the session (stdin EOF). The SDK
                # closes stdin, waits 2 s, then sends SIGTERM: a negative code means it had to.
                code = spawned[-1].returncode
                check(code == 0, f"{label}: the proxy exited with {code} after the client closed stdin (expected 0)")
            return result
        except TimeoutError:
            errlog.flush()
            raise Failure(f"{label}: no answer within {timeout}s; stderr tail:\n{tail(errlog_path)}") from None
        except Failure:
            raise
        except Exception as e:  # noqa: BLE001
            errlog.flush()
            raise Failure(f"{label}: {describe(e)}; stderr tail:\n{tail(errlog_path)}") from None


def describe(e: BaseException) -> str:
    """An exception as one line, with task-group wrappers unwrapped to their leaves."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def call_json(session: ClientSession, tool: str, arguments: dict | None = None, **kw) -> Any:
    result = await session.call_tool(tool, arguments or {}, **kw)
    check(not result.is_error, f"{tool} returned an error: {result.content}")
    if result.structured_content is not None:
        sc = result.structured_content
        return sc.get("result", sc) if isinstance(sc, dict) and set(sc) == {"result"} else sc
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    try:
        return json.loads(texts[0])
    except (IndexError, ValueError):
        return texts[0] if texts else None


async def list_all(session: ClientSession, kind: str) -> tuple[list, int]:
    """Lists tools/resources/resource templates/prompts following nextCursor; returns (items, pages)."""
    method = {
        "tools": session.list_tools,
        "resources": session.list_resources,
        "resource_templates": session.list_resource_templates,
        "prompts": session.list_prompts,
    }[kind]
    items: list = []
    cursor = None
    pages = 0
    while True:
        pages += 1
        check(pages <= 50, f"{kind}/list: more than 50 pages")
        result = await method(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        items.extend(getattr(result, kind))
        cursor = result.next_cursor
        if not cursor:
            return items, pages


def whoami_body(out: dict):
    async def body(session: ClientSession) -> None:
        out["whoami"] = await call_json(session, "whoami")
    return body


# --------------------------------------------------------------------------------------------
# Checks shared by scenarios


def cache_file(home: Path) -> Path:
    cache_dir = home / ".fastmcp" / "oauth-mcp-client-cache"
    files = sorted(glob.glob(str(cache_dir / "*_tokens.json")))
    check(len(files) == 1, f"expected one *_tokens.json in {cache_dir}, found {files or 'none'}")
    return Path(files[0])


def cached_tokens(home: Path) -> dict:
    return json.loads(cache_file(home).read_text())


def check_whoami(who: Any, client_id: str) -> None:
    check(isinstance(who, dict), f"whoami returned {who!r}")
    check(who.get("authenticated") is True, f"whoami: not authenticated: {who}")
    check(who.get("sub") == LOGIN, f"whoami sub {who.get('sub')!r}, expected {LOGIN!r}")
    claims = who.get("claims") or {}
    aud = claims.get("aud")
    check(aud == "mcp-backend" or (isinstance(aud, list) and "mcp-backend" in aud), f"token aud {aud!r}")
    check(claims.get("client_id") == client_id, f"token client_id {claims.get('client_id')!r}, expected {client_id!r}")


def check_no_secrets(paths: list[Path], secrets: list[str]) -> None:
    for path in paths:
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        for s in secrets:
            if s and len(s) >= 8 and s in text:
                raise Failure(f"{path.name} contains a secret value ({s[:6]}...)")


def browser_invoked(sc: Scenario, label: str) -> bool:
    return (sc.dir / f"{label}.invoked").exists()


def browser_finished(sc: Scenario, label: str = "browser") -> bool:
    log = sc.dir / f"{label}.log"
    return log.exists() and "done, exit 0" in log.read_text(errors="replace")


def auth_url_line(stderr_log: Path) -> str | None:
    for line in stderr_log.read_text(errors="replace").splitlines():
        if "in your browser: " in line:
            return line.split("in your browser: ", 1)[1].strip()
    return None


def login_once(sc: Scenario, idp: Idp, backend_url: str, cb: int, home: Path, **kw) -> dict:
    """A first run that logs in with the browser stand-in and calls whoami."""
    out: dict = {}
    env = sc.proxy_env(home, backend_url, idp.issuer, cb, **kw)
    asyncio.run(with_proxy(sc, env, whoami_body(out), label="proxy-login"))
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    return out["whoami"]


# --------------------------------------------------------------------------------------------
# Scenarios


def fastmcp_stack(sc: Scenario, access_ttl: int = 3600, extra_callback_ports: list[int] | None = None):
    backend_port, cb = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(backend_url, [cb, *(extra_callback_ports or [])], access_ttl=access_ttl)
    sc.start_backend(backend_port, idp.issuer)
    return idp, backend_url, cb


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
    check(out["pages"] >= 2, f"tools/list came in {out['pages']} page(s); the backend pages by 2")
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


def confidential_client(sc: Scenario) -> None:
    idp, backend_url, cb = fastmcp_stack(sc)
    home = sc.home()
    who = login_once(
        sc, idp, backend_url, cb, home, client_id="interop-confidential", secret=SECRET,
        scopes="openid profile email offline_access",
    )
    check_whoami(who, "interop-confidential")
    grants = [(e["grant_type"], e["client"]) for e in idp.events() if e["event"] == "grant.success"]
    check(grants == [("authorization_code", "interop-confidential")], f"IdP grants {grants}")
    tokens = cached_tokens(home)
    check_no_secrets([sc.dir / "proxy-login.stderr.log"], [SECRET, tokens["access_token"], tokens.get("refresh_token", "")])


def everything_features(sc: Scenario) -> None:
    port, cb = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{port}/mcp"
    idp = sc.start_idp(backend_url, [cb])
    sc.start_everything(port)
    home = sc.home()
    env = sc.proxy_env(home, backend_url, idp.issuer, cb)
    out: dict = {}

    async def body(session: ClientSession) -> None:
        tools, out["tool_pages"] = await list_all(session, "tools")
        out["tools"] = {t.name for t in tools}
        resources, out["resource_pages"] = await list_all(session, "resources")
        out["resources"] = [r.uri for r in resources]
        templates, _ = await list_all(session, "resource_templates")
        out["templates"] = [t.uri_template for t in templates]
        prompts, out["prompt_pages"] = await list_all(session, "prompts")
        out["prompts"] = {p.name for p in prompts}
        out["echo"] = await session.call_tool("echo", {"message": "through the proxy"})
        out["sum"] = await session.call_tool("get-sum", {"a": 19, "b": 23})
        progress: list[tuple] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append((p, total))

        out["long"] = await session.call_tool(
            "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
        )
        out["progress"] = progress
        out["sampling"] = await session.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
        first_text = next(str(u) for u in out["resources"] if str(u).endswith((".md", ".txt", ".json")))
        out["read"] = await session.read_resource(first_text)
        out["read_dynamic"] = await session.read_resource("demo://resource/dynamic/text/3")
        out["simple_prompt"] = await session.get_prompt("simple-prompt")
        out["args_prompt"] = await session.get_prompt("args-prompt", {"city": "Lisbon", "state": "LX"})
        out["completion"] = await session.complete(
            types.PromptReference(type="ref/prompt", name="completable-prompt"), {"name": "department", "value": "Eng"}
        )
        out["completion_ctx"] = await session.complete(
            types.PromptReference(type="ref/prompt", name="completable-prompt"),
            {"name": "name", "value": ""},
            context_arguments={"department": "Sales"},
        )
        out["roots"] = await session.call_tool("get-roots-list", {})
        out["elicit"] = await session.call_tool("trigger-elicitation-request", {})
        await session.set_logging_level("debug")
        await session.call_tool("toggle-simulated-logging", {})
        with anyio.move_on_after(8):
            while not logs:
                await anyio.sleep(0.1)
        await session.call_tool("toggle-simulated-logging", {})
        await session.send_ping()

    logs: list = []
    asyncio.run(with_proxy(sc, env, body, timeout=90, logs=logs))

    def text_of(result) -> str:
        return " ".join(getattr(c, "text", "") for c in result.content)

    want_tools = {
        "echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request",
        "get-roots-list", "trigger-elicitation-request", "toggle-simulated-logging",
    }
    check(want_tools <= out["tools"], f"tools/list lacks {sorted(want_tools - out['tools'])}")
    check(len(out["resources"]) >= 1, "resources/list is empty")
    check(any("dynamic/text" in t for t in out["templates"]), f"resource templates: {out['templates']}")
    check({"simple-prompt", "args-prompt", "completable-prompt"} <= out["prompts"], f"prompts: {sorted(out['prompts'])}")
    check("through the proxy" in text_of(out["echo"]), f"echo: {text_of(out['echo'])!r}")
    check("42" in text_of(out["sum"]), f"get-sum: {text_of(out['sum'])!r}")
    check(not out["long"].is_error, f"long-running operation failed: {text_of(out['long'])}")
    check([p for p, _ in out["progress"]] == [1, 2, 3], f"progress notifications: {out['progress']}")
    check("interop-sampled-answer" in text_of(out["sampling"]), f"sampling result: {text_of(out['sampling'])[:200]!r}")
    check(len(out["read"].contents) >= 1, "resources/read returned nothing")
    check("3" in getattr(out["read_dynamic"].contents[0], "text", ""), f"dynamic resource: {out['read_dynamic'].contents}")
    check(len(out["simple_prompt"].messages) >= 1, "prompts/get simple-prompt returned no messages")
    check("Lisbon" in json.dumps(out["args_prompt"].model_dump(mode="json")), "args-prompt did not use its argument")
    check(out["completion"].completion.values == ["Engineering"], f"completion: {out['completion'].completion.values}")
    check(out["completion_ctx"].completion.values == ["David", "Eve", "Frank"], f"completion with context: {out['completion_ctx'].completion.values}")
    check(ROOT_URI in text_of(out["roots"]), f"get-roots-list (server asks the client for roots): {text_of(out['roots'])[:200]!r}")
    check("decline" in text_of(out["elicit"]), f"elicitation result: {text_of(out['elicit'])[:200]!r}")
    check(len(logs) >= 1, "no notifications/message arrived within 8 s after toggle-simulated-logging")
    check(browser_finished(sc), f"browser stand-in did not finish:\n{tail(sc.dir / 'browser.log')}")


def mcp_inspector_cli(sc: Scenario) -> None:
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
    log = sc.dir / "inspector.stderr.log"
    # inspector-cli 1.0.3 looks for its own package.json with fs.existsSync("../package.json"),
    # i.e. relative to the *working directory*, and otherwise imports "../../package.json"
    # (its layout inside the inspector monorepo), which does not exist in a standalone install.
    # So it runs from its build/ directory, and npx is pointed at the suite's node_modules.
    cwd = HERE / "node_modules" / "@modelcontextprotocol" / "inspector-cli" / "build"
    argv = [npx, "--no", "--prefix", str(HERE), "--", "@modelcontextprotocol/inspector-cli",
            "--cli", BIN, "--method", "tools/list"]
    with open(log, "wb") as err:
        try:
            done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, timeout=90, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise Failure(f"inspector-cli did not finish within 90s:\n{tail(log)}") from None
    (sc.dir / "inspector.stdout.json").write_bytes(done.stdout)
    check(done.returncode == 0, f"inspector-cli exited {done.returncode}:\n{tail(log)}")
    try:
        listed = json.loads(done.stdout)
    except ValueError:
        raise Failure(f"inspector-cli printed no JSON: {done.stdout[:300]!r}") from None
    # inspector-cli lists one page; the backend pages by 2, so a cursor must come through too.
    names = sorted(t["name"] for t in listed.get("tools", []))
    check(len(names) == 2 and set(names) <= {"add", "count_with_progress", "echo", "whoami"}, f"inspector-cli tools/list: {names}")
    check(bool(listed.get("nextCursor")), "inspector-cli tools/list: no nextCursor on the first page")
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


def gateway_two_issuers(sc: Scenario) -> None:
    """The README's gateway, as a platform team would set it up: one config file, two identity
    providers, a backend behind each; `validate` first, then one stdio server serving both."""
    ports = {name: (free_port(), free_port()) for name in ("corp", "partner")}  # backend, callback
    urls = {name: f"http://127.0.0.1:{backend}/mcp" for name, (backend, _) in ports.items()}
    idps = {}
    for name, (backend, cb) in ports.items():
        idps[name] = sc.start_idp(urls[name], [cb], name=f"idp-{name}")
        sc.start_backend(backend, idps[name].issuer, name=f"backend-{name}")
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
    lines += ["gateway:", "  name: interop-gateway", "  startup_timeout: 30"]
    config.write_text("\n".join(lines) + "\n")

    checked = subprocess.run([BIN, "validate", str(config)], capture_output=True, text=True, timeout=30)
    check(checked.returncode == 0, f"validate exited {checked.returncode}: {checked.stdout}{checked.stderr}")
    check(checked.stdout.strip().endswith("valid"), f"validate said {checked.stdout!r}")

    browser_log = sc.dir / "browser.log"
    sc.browser_logs.append(browser_log)
    env = {
        "HOME": str(sc.home()),
        "PATH": os.environ["PATH"],
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

    asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label="gateway"))
    expected = sorted(f"{p}_{t}" for p in ports for t in ["add", "count_with_progress", "echo", "whoami"])
    check(out["tools"] == expected, f"tools/list gave {out['tools']}")
    check_whoami(out["corp"], "interop-public")
    check_whoami(out["partner"], "interop-public")
    check(out["sum"] == 5, f"partner_add gave {out['sum']!r}")
    for name, idp in idps.items():
        grants = [e["grant_type"] for e in idp.events() if e["event"] == "grant.success"]
        check(grants == ["authorization_code"], f"{name} IdP saw grants {grants}: one login per issuer")


SCENARIOS: list[Callable[[Scenario], None]] = [
    first_login_public_client,
    cached_login_no_browser,
    refresh_with_rotation,
    concurrent_processes_shared_cache,
    refresh_refused_relogin,
    login_timeout_fails_cleanly,
    confidential_client,
    everything_features,
    mcp_inspector_cli,
    python_original_parity,
    gateway_two_issuers,
]


def run_one(fn: Callable[[Scenario], None]) -> tuple[str, str]:
    sc = Scenario(fn.__name__, RUN_DIR / fn.__name__)
    sc.dir.mkdir(parents=True, exist_ok=True)

    def on_alarm(*_):
        raise Failure(f"scenario timed out after {SCENARIO_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(SCENARIO_TIMEOUT)
    try:
        fn(sc)
        return "PASS", ""
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
    passed = failed = skipped = 0
    suite_started = time.monotonic()
    for fn in SCENARIOS:
        if only and fn.__name__ not in only:
            continue
        started = time.monotonic()
        try:
            status, reason = run_one(fn)
        except Terminated as e:
            print(f"FAIL {fn.__name__}: interrupted ({e})", flush=True)
            print(f"{passed} passed, {failed + 1} failed", flush=True)
            return 130
        took = time.monotonic() - started
        if status == "PASS":
            passed += 1
            print(f"PASS {fn.__name__} ({took:.1f}s)", flush=True)
        elif status == "SKIP":
            skipped += 1
            print(f"SKIP {fn.__name__}: {reason}", flush=True)
        else:
            failed += 1
            # One line per scenario: the reason's first line here, the rest (log tails) indented.
            first, _, rest = reason.partition("\n")
            print(f"FAIL {fn.__name__}: {first} [logs: {RUN_DIR / fn.__name__}]", flush=True)
            for line in rest.splitlines():
                print(f"    | {line}", flush=True)
    print(f"# {skipped} skipped; scenarios ran in {time.monotonic() - suite_started:.0f}s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
