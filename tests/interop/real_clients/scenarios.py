"""Real desktop clients against the gateway: Claude Code, Codex, Gemini CLI and opencode, each
installed from npm (clients/package.json) and driven the way users run them non-interactively,
with its model API replaced by a fake on 127.0.0.1 (model.py) that records which of the gateway's
tools the model was offered and calls one of them.

Three cases per client, each a scenario `<client>_<case>`:
- `cold`: nothing signed in, nothing remembered; one profile whose login is quick.
- `warm_slow_backends`: signed in and the catalog remembered from an earlier run; the backend
  then takes 2 s for every request, initialize and lists included.
- `slow_logins`: nothing signed in; two profiles on two providers, and the person takes
  SLOW_LOGIN seconds at each login form.
Each asserts what the client's first model request offered, that the model's call of `whoami`
came back with the signed-in user, and the times a tap between client and proxy saw (spawn →
`initialize` answered, → first complete `tools/list`); its summary note says them.

These CLIs reach for other hosts on their own (telemetry, updates, plugins): besides their
settings that turn it off, each case runs in a network namespace of its own with only a loopback
interface (`unshare --net`, `ip link set lo up`; root needed). A case that cannot make the
namespace fails; it never runs outside it. The outer scenario re-executes this module inside the
namespace (`python -m real_clients.inner CLIENT CASE DIR`), where the provider, backends, fake model and client start.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from harness import BIN, HERE, LOGIN, Failure, Scenario, check, free_port, gateway_env, gateway_file, tail
from real_clients.model import FALLBACK_CALL, FakeModel, Wire

CLIENTS_DIR = HERE / "clients"  # npm install of clients/package.json
BIN_DIR = CLIENTS_DIR / "node_modules" / ".bin"
SERVER = "gw"  # the gateway's name in each client's configuration
TARGET = "corp_whoami"  # the backend tool the model calls, by its gateway name
SLOW_LOGIN = 12  # seconds a person takes at each login form in `slow_logins`
SLOW_BACKEND = 2  # seconds every request takes in `warm_slow_backends`
# Whether the gateway holds a client's first tool list for two side-by-side SLOW_LOGIN logins:
# its first-list wait by clientInfo (src/server/client_waits.rs) is Claude Code's 20 s, Codex's
# 0.7 s, Gemini CLI's and opencode's 10 s. Those that get the fallback tools reach the backend
# through `gateway_call_tool`, which waits for the login.
HOLDS_FIRST_LIST_FOR_SLOW_LOGINS = {"claude_code": True, "codex": False, "gemini_cli": False, "opencode": False}
CLIENT_TIMEOUT = 90  # seconds for one client run
INNER_TIMEOUT = 110  # seconds for the whole inner case (the suite allows 120 per scenario)


@dataclass
class Entry:
    """The MCP server entry a client's configuration gets: how to start the gateway."""

    name: str
    command: str
    args: list[str]
    env: dict[str, str]


class Driver(Protocol):
    name: str  # scenario prefix: claude_code, codex, gemini_cli, opencode
    client_info: str  # the clientInfo.name it sends in initialize (or, in 2026-07-28, in _meta)
    wire: Wire

    def run(self, home: Path, workdir: Path, model_url: str, entry: Entry, out: Path, timeout: float) -> int:
        """Writes the client's configuration under `home`, runs one non-interactive turn with
        PROMPT (output, stdout and stderr, to `out`), and returns its exit code."""
        ...


def driver(client: str) -> Driver:
    """`real_clients/<client>.py` holds the client's driver and its model API's wire."""
    return importlib.import_module(f"real_clients.{client}").DRIVER


