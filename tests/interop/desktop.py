"""Scenario 8: the gateway as Claude Desktop uses it, on a first run. A raw JSON-RPC client that
behaves like Claude Desktop (one page of each list, sent right after initialize; list_changed
ignored; 60 s per answer) starts the release binary with a two-issuer config file; a person
takes INTEROP_BROWSER_PAUSE seconds at each login form of the real oidc-provider; the fastmcp
backends page their lists by 2. The one tool list the client reads must hold every tool.

The timings (initialize, complete tool list) are the scenario's note in the summary and in
timings.json.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time

from harness import BIN, LOGIN, RUN_DIR, Failure, Proc, Scenario, check, free_port, gateway_env, gateway_file, tail

PERSON_SECONDS = 6  # per login: a password and an MFA code
ANSWER_LIMIT = 60  # Claude Desktop's limit for any answer


class ListOnceClient:
    """Claude Desktop's side of the pipe: JSON-RPC lines in, every message out in order."""

    def __init__(self, sc: Scenario, argv: list[str], env: dict[str, str]) -> None:
        self.stderr = sc.dir / "proxy.stderr.log"
        with open(self.stderr, "ab") as err:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                cwd=sc.dir, start_new_session=True,
            )
        with open(RUN_DIR / "pids", "a") as pids:  # for ./run's last-resort cleanup
            pids.write(f"{self.popen.pid}\n")
        sc.procs.append(Proc("proxy", self.popen, self.stderr))
        self.started = time.monotonic()
        self.messages: queue.Queue = queue.Queue()
        self.seen: list[tuple[float, dict]] = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.messages.put((time.monotonic() - self.started, json.loads(line)))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def send(self, message: dict) -> None:
        self.popen.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        self.popen.stdin.flush()

    def request(self, method: str, params: dict) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    def answer(self, id: int) -> tuple[float, dict]:
        """The answer to `id` and when it came; other messages are kept in `seen`."""
        for at, message in self.seen:
            if message.get("id") == id and "method" not in message:
                return at, message
        deadline = time.monotonic() + ANSWER_LIMIT
        while True:
            try:
                at, message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Failure(f"no answer to request {id} within {ANSWER_LIMIT} s, as Claude Desktop would give up:\n{tail(self.stderr)}") from None
            self.seen.append((at, message))
            if message.get("id") == id and "method" not in message:
                return at, message

    def close(self) -> int:
        self.popen.stdin.close()
        return self.popen.wait(timeout=15)


def list_once_two_slow_logins(sc: Scenario) -> str:
    names = ("corp", "partner")
    ports = {name: (free_port(), free_port()) for name in names}  # backend, callback
    urls = {name: f"http://127.0.0.1:{backend}/mcp" for name, (backend, _) in ports.items()}
    idps = {}
    for name, (backend, cb) in ports.items():
        idps[name] = sc.start_idp(urls[name], [cb], name=f"idp-{name}")
        sc.start_backend(backend, idps[name].issuer, page_size=2, name=f"backend-{name}")
    # Every gateway setting at its default.
    config = gateway_file(sc, {name: (idps[name].issuer, cb) for name, (_, cb) in ports.items()}, urls)

    env = {"PATH": os.environ["PATH"], **gateway_env(sc, PERSON_SECONDS)}
    client = ListOnceClient(sc, [BIN, "--config", str(config)], env)
    init = client.request("initialize", {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "claude-ai", "version": "0.14"},
    })
    initialized, answer = client.answer(init)
    check("result" in answer, f"initialize failed: {answer}")
    client.send({"method": "notifications/initialized"})
    # Right after initialize, every list at once, each read once.
    asked = {kind: client.request(f"{kind}/list", {}) for kind in ("tools", "prompts", "resources")}
    listed, tools = client.answer(asked["tools"])
    check("nextCursor" not in tools.get("result", {}), f"a cursor on the one page: {tools}")
    tool_names = sorted(t["name"] for t in tools["result"]["tools"])
    expected = sorted(f"{n}_{t}" for n in names for t in ("add", "count_with_progress", "echo", "whoami"))
    check(tool_names == expected, f"the one tool list at {listed:.1f} s: {tool_names}")
    for kind in ("prompts", "resources"):
        _, answer = client.answer(asked[kind])
        check(len(answer["result"][kind]) == 2, f"{kind}/list: {answer}")
    for name in names:
        _, who = client.answer(client.request("tools/call", {"name": f"{name}_whoami", "arguments": {}}))
        content = who["result"].get("structuredContent") or json.loads(who["result"]["content"][0]["text"])
        if set(content) == {"result"}:
            content = content["result"]
        check(content.get("sub") == LOGIN, f"{name}_whoami: {who}")
    code = client.close()
    check(code == 0, f"the proxy exited {code} after stdin closed")
    check(initialized < 10, f"initialize took {initialized:.1f} s")
    check(listed >= PERSON_SECONDS, f"the tool list came after {listed:.1f} s, before the logins?")
    # The two logins run side by side (a tab each); one after the other they would take twice.
    check(listed < 2 * PERSON_SECONDS, f"the tool list came after {listed:.1f} s: logins one after the other?")
    check(listed < 45, f"the tool list took {listed:.1f} s, past gateway.first_list_timeout")
    for name, idp in idps.items():
        grants = [e["grant_type"] for e in idp.events() if e["event"] == "grant.success"]
        check(grants == ["authorization_code"], f"{name} IdP saw grants {grants}: one login per issuer")
    timings = {"person_seconds_per_login": PERSON_SECONDS, "initialize_s": round(initialized, 2), "complete_tool_list_s": round(listed, 2)}
    (sc.dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return f"two {PERSON_SECONDS}-s logins: initialize after {initialized:.1f} s, all {len(tool_names)} tools in the one list after {listed:.1f} s"


SCENARIOS = [list_once_two_slow_logins]
