"""Claude Code (`claude -p`) against the gateway; the fake plays the Anthropic Messages API.

What matters about this client:
- It names the gateway's tools `mcp__gw__<tool>` and defers them: the first request lists their
  names only, in a system message of the conversation ("The following deferred tools are now
  available via ToolSearch ..."), with a `DeferredToolPlaceholder` in `tools`. To call one the model
  first calls `ToolSearch` with `select:mcp__gw__<tool>`; the client answers with a `tool_reference`
  block and from then on sends the tool's schema in `tools` (with `defer_loading: true`). So a
  tool counts as offered when its name appears anywhere in the request, and `call()` may first
  have to answer with that ToolSearch call, whose result is not one of the gateway's.
- `-p` waits for the MCP server (`MCP_TIMEOUT`, 30 s from spawn) before its first model request,
  and goes on without the server if it fails to start. It streams (`"stream": true`) and sends to
  `/v1/messages?beta=true`; no side requests were seen in `-p`.
- It opens with `server/discover`, then `initialize` 2025-11-25 as clientInfo `claude-code`. In
  `-p` it cancels the gateway's sign-in elicitations at once (the gateway then opens the browser).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from real_clients import scenarios
from real_clients.model import MARK, PROMPT, Reply, Turn, json_reply, sse

TOOL_SEARCH = "ToolSearch"


@dataclass
class MessagesTurn(Turn):
    count: bool = False  # POST /v1/messages/count_tokens: answered with a token count
    loaded: set[str] = field(default_factory=set)  # tools the model may call now, by the client's names
    searched: set[str] = field(default_factory=set)  # tools the model already asked ToolSearch for


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def blocks(value: Any) -> list[dict]:
    """A message's (or a tool result's) content as a list of blocks."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    return [b for b in value or [] if isinstance(b, dict)]


class MessagesWire:
    """Anthropic Messages: POST /v1/messages (SSE when `stream`), POST /v1/messages/count_tokens."""

    def read(self, path: str, body: dict, server: str) -> MessagesTurn:
        prefix = f"mcp__{server}__"
        pattern = re.compile(re.escape(prefix) + r"([A-Za-z0-9_-]+)")
        offered = {name for text in strings(body) for name in pattern.findall(text)}
        messages = body.get("messages") or []
        called: dict[str, str] = {}  # tool_use id → tool name
        results: list[str] = []
        loaded = {t["name"] for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t and not t.get("defer_loading")}
        searched: set[str] = set()
        for message in messages:
            for block in blocks(message.get("content")):
                if block.get("type") == "tool_use":
                    called[block.get("id")] = name = block.get("name") or ""
                    if name == TOOL_SEARCH:
                        query = str((block.get("input") or {}).get("query") or "")
                        searched.update(query.removeprefix("select:").split(","))
                elif block.get("type") == "tool_result":
                    content = blocks(block.get("content"))
                    loaded.update(b.get("tool_name") or "" for b in content if b.get("type") == "tool_reference")
                    if called.get(block.get("tool_use_id"), "").startswith(prefix):
                        results.append("\n".join(b.get("text", "") for b in content if b.get("type") == "text"))
        count = path.split("?")[0].endswith("/count_tokens")
        return MessagesTurn(
            offered=sorted(offered),
            results=results,
            main=MARK in "".join(strings(messages)) and not count,
            stream=bool(body.get("stream")),
            count=count,
            loaded=loaded,
            searched=searched,
        )

    def call(self, turn: MessagesTurn, body: dict, server: str, tool: str, arguments: dict) -> Reply:
        name = f"mcp__{server}__{tool}"
        if name not in turn.loaded and name not in turn.searched:
            # Deferred: load its schema first; the client answers with a `tool_reference` and asks again.
            name, arguments = TOOL_SEARCH, {"query": f"select:{name}"}
        block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": arguments}
        return self._message(turn, body, block, "tool_use")

    def text(self, turn: MessagesTurn, body: dict, text: str) -> Reply:
        if turn.count:
            return json_reply({"input_tokens": 100})
        return self._message(turn, body, {"type": "text", "text": text}, "end_turn")

    def get(self, path: str) -> Reply | None:
        return None

    def _message(self, turn: Turn, body: dict, block: dict, stop: str) -> Reply:
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body.get("model") or "claude", "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        }
        if not turn.stream:
            return json_reply({**message, "content": [block], "stop_reason": stop})
        if block["type"] == "text":
            start, delta = {**block, "text": ""}, {"type": "text_delta", "text": block["text"]}
        else:
            start, delta = {**block, "input": {}}, {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        return Reply(200, "text/event-stream", sse([
            ("message_start", {"type": "message_start", "message": {**message, "content": []}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 1}}),
            ("message_stop", {"type": "message_stop"}),
        ]))


class ClaudeCode:
    name = "claude_code"
    client_info = "claude-code"
    wire = MessagesWire()

    def run(self, home: Path, workdir: Path, model_url: str, entry: scenarios.Entry, out: Path, timeout: float) -> int:
        servers = home / "servers.json"
        servers.write_text(json.dumps({"mcpServers": {entry.name: {"command": entry.command, "args": entry.args, "env": entry.env}}}, indent=2) + "\n")
        argv = ["claude", "-p", PROMPT, "--mcp-config", str(servers), "--strict-mcp-config",
                "--allowedTools", f"mcp__{entry.name}", "--output-format", "json"]
        env = scenarios.client_env(home, {
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": "dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
        })
        return scenarios.run_cli(argv, env, workdir, out, timeout)


DRIVER = ClaudeCode()
