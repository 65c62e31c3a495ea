"""Harness for the interop scenarios: processes, components, the MCP client side, shared checks.

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
from mcp.client.streamable_http import streamable_http_client

warnings.filterwarnings("ignore", message=".* as of 2026-07-28")

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
        self, backend_url: str | None, callback_ports: list[int], access_ttl: int = 3600, port: int | None = None,
        name: str = "idp", *, resources: list[str] | None = None, device_interval: int | None = None,
        client_jwks: Path | None = None, registration: bool = False,
    ) -> "Idp":
        """oidc-provider (idp.mjs). `backend_url`: the one resource, tokens with aud "mcp-backend";
        `resources` instead: RFC 8707 resource servers, each token's aud its own indicator;
        `registration`: open dynamic client registration (RFC 7591)."""
        port = port or free_port()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.dir),
            "IDP_PORT": str(port),
            "IDP_CALLBACK_PORTS": ",".join(map(str, callback_ports)),
            "IDP_ACCESS_TTL": str(access_ttl),
            "IDP_EVENTS_LOG": str(self.dir / f"{name}-events.jsonl"),
            # Per port: an IdP restarted on the same port keeps its signing key (and so the
            # backends' cached JWKS stays valid).
            "IDP_KEY_FILE": str(self.dir / f"idp-{port}-key.json"),
        }
        if backend_url:
            env["IDP_RESOURCE"] = backend_url
        if resources:
            env["IDP_RESOURCES"] = ",".join(resources)
        if device_interval:
            env["IDP_DEVICE_INTERVAL"] = str(device_interval)
        if client_jwks:
            env["IDP_CLIENT_JWKS"] = str(client_jwks)
        if registration:
            env["IDP_REGISTRATION"] = "1"
        self.start(name, [NODE, str(HERE / "idp.mjs")], env, "IDP READY")
        issuer = f"http://127.0.0.1:{port}"
        self.wait_http(f"{issuer}/.well-known/openid-configuration")
        return Idp(issuer, self.dir / f"{name}-events.jsonl", port)

    def start_backend(
        self, port: int, issuer: str, page_size: int = 2, name: str = "backend", resource_metadata: bool = False,
        delay: float = 0, sse: bool = False, scope: str | None = None,
    ) -> str:
        """backend.py; with `resource_metadata` an RFC 9728 protected resource whose tokens must
        have its own URL as aud; with `delay` every request waits that many seconds; with `sse`
        an HTTP+SSE server (MCP 2024-11-05) whose stream is at /sse."""
        env = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "FASTMCP_SHOW_SERVER_BANNER": "false"}
        argv = [PYTHON, str(HERE / "backend.py"), "--port", str(port), "--issuer", issuer, "--page-size", str(page_size)]
        if resource_metadata:
            argv.append("--resource-metadata")
        if delay:
            argv += ["--delay", str(delay)]
        if sse:
            argv.append("--sse")
        if scope:
            argv += ["--scope", scope]
        self.start(name, argv, env, "BACKEND READY")
        return f"http://127.0.0.1:{port}/{'sse' if sse else 'mcp'}"

    def start_everything(self, port: int, require_header: str | None = None) -> str:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "PORT": str(port)}
        if require_header:
            env["EVERYTHING_REQUIRE_HEADER"] = require_header
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

    def requests(self, route: str | None = None, **match: Any) -> list[dict]:
        """The requests idp.mjs recorded (authorization, token, device_authorization,
        code_verification, revocation, registration), as answered; filtered by route and field
        values."""
        return [
            e for e in self.events()
            if e["event"] == "request" and (route is None or e.get("route") == route)
            and all(e.get(k) == v for k, v in match.items())
        ]


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


def client_session(
    read, write, timeout: float, stream_errors: list[str], logs: list | None, notifications: list | None,
    elicitation=None,
) -> ClientSession:
    """The client every scenario uses: answers sampling, elicitation (declines, unless the
    scenario brings its own `elicitation` answer) and roots, and records logging messages,
    other notifications and transport faults."""

    async def on_log(params) -> None:
        if logs is not None:
            logs.append(params)

    async def on_message(message) -> None:
        # Transport-level exceptions: e.g. a stdout line that is not JSON-RPC.
        if isinstance(message, Exception):
            stream_errors.append(f"{type(message).__name__}: {message}")
        elif notifications is not None and hasattr(message, "method"):
            notifications.append(message)

    return ClientSession(
        read,
        write,
        read_timeout_seconds=timeout,
        sampling_callback=sampling_answer,
        elicitation_callback=elicitation or elicitation_answer,
        message_handler=on_message,
        list_roots_callback=roots_answer,
        logging_callback=on_log,
    )


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
    notifications: list | None = None,
    check_exit: bool | None = None,
    elicitation=None,
) -> Any:
    """Starts the proxy with the official MCP Python SDK's stdio_client and runs `body`; the
    initialize result is at `session.interop_initialize`. The exit status is checked for our
    binary (by default) or when `check_exit` says so (a launcher that runs it: uvx, npx)."""
    cmd = command or [BIN]
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], *(args or [])], env=env, cwd=str(sc.dir))
    errlog_path = sc.dir / f"{label}.stderr.log"
    stream_errors: list[str] = []
    spawned: list = []
    _spawned.set(spawned)

    with open(errlog_path, "a") as errlog:
        try:
            with anyio.fail_after(timeout):
                async with stdio_client(params, errlog=errlog) as (read, write):
                    async with client_session(read, write, timeout, stream_errors, logs, notifications, elicitation) as session:
                        session.interop_initialize = await session.initialize()
                        result = await body(session)
            check(not stream_errors, f"{label}: the client saw non-JSON-RPC output on stdout: {stream_errors[:3]}")
            if (cmd == [BIN] if check_exit is None else check_exit) and spawned:
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


async def with_direct(
    url: str,
    body: Callable[[ClientSession], Awaitable[Any]],
    *,
    label: str = "direct",
    timeout: float = CALL_TIMEOUT,
    logs: list | None = None,
    notifications: list | None = None,
) -> Any:
    """Runs `body` with the same client talking Streamable HTTP straight to `url` (no proxy)."""
    stream_errors: list[str] = []
    try:
        with anyio.fail_after(timeout):
            async with streamable_http_client(url) as (read, write, *_):
                async with client_session(read, write, timeout, stream_errors, logs, notifications) as session:
                    session.interop_initialize = await session.initialize()
                    result = await body(session)
        check(not stream_errors, f"{label}: transport errors: {stream_errors[:3]}")
        return result
    except TimeoutError:
        raise Failure(f"{label}: no answer within {timeout}s") from None
    except Failure:
        raise
    except Exception as e:  # noqa: BLE001
        raise Failure(f"{label}: {describe(e)}") from None


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


def gateway_file(sc: Scenario, profiles: dict[str, tuple[str, int]], backends: dict[str, str]) -> Path:
    """A gateway configuration file: `profiles` name → (issuer, callback port), public client
    `interop-public`; `backends` name → URL, each with the profile of its own name."""
    lines = ["oidc_profiles:"]
    for name, (issuer, cb) in profiles.items():
        lines += [f"  {name}:", f"    issuer_url: {issuer}", "    client_id: interop-public",
                  f"    redirect_url: http://localhost:{cb}/auth/callback"]
    lines.append("backends:")
    for name, url in backends.items():
        lines += [f"  {name}:", f"    url: {url}", f"    oidc_profile: {name}"]
    path = sc.dir / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_env(sc: Scenario, pause: float = 0) -> dict[str, str]:
    """What a desktop client's entry sets for a gateway: its HOME (token cache and remembered
    lists), the browser stand-in as $BROWSER with the seconds its person takes at the login
    form, debug logs."""
    browser_log = sc.dir / "browser.log"
    sc.browser_logs.append(browser_log)
    return {
        "HOME": str(sc.home()),
        "BROWSER": str(HERE / "browser.py"),
        "MCP_PROXY_DEBUG": "1",
        "INTEROP_BROWSER_LOG": str(browser_log),
        "INTEROP_BROWSER_PAUSE": str(pause),
        "INTEROP_LOGIN": LOGIN,
    }


def fastmcp_stack(sc: Scenario, access_ttl: int = 3600, extra_callback_ports: list[int] | None = None):
    """An IdP and a fastmcp backend that validates its tokens: (idp, backend URL, callback port)."""
    backend_port, cb = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(backend_url, [cb, *(extra_callback_ports or [])], access_ttl=access_ttl)
    sc.start_backend(backend_port, idp.issuer)
    return idp, backend_url, cb


def login_once(sc: Scenario, idp: Idp, backend_url: str, cb: int, home: Path, **kw) -> dict:
    """A first run that logs in with the browser stand-in and calls whoami."""
    out: dict = {}
    env = sc.proxy_env(home, backend_url, idp.issuer, cb, **kw)
    asyncio.run(with_proxy(sc, env, whoami_body(out), label="proxy-login"))
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    return out["whoami"]


