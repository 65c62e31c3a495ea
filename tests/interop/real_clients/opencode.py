"""opencode (`opencode-ai`, `opencode run`) and the OpenAI Chat Completions API it speaks here,
through its bundled `@ai-sdk/openai-compatible` provider.

opencode starts the MCP servers when the first turn needs its tools and waits for `initialize`
and `tools/list` (30 s each unless the entry sets `timeout`), so the first model request has
whatever the first list held; it lists again on `list_changed`. The model sees MCP tools as
`<server>_<tool>`, next to opencode's own (bash, read, ...), which every conversation request
offers. Before the conversation it asks the small model for a session title, quoting the prompt
but offering no tools: that tells the two apart. It sends `notifications/cancelled` for a call
already answered and ends by closing the server's stdin.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from real_clients.model import PROMPT, Reply, Turn, contains_mark, json_reply, sse
from real_clients.scenarios import Entry, client_env, run_cli

PROVIDER, MODEL = "fake", "m"


def text_of(content: object) -> str:
    """A message's content: a string or a list of text parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else json.dumps(content)


class ChatCompletions:
    """POST /v1/chat/completions, streamed as chunks when asked, else one JSON completion."""

    def read(self, path: str, body: dict, server: str) -> Turn:
        prefix = f"{server}_"
        tools = [(tool.get("function") or {}).get("name", "") for tool in body.get("tools") or []]
        offered = [name[len(prefix):] for name in tools if name.startswith(prefix)]
        messages = body.get("messages") or []
        ours = {
            call.get("id")
            for m in messages if m.get("role") == "assistant"
            for call in m.get("tool_calls") or []
            if (call.get("function") or {}).get("name", "").startswith(prefix)
        }
        results = [text_of(m.get("content")) for m in messages if m.get("role") == "tool" and m.get("tool_call_id") in ours]
        main = bool(tools) and contains_mark(messages)  # the title request quotes the prompt, without tools
        return Turn(offered, results, main, bool(body.get("stream")))

    def call(self, turn: Turn, body: dict, server: str, tool: str, arguments: dict) -> Reply:
        call = {
            "id": f"call_{len(body.get('messages') or [])}",
            "type": "function",
            "function": {"name": f"{server}_{tool}", "arguments": json.dumps(arguments)},
        }
        return self._reply(turn, {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")

    def text(self, turn: Turn, body: dict, text: str) -> Reply:
        return self._reply(turn, {"role": "assistant", "content": text}, "stop")

    def get(self, path: str) -> Reply | None:
        if path.rstrip("/").endswith("/models"):
            return json_reply({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": PROVIDER}]})
        return None

    def _reply(self, turn: Turn, message: dict, finish: str) -> Reply:
        head = {"id": "chatcmpl-1", "created": int(time.time()), "model": MODEL}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if not turn.stream:
            return json_reply({**head, "object": "chat.completion", "usage": usage,
                               "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        delta = dict(message)
        if "tool_calls" in delta:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
        chunk = {**head, "object": "chat.completion.chunk"}
        return Reply(200, "text/event-stream", sse([
            (None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}),
            (None, "[DONE]"),
        ]))


class Opencode:
    name = "opencode"
    client_info = "opencode"
    wire = ChatCompletions()

    def run(self, home: Path, workdir: Path, model_url: str, entry: Entry, out: Path, timeout: float) -> int:
        config = {
            "autoupdate": False,
            "share": "disabled",
            "model": f"{PROVIDER}/{MODEL}",
            "small_model": f"{PROVIDER}/{MODEL}",  # the title request
            "provider": {PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",  # bundled: nothing to install
                "name": PROVIDER,
                "options": {"baseURL": f"{model_url}/v1", "apiKey": "dummy"},
                "models": {MODEL: {"name": MODEL, "tool_call": True}},
            }},
            "mcp": {entry.name: {
                "type": "local",
                "command": [entry.command, *entry.args],
                "environment": entry.env,
                "enabled": True,
            }},
            "permission": {"*": "allow"},
        }
        path = home / ".config" / "opencode" / "opencode.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")
        env = client_env(home, {
            # its configuration, database, logs and caches, all under this HOME
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        })
        return run_cli(["opencode", "run", "--format", "json", PROMPT], env, workdir, out, timeout)


DRIVER = Opencode()
