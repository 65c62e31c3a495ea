"""Codex (`@openai/codex`, `codex exec`) and the OpenAI Responses API it speaks.

Codex leaves an MCP server out of the turn unless `initialize` and `tools/list` both finish
within `mcp_optional_startup_grace_ms` (1 s); it starts the server with a minimal environment (no
`BROWSER`, no `DISPLAY`: the entry's `env` is all it adds) and refuses, in `exec`, a tool that is
not read-only unless the entry approves its tools. It declares URL-mode elicitation, and `exec`
declines the gateway's sign-in page at once (the gateway then opens `BROWSER`, which only the
entry's `env` can give it). The model sees MCP tools in a namespace `mcp__<server>`.
"""

from __future__ import annotations

import json
from pathlib import Path

from real_clients.model import MARK, PROMPT, Reply, Turn, json_reply, sse
from real_clients.scenarios import Entry, client_env, run_cli

NAMESPACE = "mcp__{server}"  # the tools of server X are offered as a namespace of that name


class Responses:
    """POST /v1/responses, answered as server-sent events."""

    def read(self, path: str, body: dict, server: str) -> Turn:
        namespace = NAMESPACE.format(server=server)
        offered = [
            tool.get("name", "")
            for group in body.get("tools") or [] if group.get("type") == "namespace" and group.get("name") == namespace
            for tool in group.get("tools") or []
        ]
        inputs = body.get("input") or []
        ours = {item.get("call_id") for item in inputs if item.get("type") == "function_call" and item.get("namespace") == namespace}
        results = []
        for item in inputs:
            if item.get("type") == "function_call_output" and item.get("call_id") in ours:
                output = item.get("output")
                results.append(output if isinstance(output, str) else json.dumps(output))
        return Turn(offered, results, MARK in json.dumps(body.get("input")), bool(body.get("stream")))

    def call(self, turn: Turn, body: dict, server: str, tool: str, arguments: dict) -> Reply:
        item = {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "namespace": NAMESPACE.format(server=server),
            "name": tool,
            "arguments": json.dumps(arguments),
        }
        return self._events(item)

    def text(self, turn: Turn, body: dict, text: str) -> Reply:
        item = {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return self._events(item)

    def get(self, path: str) -> Reply | None:
        if path.rstrip("/").endswith("/models"):
            return json_reply({"object": "list", "data": [{"id": "m", "object": "model"}]})
        return None

    def _events(self, item: dict) -> Reply:
        response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
        done = {**response, "status": "completed", "output": [item],
                "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
        return Reply(200, "text/event-stream", sse([
            ("response.created", {"type": "response.created", "response": response}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": done}),
        ]))


def toml(value: object) -> str:
    """A TOML value from a str, list of str or dict of str (JSON strings are valid TOML ones)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


class Codex:
    name = "codex"
    client_info = "codex-mcp-client"
    wire = Responses()

    def run(self, home: Path, workdir: Path, model_url: str, entry: Entry, out: Path, timeout: float) -> int:
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text("\n".join([
            'model = "m"',
            'model_provider = "fake"',
            "check_for_update_on_startup = false",
            "[model_providers.fake]",
            'name = "fake"',
            f'base_url = "{model_url}/v1"',
            'wire_api = "responses"',
            "request_max_retries = 0",
            "stream_max_retries = 0",
            "[analytics]",
            "enabled = false",
            "[features]",
            "plugins = false",
            "[otel]",
            'exporter = "none"',
            f"[mcp_servers.{entry.name}]",
            f"command = {toml(entry.command)}",
            f"args = {toml(entry.args)}",
            f"env = {toml(entry.env)}",
            'default_tools_approval_mode = "approve"',
        ]) + "\n")
        argv = ["codex", "exec", "--json", "--skip-git-repo-check", "--ephemeral", PROMPT]
        return run_cli(argv, client_env(home, {"CODEX_HOME": str(codex_home)}), workdir, out, timeout)


DRIVER = Codex()
