"""Token-validating MCP backend for the interop suite: fastmcp over Streamable HTTP.

Accepts only RS256 JWT access tokens from the suite's oidc-provider (issuer, audience
"mcp-backend", signature through the provider's JWKS). Serves http://127.0.0.1:PORT/mcp.

With --resource-metadata it is an OAuth protected resource (RFC 9728) instead: fastmcp's
RemoteAuthProvider serves /.well-known/oauth-protected-resource/mcp naming the issuer as its
authorization server, answers 401 with `resource_metadata="..."`, and accepts only tokens whose
`aud` is its own resource URL (http://127.0.0.1:PORT/mcp).

With --scope SCOPE (and --resource-metadata) every token must carry that scope, which the metadata
publishes as its scopes_supported: what a client that asks for the server's scopes asks for.

With --delay SECONDS every MCP request waits that long before it is handled: a slow server.

With --sse it serves the HTTP+SSE transport of MCP 2024-11-05 instead, at http://127.0.0.1:PORT/sse
(the event stream; it names /messages/ for the POSTs), as servers from before Streamable HTTP do.

Usage: backend.py --port PORT --issuer ISSUER [--audience mcp-backend | --resource-metadata [--scope SCOPE]]
                  [--delay SECONDS] [--sse]
Prints "BACKEND READY <url>" on stdout once it accepts connections.
"""

import argparse
import asyncio
import socket

from fastmcp import Context, FastMCP
from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_access_token
from fastmcp.server.middleware import Middleware


class Slow(Middleware):
    """Holds every request (initialize and lists included) for `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def on_request(self, context, call_next):
        await asyncio.sleep(self.delay)
        return await call_next(context)


def build(
    issuer: str, audience: str, page_size: int | None, resource_base: str | None = None, delay: float = 0,
    scope: str | None = None,
) -> FastMCP:
    verifier = JWTVerifier(
        jwks_uri=f"{issuer}/jwks",
        issuer=issuer,
        audience=f"{resource_base}/mcp" if resource_base else audience,
        algorithm="RS256",
        required_scopes=[scope] if scope else None,
    )
    auth = verifier
    if resource_base:
        # fastmcp does not bind the verifier's audience to the resource it announces: both are
        # set to http://127.0.0.1:PORT/mcp here.
        auth = RemoteAuthProvider(
            token_verifier=verifier,
            authorization_servers=[issuer],
            base_url=resource_base,
            resource_name="interop backend",
        )
    mcp = FastMCP("interop-backend", auth=auth, list_page_size=page_size)
    if delay:
        mcp.add_middleware(Slow(delay))

    @mcp.tool
    def whoami() -> dict:
        """The caller's identity, from the validated access token."""
        token = get_access_token()
        if token is None:
            return {"authenticated": False}
        claims = dict(token.claims or {})
        return {
            "authenticated": True,
            "sub": claims.get("sub"),
            "client_id": token.client_id,
            "scopes": list(token.scopes or []),
            "claims": claims,
        }

    @mcp.tool
    def echo(text: str) -> str:
        """Returns the text unchanged."""
        return text

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @mcp.tool
    async def count_with_progress(steps: int, ctx: Context) -> str:
        """Counts to `steps`, reporting progress after each step."""
        for i in range(1, steps + 1):
            await asyncio.sleep(0.05)
            await ctx.report_progress(progress=i, total=steps, message=f"step {i}")
        return f"counted to {steps}"

    @mcp.resource("interop://info", mime_type="text/plain")
    def info() -> str:
        """A fixed text resource."""
        return "interop backend resource"

    @mcp.prompt
    def greet(name: str) -> str:
        """A greeting prompt."""
        return f"Please greet {name} warmly."

    return mcp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", default="mcp-backend")
    p.add_argument("--page-size", type=int, default=0, help="list page size (0: no pagination)")
    p.add_argument("--resource-metadata", action="store_true", help="RFC 9728 metadata; aud = own URL")
    p.add_argument("--delay", type=float, default=0, help="seconds every request waits (a slow server)")
    p.add_argument("--scope", help="a scope every token must carry, published in the metadata")
    p.add_argument("--sse", action="store_true", help="HTTP+SSE (2024-11-05) at /sse instead of Streamable HTTP")
    args = p.parse_args()
    base = f"http://127.0.0.1:{args.port}" if args.resource_metadata else None
    mcp = build(args.issuer, args.audience, args.page_size or None, base, args.delay, args.scope)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(64)
    path = "/sse" if args.sse else "/mcp"
    print(f"BACKEND READY http://127.0.0.1:{args.port}{path}", flush=True)
    mcp.run(
        transport="sse" if args.sse else "http",
        host="127.0.0.1",
        port=args.port,
        path=path,
        show_banner=False,
        log_level="warning",
        sockets=[sock],
    )


if __name__ == "__main__":
    main()