def client_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A clean environment for a client run: its own HOME, the machine's PATH, nothing else
    from the suite (so no proxy variable or token leaks in by accident)."""
    env = {
        "HOME": str(home),
        "PATH": f"{BIN_DIR}:{os.environ['PATH']}",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
    }
    env.update(extra)
    return env


def run_cli(argv: list[str], env: dict[str, str], cwd: Path, out: Path, timeout: float) -> int:
    """Runs a client CLI in a process group of its own, stdin closed; kills the group on time-out."""
    with open(out, "ab") as f:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        try:
            return popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, 9)
            popen.wait()
            raise Failure(f"{argv[0]} did not finish within {timeout} s:\n{tail(out)}") from None


# --------------------------------------------------------------------------------------------
# What the tap saw


@dataclass
class Timings:
    client_info: str | None
    protocol: str | None
    initialize: float | None  # seconds from spawn to the initialize (or server/discover) answer
    first_list: float | None  # seconds from spawn to the first complete tools/list answer
    first_tools: list[str]  # the tools in that list

    def text(self) -> str:
        def s(v: float | None) -> str:
            return "never" if v is None else f"{v:.2f} s"
        return f"initialize/discover {s(self.initialize)}, first complete list {s(self.first_list)}"


def read_tap(log: Path) -> Timings:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    asked: dict[object, str] = {}
    info = protocol = None
    initialize = first_list = None
    tools: list[str] = []
    for e in entries:
        if e.get("dir") == "in" and "method" in e and "id" in e:
            asked[json.dumps(e["id"])] = e["method"]
            if e["method"] == "initialize" or (info is None and e.get("client")):
                info, protocol = e.get("client"), e.get("protocol")
        elif e.get("dir") == "out" and "id" in e and "method" not in e:
            method = asked.get(json.dumps(e["id"]))
            # A 2026-07-28 client's handshake is its server/discover probe.
            if method in ("initialize", "server/discover") and initialize is None and "error" not in e:
                initialize = e["t"]
            elif method == "tools/list" and first_list is None and "tools" in e and not e.get("next_cursor"):
                first_list, tools = e["t"], e.get("tool_names") or []
    return Timings(info, protocol, initialize, first_list, tools)


# --------------------------------------------------------------------------------------------
# The cases


@dataclass
class Setup:
    config: Path  # the gateway's configuration file
    proxy_env: dict[str, str]  # the entry's env block
    expect_target_first: bool | None  # True: the target offered at once; False: fallback; None: either
    after: Callable[[], None] | None = None  # checks once the client is done


def one_backend(sc: Scenario, delay: float = 0) -> tuple[str, int, str, Path]:
    """One provider and one fastmcp backend named corp: (issuer, backend port, URL, config)."""
    backend_port, cb = free_port(), free_port()
    url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(url, [cb], name="idp-corp")
    sc.start_backend(backend_port, idp.issuer, name="backend-corp", delay=delay)
    return idp.issuer, backend_port, url, gateway_file(sc, {"corp": (idp.issuer, cb)}, {"corp": url})


def cold(sc: Scenario, driver: Driver) -> Setup:
    _, _, _, config = one_backend(sc)
    return Setup(config, gateway_env(sc), None)


def warm_slow_backends(sc: Scenario, driver: Driver) -> Setup:
    issuer, port, url, config = one_backend(sc)
    env = gateway_env(sc)
    # An earlier day: signed in, and a session that listed everything (which remembers it).
    run_env = {"PATH": os.environ["PATH"], **env}
    login = subprocess.run([BIN, "login", "--config", str(config)], env=run_env, capture_output=True, timeout=60, cwd=sc.dir)
    check(login.returncode == 0, f"`login` failed: {login.stderr.decode(errors='replace')[-800:]}")
    listed = subprocess.run(
        [sys.executable, str(HERE / "real_clients" / "list_once.py"), BIN, "--config", str(config)],
        env=run_env, capture_output=True, timeout=60, cwd=sc.dir,
    )
    check(listed.returncode == 0 and TARGET in listed.stdout.decode(), f"the earlier session did not list {TARGET}: {listed.stdout.decode()[-400:]} {listed.stderr.decode(errors='replace')[-800:]}")
    # Today the backend is slow: every request, initialize and lists included, takes 2 s.
    for proc in sc.procs:
        if proc.name == "backend-corp":
            proc.stop()
    sc.start_backend(port, issuer, name="backend-corp-slow", delay=SLOW_BACKEND)

    def catalog_still_whole() -> None:
        # The client stops the gateway while the slow backend's fresh lists are still being
        # read; what is remembered must stay the whole list, not the pages read by then.
        files = list((Path(env["HOME"]) / ".fastmcp" / "oauth-mcp-client-cache" / "remembered").glob("*.json"))
        check(len(files) == 1, f"remembered entries: {files}")
        tools = [t["name"] for t in json.loads(files[0].read_text())["tools"]]
        check(len(tools) == 4, f"the remembered tools after the run: {tools}")

    return Setup(config, env, True, catalog_still_whole)


def slow_logins(sc: Scenario, driver: Driver) -> Setup:
    names = ("corp", "partner")
    ports = {n: (free_port(), free_port()) for n in names}
    urls = {n: f"http://127.0.0.1:{b}/mcp" for n, (b, _) in ports.items()}
    profiles = {}
    for n, (b, cb) in ports.items():
        idp = sc.start_idp(urls[n], [cb], name=f"idp-{n}")
        sc.start_backend(b, idp.issuer, name=f"backend-{n}")
        profiles[n] = (idp.issuer, cb)
    config = gateway_file(sc, profiles, urls)
    return Setup(config, gateway_env(sc, SLOW_LOGIN), HOLDS_FIRST_LIST_FOR_SLOW_LOGINS[driver.name])


CASES: dict[str, Callable[[Scenario, Driver], Setup]] = {
    "cold": cold,
    "warm_slow_backends": warm_slow_backends,
    "slow_logins": slow_logins,
}


def run_case(sc: Scenario, driver: Driver, case: str) -> str:
    setup = CASES[case](sc, driver)
    fake = FakeModel(driver.wire, SERVER, TARGET, sc.dir / "model-requests.jsonl")
    port = fake.start()
    tap_log = sc.dir / "tap.jsonl"
    entry = Entry(
        SERVER,
        os.path.realpath(sys.executable),  # the interpreter itself: no venv or shim start-up
        ["-I", "-S", str(HERE / "real_clients" / "tap.py"), str(tap_log), str(sc.dir / "proxy.stderr.log"), "--", BIN, "--config", str(setup.config)],
        setup.proxy_env,
    )
    client_home = sc.dir / "client-home"
    workdir = sc.dir / "workdir"
    for d in (client_home, workdir):
        d.mkdir(parents=True, exist_ok=True)
    out = sc.dir / f"{driver.name}.out"
    try:
        code = driver.run(client_home, workdir, f"http://127.0.0.1:{port}", entry, out, CLIENT_TIMEOUT)
    finally:
        fake.stop()
    timings = read_tap(tap_log)
    (sc.dir / "result.json").write_text(json.dumps({
        "client": driver.name, "case": case, "exit": code, "timings": timings.__dict__,
        "requests": [r.__dict__ for r in fake.records],
    }, indent=2) + "\n")
    check(code == 0, f"{driver.name} exited {code}:\n{tail(out, 20)}")
    check(timings.client_info == driver.client_info, f"clientInfo.name {timings.client_info!r}, expected {driver.client_info!r}")
    first = fake.first_main()
    check(first is not None, f"{driver.name} never asked the model:\n{tail(out, 20)}")
    offered = first.offered
    check(TARGET in offered or FALLBACK_CALL in offered, f"the first model request offered none of the gateway's tools: {offered}")
    if setup.expect_target_first is not None:
        check((TARGET in offered) == setup.expect_target_first,
              f"the first model request offered {offered}; expected {'the backend tools' if setup.expect_target_first else 'the fallback tools only'}")
    results = [r for rec in fake.records for r in rec.results]
    check(any(LOGIN in r for r in results), f"the model never got whoami's answer with {LOGIN!r}: {results or 'no tool result'}\n{tail(out, 20)}")
    check(timings.first_list is not None, "no complete tools/list answer passed the tap")
    if setup.after:
        setup.after()
    what = "backend tools" if TARGET in offered else "fallback tools"
    return f"{timings.client_info} ({timings.protocol}): first model request offered {what} ({len(offered)}: {', '.join(offered)}); {timings.text()}"


# --------------------------------------------------------------------------------------------
# Namespace: outer (in the suite) and inner (inside `unshare --net`)


def network_namespace() -> str:
    return os.readlink("/proc/self/ns/net")


def interfaces() -> list[str]:
    """This namespace's network interfaces (/proc/net/dev is per namespace; /sys/class/net is
    not, unless sysfs is mounted again)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines)


