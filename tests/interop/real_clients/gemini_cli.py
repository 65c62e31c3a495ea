"""Gemini CLI (`@google/gemini-cli`) against the gateway, its Gemini API replaced by the fake.

Run as `gemini -p PROMPT --output-format json --approval-mode yolo --skip-trust` with a fresh
HOME whose `~/.gemini/settings.json` selects API-key auth, turns off folder trust, usage
statistics, telemetry and update checks, and names the gateway as MCP server "gw" (its `env`
block carries the entry's env: the CLI gives a server a filtered copy of its own environment).
`GOOGLE_GEMINI_BASE_URL` points the model API at the fake: `POST
/v1beta/models/<model>:streamGenerateContent?alt=sse` for the conversation.

Quirks that matter here:
- The model is pinned (`--model`): left on its default `auto`, the CLI first asks a flash-lite
  model, non-streaming and with the prompt in it, to score the task's complexity and expects
  JSON back; a plain text answer makes it retry with back-off for a minute.
- MCP tools are offered as `mcp_<server>_<tool>` (characters outside `[A-Za-z0-9_.:-]` become
  `_`, names over 63 characters are shortened), next to the CLI's own tools, in
  `tools[].functionDeclarations[]`. A tool result comes back as a part `{"functionResponse":
  {"name", "response": {"output": TEXT}}}` (`{"error": …}` when the call failed).
- It lists prompts, tools and resources after `initialize`, and tools again on `list_changed`,
  so a later model request may offer more of the gateway's tools than the first.
"""

from __future__ import annotations

import json
from pathlib import Path

from real_clients import scenarios
from real_clients.model import MARK, PROMPT, Reply, Turn, json_reply, sse

MODEL = "gemini-2.5-flash"  # a concrete model: no complexity-routing request first


class GeminiWire:
    """The Gemini API: `generateContent`, and `streamGenerateContent?alt=sse` (one chunk)."""

    def read(self, path: str, body: dict, server: str) -> Turn:
        prefix = f"mcp_{server}_"
        offered = [
            declaration["name"].removeprefix(prefix)
            for tool in body.get("tools") or []
            for declaration in tool.get("functionDeclarations") or []
            if declaration.get("name", "").startswith(prefix)
        ]
        results = [
            result_text(part["functionResponse"].get("response"))
            for content in body.get("contents") or []
            for part in content.get("parts") or []
            if (part.get("functionResponse") or {}).get("name", "").startswith(prefix)
        ]
        main = MARK in json.dumps(body.get("contents"))
        return Turn(offered, results, main, ":streamGenerateContent" in path)

    def call(self, turn: Turn, body: dict, server: str, tool: str, arguments: dict) -> Reply:
        return self.reply(turn, {"functionCall": {"name": f"mcp_{server}_{tool}", "args": arguments}})

    def text(self, turn: Turn, body: dict, text: str) -> Reply:
        return self.reply(turn, {"text": text})

    def get(self, path: str) -> Reply | None:
        return None  # with a pinned model and API-key auth it makes no GET requests

    @staticmethod
    def reply(turn: Turn, part: dict) -> Reply:
        response = {
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": MODEL,
        }
        if turn.stream:
            return Reply(200, "text/event-stream", sse([(None, response)]))
        return json_reply(response)


def result_text(response: object) -> str:
    """The text of a function response: its `output` (or `error`), else the whole object."""
    if isinstance(response, dict):
        for key in ("output", "error"):
            if isinstance(response.get(key), str):
                return response[key]
    return json.dumps(response)


class GeminiCli:
    name = "gemini_cli"
    client_info = "gemini-cli-mcp-client"
    wire = GeminiWire()

    def run(self, home: Path, workdir: Path, model_url: str, entry: scenarios.Entry, out: Path, timeout: float) -> int:
        settings = {
            "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "mcpServers": {entry.name: {"command": entry.command, "args": entry.args, "env": entry.env}},
        }
        config = home / ".gemini" / "settings.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(settings, indent=2) + "\n")
        env = scenarios.client_env(home, {
            "GEMINI_API_KEY": "dummy",
            "GOOGLE_GEMINI_BASE_URL": model_url,
            "GEMINI_CLI_NO_RELAUNCH": "true",
        })
        argv = ["gemini", "-p", PROMPT, "--output-format", "json", "--approval-mode", "yolo", "--skip-trust", "--model", MODEL]
        return scenarios.run_cli(argv, env, workdir, out, timeout)


DRIVER = GeminiCli()
