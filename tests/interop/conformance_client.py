#!/usr/bin/env python3
"""Client under test for the MCP conformance suite's `auth/*` scenarios: authful-mcp-proxy,
configured the way a user configures it.

The conformance CLI runs `<command> SERVER_URL` with MCP_CONFORMANCE_SCENARIO set and, for
scenarios that hand out client credentials, MCP_CONFORMANCE_CONTEXT (JSON: client_id,
client_secret or private_key_pem and signing_algorithm, ...). It starts a mock MCP server and a
mock authorization server (AS) on random ports and judges the client by the requests they receive.

Two kinds of configuration, as a user writes them:
- A scenario without credentials is a public server that runs OAuth itself: a gateway file with
  one backend, `auth: oauth`, and the `gateway.client_metadata_url` of the proxy's client ID
  metadata document (the URL the suite's AS expects). The proxy finds the AS through the
  server's metadata (RFC 9728, or the server's origin for 2025-03-26 servers), names itself by
  that document where the AS takes one and registers itself (RFC 7591) otherwise, and asks for
  the scopes the server names.
- A scenario that hands out a client id is a client an administrator registered: the drop-in's
  environment variables. Before starting the proxy this script does what that administrator did
  once ("setup"): it reads the server's protected-resource metadata (PRM), takes the first AS and
  reads its metadata, to choose a service account (`client_credentials`, where the AS grants
  nothing else) and the issuer a confidential client must name (its credentials never go to a
  server a backend alone names). Requests of this setup reach the mock servers too; the suite
  counts them (`setup_hits`), so a check they satisfy is credited to the proxy only when the
  proxy made the request as well. A service account may sign with the scenario's key
  (private_key_jwt; AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__CLIENT_ASSERTION__*).

Either way it starts the proxy as a desktop client would (stdio, $BROWSER = browser.py, which
follows the AS's immediate redirect to the proxy's loopback callback), initializes, lists the
tools and calls the first one.

With INTEROP_CONFORMANCE_SHIM=1 (the workaround run, see conformance_suite.py; none is needed
today) a pre-registered client's issuer is a shim served here: the mock AS's own RFC 8414
metadata under the shim's issuer, plus a `jwks_uri`; the authorization and token requests still
go to the mock AS.

Environment besides the conformance suite's: AUTHFUL_MCP_PROXY_BIN, INTEROP_CONFORMANCE_OUT (a
directory: one sub-directory per scenario gets the logs, a HOME and result.json),
INTEROP_CONFORMANCE_SHIM, INTEROP_CONFORMANCE_DEADLINE (seconds for the MCP session, default 20).
Exit status 0 when the session worked, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import traceback
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
# The id of the client "registered" at the AS when the scenario hands out no credentials: the
# mock AS accepts any client id.
# The client ID metadata document the suite's authorization servers expect (they do not fetch
# it): what a platform team would host for the proxy, named once in the gateway file.
CIMD_URL = "https://conformance-test.local/client-metadata.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, the body parsed as JSON or None); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, hdrs, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, None


def www_authenticate_param(header: str, name: str) -> str | None:
    marker = f'{name}="'
    if marker not in header:
        return None
    return header.split(marker, 1)[1].split('"', 1)[0]


def setup(server_url: str, notes: list[str], hits: dict[str, int]) -> tuple[dict | None, dict]:
    """The administrator's part: does the server publish PRM, which AS, what kind of client.
    Returns (the PRM or None, the AS metadata, only {"issuer": ...} when the AS publishes none).
    `hits` counts the setup's successful metadata requests, which satisfy the suite's checks
    `prm-pathbased-requested` and `authorization-server-metadata` as the proxy's would."""
    parts = urllib.parse.urlsplit(server_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    # A request without a token: the 401 may name the PRM (RFC 9728 §5.1). tools/list, because
    # some scenarios let `initialize` through without a token.
    probe = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    status, headers, _ = http("POST", server_url, probe, {
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    challenge = headers.get("WWW-Authenticate", "") if headers else ""
    notes.append(f"unauthenticated tools/list: {status} {challenge!r}")
    candidates = [www_authenticate_param(challenge, "resource_metadata"),
                  f"{origin}/.well-known/oauth-protected-resource{parts.path}",
                  f"{origin}/.well-known/oauth-protected-resource"]
    prm = None
    for url in dict.fromkeys(filter(None, candidates)):
        status, _, body = http("GET", url)
        notes.append(f"PRM {url}: {status}")
        if status == 200:
            hits["prm"] += 1
        if status == 200 and isinstance(body, dict) and body.get("authorization_servers"):
            prm = body
            break
    if prm is not None:
        issuer = prm["authorization_servers"][0].rstrip("/")
    else:
        issuer = origin  # 2025-03-26 servers: the MCP server's origin is the AS
        notes.append(f"no PRM: taking the server's origin {origin} as the AS")
    # AS metadata, RFC 8414 first, then OpenID Connect Discovery (both path-aware).
    issuer_parts = urllib.parse.urlsplit(issuer)
    path = issuer_parts.path.rstrip("/")
    root = f"{issuer_parts.scheme}://{issuer_parts.netloc}"
    for url in dict.fromkeys((f"{root}/.well-known/oauth-authorization-server{path}",
                              f"{root}/.well-known/openid-configuration{path}",
                              f"{issuer}/.well-known/openid-configuration")):
        status, _, meta = http("GET", url)
        notes.append(f"AS metadata {url}: {status}")
        if status == 200:
            hits["as_metadata"] += 1
        if status == 200 and isinstance(meta, dict):
            return prm, {**meta, "issuer": meta.get("issuer", issuer)}
    notes.append("no AS metadata")
    return prm, {"issuer": issuer}


def start_shim(meta: dict) -> tuple[ThreadingHTTPServer, str]:
    """The mock AS's RFC 8414 metadata under another issuer, plus the `jwks_uri` (an empty key
    set) the proxy needs (see the module docstring). The endpoints stay the mock AS's."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    root = urllib.parse.urlsplit(meta["issuer"])
    as_root = f"{root.scheme}://{root.netloc}"
    document = {
        **meta,
        "issuer": base,
        # 2025-03-26 fallback: without metadata the endpoints are /authorize and /token at the root.
        "authorization_endpoint": meta.get("authorization_endpoint", f"{as_root}/authorize"),
        "token_endpoint": meta.get("token_endpoint", f"{as_root}/token"),
        "jwks_uri": f"{base}/jwks",
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = {"/.well-known/oauth-authorization-server": document, "/jwks": {"keys": []}}.get(self.path)
            data = json.dumps(body).encode() if body is not None else b"{}"
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, base


async def session(env: dict, out: Path, result: dict, deadline: float, args: list[str]) -> None:
    params = StdioServerParameters(command=os.environ["AUTHFUL_MCP_PROXY_BIN"], args=args,
                                   env=env, cwd=str(out))
    with open(out / "proxy.stderr.log", "a") as errlog, anyio.fail_after(deadline):
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                result["steps"].append(f"initialize: {init.server_info.name}")
                tools = (await s.list_tools()).tools
                result["steps"].append(f"tools/list: {[t.name for t in tools]}")
                if tools:
                    called = await s.call_tool(tools[0].name, {})
                    text = " ".join(getattr(c, "text", "") for c in called.content)
                    result["steps"].append(f"tools/call {tools[0].name}: is_error={called.is_error} {text[:200]!r}")


def main() -> int:
    server_url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "unknown")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    use_shim = os.environ.get("INTEROP_CONFORMANCE_SHIM") == "1"
    out = Path(os.environ["INTEROP_CONFORMANCE_OUT"]) / scenario.replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    hits = {"prm": 0, "as_metadata": 0}
    result: dict = {"scenario": scenario, "server_url": server_url, "shim": use_shim, "setup": [],
                    "setup_hits": hits, "steps": [], "ok": False}
    shim = None
    try:
        home = out / "home"
        home.mkdir(exist_ok=True)
        env = {
            "HOME": str(home),
            "PATH": os.environ["PATH"],
            "MCP_PROXY_DEBUG": "1",
            "BROWSER": str(HERE / "browser.py"),
            "INTEROP_BROWSER_LOG": str(out / "browser.log"),
            "INTEROP_BROWSER_DEADLINE": "20",
        }
        if "client_id" not in context:
            # A public server with its own OAuth, as a user adds one: `auth: oauth` and nothing
            # else; the proxy finds the authorization server, and registers itself there (or
            # names itself by the client ID metadata document every backend of this file shares).
            config = out / "gateway.yaml"
            config.write_text(
                "gateway:\n"
                f"  client_metadata_url: {CIMD_URL}\n"
                # Two scenarios run at a time: each its own port for the sign-in's callback.
                f"  redirect_url: http://localhost:{free_port()}/auth/callback\n"
                "backends:\n"
                "  server:\n"
                f"    url: {server_url}\n"
                "    prefix: \"\"\n"
                "    auth: oauth\n")
            args = ["--config", str(config)]
            result.update(issuer=None, as_issuer=None, client_id="registered or CIMD", confidential=False,
                          flow="browser", client_auth="none", resource_forced=False,
                          config="gateway file: one backend with `auth: oauth`, gateway.client_metadata_url")
            deadline = float(os.environ.get("INTEROP_CONFORMANCE_DEADLINE", "20"))
            anyio.run(session, env, out, result, deadline, args)
            result["ok"] = True
            return 0
        prm, meta = setup(server_url, result["setup"], hits)
        methods = meta.get("token_endpoint_auth_methods_supported") or []
        grants = meta.get("grant_types_supported") or []
        client_id = context["client_id"]
        secret = context.get("client_secret")
        key_pem = context.get("private_key_pem")
        # A service account where the AS grants client_credentials and no authorization code.
        flow = "client_credentials" if "client_credentials" in grants and "authorization_code" not in grants else None
        env.update(MCP_BACKEND_URL=server_url, OIDC_CLIENT_ID=client_id,
                   OIDC_REDIRECT_URL=f"http://localhost:{free_port()}/auth/callback")
        if use_shim:
            # Workaround (module docstring): an issuer the proxy can discover, and the resource
            # indicator it would have taken from the PRM.
            shim, env["OIDC_ISSUER_URL"] = start_shim(meta)
            if prm is not None:
                env["AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__RESOURCE"] = "true"
        elif prm is None:
            # 2025-03-26: the authorization server's base URL is the MCP server's origin.
            env["OIDC_ISSUER_URL"] = urllib.parse.urlsplit(server_url)._replace(path="", query="", fragment="").geturl()
        elif secret is not None or key_pem is not None:
            # A confidential client names its issuer: the administrator who registered it knows
            # the AS, and the proxy sends a secret or key nowhere a backend alone names.
            env["OIDC_ISSUER_URL"] = meta["issuer"]
        # else: no issuer; the proxy reads the PRM itself (RFC 9728).
        if flow and flow != "identity_assertion":
            env["OIDC_FLOW"] = flow
        if secret is not None:
            env["OIDC_CLIENT_SECRET"] = secret
        if "idp_id_token" in context:
            # Cross-app access (SEP-990): the person's ID token from the company IdP (here the
            # scenario's, as an SSO agent would keep it in a file) is exchanged there for an
            # identity assertion grant, which the server's AS takes for its token.
            id_token_file = out / "id_token"
            id_token_file.write_text(context["idp_id_token"])
            id_token_file.chmod(0o600)
            prefix = "AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__IDENTITY_ASSERTION__"
            env[prefix + "ISSUER_URL"] = context["idp_issuer"]
            env[prefix + "CLIENT_ID"] = context["idp_client_id"]
            env[prefix + "ID_TOKEN_FILE"] = str(id_token_file)
            flow = "identity_assertion"
        if key_pem is not None:
            key_file = out / "client-key.pem"
            key_file.write_text(key_pem)
            key_file.chmod(0o600)
            env["AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__CLIENT_ASSERTION__KEY_FILE"] = str(key_file)
            env["AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__CLIENT_ASSERTION__ALGORITHM"] = context.get("signing_algorithm", "RS256")
            # The suite's authorization server takes only its issuer identifier as `aud`
            # (RFC 7523bis); the proxy's default is the token endpoint (RFC 7523, OIDC Core).
            env["AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__CLIENT_ASSERTION__AUDIENCE"] = "issuer"
        result.update(issuer=env.get("OIDC_ISSUER_URL"), as_issuer=meta["issuer"], client_id=client_id,
                      confidential=secret is not None or key_pem is not None, flow=flow or "browser",
                      client_auth="private_key_jwt" if key_pem is not None else "secret" if secret is not None else "none",
                      resource_forced=env.get("AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__RESOURCE") == "true")
        deadline = float(os.environ.get("INTEROP_CONFORMANCE_DEADLINE", "20"))
        anyio.run(session, env, out, result, deadline, ["--login-timeout", "15"])
        result["ok"] = True
    except BaseException as e:  # noqa: BLE001 (also task groups' exception groups)
        result["error"] = describe(e)
        (out / "traceback.txt").write_text(traceback.format_exc())
    finally:
        if shim is not None:
            shim.shutdown()
        (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    if isinstance(e, TimeoutError):
        return "TimeoutError: no answer within the deadline"
    return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())
