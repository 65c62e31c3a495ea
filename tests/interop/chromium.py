"""Scenario 7: a real browser. Debian's headless Chromium, driven by playwright-core through
chromium_browser.mjs as $BROWSER, logs in at oidc-provider and lands on the proxy's callback page,
once; a screenshot of that page stays in the scenario's folder (callback-page.png) for CI.

Set up by setup/chromium.sh, which exports INTEROP_CHROMIUM and, when Chromium is missing,
INTEROP_CHROMIUM_SKIP_REASON (INTEROP_SKIP_CHROMIUM=1) or INTEROP_CHROMIUM_FAIL_REASON.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import time
import urllib.parse
from pathlib import Path

from harness import HERE, Failure, Scenario, Skip, check, check_whoami, free_port, tail, whoami_body, with_proxy

STAND_IN = HERE / "chromium_browser.mjs"
LABEL = "chromium-browser"  # its log: chromium-browser.log


def chromium_login(sc: Scenario) -> None:
    chromium = chromium_or_skip()
    backend_port, cb = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(backend_url, [cb])
    sc.start_backend(backend_port, idp.issuer)

    shot = sc.dir / "callback-page.png"
    log = sc.dir / f"{LABEL}.log"
    env = sc.proxy_env(sc.home(), backend_url, idp.issuer, cb, browser="chromium", label=LABEL)
    # webbrowser runs $BROWSER as a command line split on whitespace, after checking that the
    # command is an executable file: so the script itself (shebang, mode 755), not "node script".
    env["BROWSER"] = str(STAND_IN)
    env["INTEROP_CHROMIUM"] = chromium
    env["INTEROP_SCREENSHOT"] = str(shot)
    out: dict = {}
    try:
        asyncio.run(unless_failed(log, with_proxy(sc, env, whoami_body(out))))
        # The proxy is done once it has the code; the stand-in still screenshots and closes Chromium.
        check(wait_for(lambda: "done, exit" in read(log), 30), f"the Chromium stand-in did not finish:\n{tail(log)}")
        wait_for(lambda: not stand_in_processes(log), 5)
        leftovers = stand_in_processes(log)
    finally:
        stop_stand_in(log)  # on failure too; a no-op when all is well

    check_whoami(out["whoami"], "interop-public")
    check("done, exit 0" in read(log), f"the Chromium login failed:\n{tail(log)}")
    check(re.search(r"chromium pid \d+", read(log)) is not None, f"{log.name} does not tell Chromium's pid")
    check(not leftovers, f"processes left after the login: {leftovers}")
    profiles = [Path(p) for p in re.findall(r"\(profile (\S+)\)", read(log))]
    check(bool(profiles) and not any(p.exists() for p in profiles), f"Chromium's temporary profile was not removed: {profiles}")
    check_screenshot(shot)
    text = read(shot.with_suffix(".txt"))
    expected = f"You are signed in to {idp.issuer}. You can close this tab and return to your app."
    check("Login complete" in text and expected in text, f"the page is not our success page: {text[:300]!r}")
    check_landing(log, cb)
    grants = [e["grant_type"] for e in idp.events() if e["event"] == "grant.success"]
    check(grants == ["authorization_code"], f"IdP saw grants {grants}, expected one authorization_code grant")


async def unless_failed(log: Path, run) -> None:
    """Runs `run`, but a stand-in that gave up fails the scenario at once, not when the proxy's
    login times out (the proxy logs in before it answers initialize)."""
    task = asyncio.ensure_future(run)
    while not task.done():
        if re.search(r"done, exit [1-9]", read(log)):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # stops the proxy
            raise Failure(f"the Chromium login failed:\n{tail(log)}")
        await asyncio.sleep(0.25)
    task.result()


def chromium_or_skip() -> str:
    if reason := os.environ.get("INTEROP_CHROMIUM_SKIP_REASON"):
        raise Skip(reason)
    if reason := os.environ.get("INTEROP_CHROMIUM_FAIL_REASON"):
        raise Failure(f"no Chromium: {reason}")
    chromium = os.environ.get("INTEROP_CHROMIUM") or ""
    check(os.access(chromium, os.X_OK), f"no Chromium (INTEROP_CHROMIUM={chromium!r}); see setup/chromium.sh")
    check((HERE / "node_modules" / "playwright-core").is_dir(), "npm package playwright-core is not installed")
    check(os.access(STAND_IN, os.X_OK), f"{STAND_IN.name} is not executable (webbrowser ignores it then)")
    return chromium


def check_screenshot(path: Path) -> None:
    check(path.exists(), f"no screenshot at {path}")
    data = path.read_bytes()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG (starts {data[:8]!r})")
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    check(width >= 320 and height >= 200, f"{path.name} is {width}x{height} pixels")
    check(2_000 < len(data) < 20_000_000, f"{path.name} has an implausible size of {len(data)} bytes")


def check_landing(log: Path, cb: int) -> None:
    text = read(log)
    landed = re.findall(r"landed on (\S+) \(title .*, callback requests: (\d+)\)", text)
    check(len(landed) == 1, f"expected one 'landed on' line in {log.name}, found {len(landed)}")
    url, requests = landed[0]
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    check(
        (parts.scheme, parts.hostname, parts.port, parts.path) == ("http", "localhost", cb, "/auth/callback"),
        f"Chromium landed on {url}, expected http://localhost:{cb}/auth/callback",
    )
    check(query.get("code") == ["REDACTED"] and query.get("state"), f"callback URL without code and state: {url}")
    check(requests == "1", f"Chromium requested the callback {requests} times, expected once")
    codes = set(re.findall(r"[?&]code=([^&\s]*)", text))
    check(codes <= {"REDACTED"}, f"{log.name} shows an authorization code")


# --------------------------------------------------------------------------------------------
# Processes: found by the session ids and the profile path the stand-in logs, never by name (other
# Chromiums on this machine are none of our business).


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def workers(log: Path) -> set[int]:
    return {int(pid) for pid in re.findall(r"detached worker pid (\d+)", read(log))}


def stand_in_processes(log: Path) -> list[tuple[int, str]]:
    """Live processes (pid, name) of the stand-in: in the sessions of its worker and of Chromium
    (each leads one, which children inherit), or naming its Chromium profile (the crashpad
    handlers, which start sessions of their own). Zombies are dead already."""
    text = read(log)
    sids = workers(log) | {int(pid) for pid in re.findall(r"chromium pid (\d+)", text)}
    profiles = [p.encode() for p in re.findall(r"\(profile (\S+)\)", text)]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if state != "Z" and (int(session) in sids or any(p in cmdline for p in profiles)):
            found.append((int(entry), comm))
    return found


def stop_stand_in(log: Path) -> None:
    """SIGTERM to the worker first: it then closes Chromium itself, even one it is still launching
    (whose pid is not logged yet); SIGKILL to whatever is left after 20 s."""
    if not stand_in_processes(log):
        return
    for pid, _ in stand_in_processes(log):
        if pid in workers(log):
            send(pid, signal.SIGTERM)
    wait_for(lambda: not stand_in_processes(log), 20)
    for pid, _ in stand_in_processes(log):
        send(pid, signal.SIGKILL)


def send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # exited meanwhile


SCENARIOS = [chromium_login]