def inner(client: str, case: str, directory: Path) -> int:
    result = directory / "outcome.json"
    try:
        outside = os.environ.get("INTEROP_OUTER_NETNS")
        check(outside is not None and network_namespace() != outside, "not in a network namespace of its own")
        check(interfaces() == ["lo"], f"the namespace has interfaces besides lo: {interfaces()}")
        up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
        check(up.returncode == 0, f"`ip link set lo up` failed: {up.stderr.decode(errors='replace')}")
        sc = Scenario(f"{client}_{case}", directory)
        try:
            note = run_case(sc, driver(client), case)
        finally:
            sc.stop_all()
        result.write_text(json.dumps({"ok": True, "note": note}))
    except Failure as e:
        result.write_text(json.dumps({"ok": False, "reason": str(e)}))
    return 0


def scenario(client: str, case: str) -> Callable[[Scenario], str]:
    def run(sc: Scenario) -> str:
        if not (BIN_DIR / "claude").exists():
            raise Failure(f"the clients are not installed in {CLIENTS_DIR} (./run installs them)")
        argv = ["unshare", "--net", "--", sys.executable, "-m", "real_clients.inner", client, case, str(sc.dir)]
        env = {**os.environ, "PYTHONPATH": str(HERE), "INTEROP_OUTER_NETNS": network_namespace()}
        with open(sc.dir / "inner.log", "ab") as log:
            popen = subprocess.Popen(argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = popen.wait(timeout=INNER_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, 9)
            popen.wait()
            raise Failure(f"the case did not finish within {INNER_TIMEOUT} s:\n{tail(sc.dir / 'inner.log')}") from None
        outcome = sc.dir / "outcome.json"
        if not outcome.exists():
            # unshare itself failed (no privilege, no namespaces): never run outside one.
            raise Failure(f"could not run in a loopback-only network namespace (exit {code}):\n{tail(sc.dir / 'inner.log')}")
        result = json.loads(outcome.read_text())
        if not result["ok"]:
            raise Failure(result["reason"])
        return result["note"]

    run.__name__ = f"{client}_{case}"
    return run


CLIENT_NAMES = ("claude_code", "codex", "gemini_cli", "opencode")
SCENARIOS = [scenario(client, case) for client in CLIENT_NAMES for case in CASES]

