"""A fake model API on 127.0.0.1 that plays the model for a real MCP client.

The client under test (Claude Code, Codex, Gemini CLI, opencode) sends its model requests here
instead of to its vendor. Each request is recorded (when it came, which of the gateway's tools it
offered the model, which tool results it carried back) and answered by a short script:

1. a request that carries a result of the gateway's tools gets a final text quoting it;
2. otherwise, if the target tool (a backend tool, by its name in the gateway) is offered, the model
   calls it; if only the gateway's fallback `gateway_call_tool` is, the model calls that with the
   target's name;
3. otherwise a final text: nothing to call.

What differs between vendors (the request's shape, how the client names MCP tools, streaming
events) lives in one `Wire` per API, next to the driver of the client that speaks it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

FALLBACK_CALL = "gateway_call_tool"
PROMPT = "Call the whoami tool once and report who you are. (interop-real-clients)"
MARK = "interop-real-clients"  # in the prompt: tells the main conversation from side requests


@dataclass
class Turn:
    """One model request as the script sees it; names are the gateway's (MCP) tool names."""

    offered: list[str]  # the gateway's tools the model was shown (by name, schema or not)
    results: list[str]  # texts of the gateway's tool results in the conversation, oldest first
    main: bool  # the user's conversation (the prompt is in it), not a title or quota request
    stream: bool


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes


class Wire(Protocol):
    """One vendor API. `server` is the MCP server's name in the client's configuration."""

    def read(self, path: str, body: dict, server: str) -> Turn: ...

    def call(self, turn: Turn, body: dict, server: str, tool: str, arguments: dict) -> Reply:
        """A reply in which the model calls `tool` (an MCP name) with `arguments`; a wire may
        first have to load the tool (Claude Code's deferred tools)."""
        ...

    def text(self, turn: Turn, body: dict, text: str) -> Reply: ...

    def get(self, path: str) -> Reply | None:
        """GET requests (model lists); None: 404."""
        ...


@dataclass
class Recorded:
    at: float  # seconds since the fake started
    path: str
    main: bool
    offered: list[str]
    results: list[str]
    answer: str  # "call NAME", "text"


@dataclass
class FakeModel:
    wire: Wire
    server: str  # the MCP server's name in the client's configuration
    target: str  # the backend tool the model calls, by its gateway name
    log: Path  # one JSON line per request
    records: list[Recorded] = field(default_factory=list)

    def start(self) -> int:
        """Serves on a free port of 127.0.0.1 from a daemon thread; returns the port."""
        self.started = time.monotonic()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # the client's output stays readable
                pass

            def do_GET(self) -> None:  # noqa: N802
                reply = fake.wire.get(self.path) or Reply(404, "application/json", b"{}")
                self._send(reply)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                self._send(fake.answer(self.path, body))

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.httpd.server_address[1]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str, body: dict) -> Reply:
        turn = self.wire.read(path, body, self.server)
        if turn.results:
            reply, answer = self.wire.text(turn, body, f"done: {turn.results[-1][:300]}"), "text"
        elif not turn.main:
            reply, answer = self.wire.text(turn, body, "ok"), "text"
        elif self.target in turn.offered:
            reply, answer = self.wire.call(turn, body, self.server, self.target, {}), f"call {self.target}"
        elif FALLBACK_CALL in turn.offered:
            arguments = {"name": self.target, "arguments": {}}
            reply, answer = self.wire.call(turn, body, self.server, FALLBACK_CALL, arguments), f"call {FALLBACK_CALL}"
        else:
            reply, answer = self.wire.text(turn, body, "no tool to call"), "text"
        record = Recorded(round(time.monotonic() - self.started, 3), path, turn.main, sorted(turn.offered), turn.results, answer)
        self.records.append(record)
        with open(self.log, "a") as f:
            f.write(json.dumps(record.__dict__) + "\n")
        return reply

    def first_main(self) -> Recorded | None:
        """The first request of the user's conversation: what the model was first offered."""
        return next((r for r in self.records if r.main), None)


def sse(events: list[tuple[str | None, Any]]) -> bytes:
    """Server-sent events: (event name or None, JSON data or a literal string)."""
    out = []
    for name, data in events:
        if name:
            out.append(f"event: {name}")
        out.append(f"data: {data if isinstance(data, str) else json.dumps(data)}")
        out.append("")
    return ("\n".join(out) + "\n").encode()


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, "application/json", json.dumps(value).encode())


def contains_mark(value: Any) -> bool:
    return MARK in json.dumps(value)
