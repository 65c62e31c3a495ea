"""A tap between a real MCP client and the proxy: starts the proxy, copies each stdin and stdout
line through unchanged, and logs when it passed (seconds since the tap started, which is the
client's spawn give or take the interpreter's start) with its method, id and list sizes — never
its content, which may hold what a backend returned. The proxy's stderr goes to the client as
before and is also appended to STDERR_LOG.

Usage: python3 -I -S tap.py LOG STDERR_LOG -- COMMAND [ARGS...]
Start the interpreter directly (no version-manager shim), as Codex's 1-s window counts it.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

STARTED = time.monotonic()


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print("usage: tap.py LOG STDERR_LOG -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    log_path, stderr_path, command = sys.argv[1], sys.argv[2], sys.argv[4:]
    log = open(log_path, "a", buffering=1)
    lock = threading.Lock()
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def copy_stderr() -> None:
        with open(stderr_path, "ab") as copy:
            for line in child.stderr:
                copy.write(line)
                copy.flush()
                try:
                    sys.stderr.buffer.write(line)
                    sys.stderr.buffer.flush()
                except (BrokenPipeError, ValueError):
                    pass

    def record(direction: str, line: bytes) -> None:
        entry = {"t": round(time.monotonic() - STARTED, 4), "dir": direction}
        try:
            message = json.loads(line)
        except ValueError:
            entry["not_json"] = len(line)
        else:
            if isinstance(message, dict):
                for key in ("id", "method"):
                    if key in message:
                        entry[key] = message[key]
                params, result = message.get("params") or {}, message.get("result")
                meta = params.get("_meta") or {} if isinstance(params, dict) else {}
                if message.get("method") == "initialize":
                    entry["client"] = (params.get("clientInfo") or {}).get("name")
                    entry["protocol"] = params.get("protocolVersion")
                    entry["capabilities"] = sorted(params.get("capabilities") or {})
                elif isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta:
                    # MCP 2026-07-28: the client says who it is on every request.
                    entry["client"] = (meta.get("io.modelcontextprotocol/clientInfo") or {}).get("name")
                    entry["protocol"] = meta.get("io.modelcontextprotocol/protocolVersion")
                    entry["capabilities"] = sorted(meta.get("io.modelcontextprotocol/clientCapabilities") or {})
                if isinstance(result, dict):
                    for kind in ("tools", "prompts", "resources", "resourceTemplates"):
                        if isinstance(result.get(kind), list):
                            entry[kind] = len(result[kind])
                            if kind == "tools":
                                entry["tool_names"] = [t.get("name") for t in result[kind]][:50]
                    if "nextCursor" in result:
                        entry["next_cursor"] = True
                    if isinstance(result.get("action"), str):  # an answer to elicitation/create
                        entry["action"] = result["action"]
                if "error" in message:
                    entry["error"] = (message["error"] or {}).get("code")
        with lock:
            log.write(json.dumps(entry) + "\n")

    def client_to_proxy() -> None:
        for line in sys.stdin.buffer:
            record("in", line)
            try:
                child.stdin.write(line)
                child.stdin.flush()
            except (BrokenPipeError, ValueError):
                break
        try:
            child.stdin.close()
        except BrokenPipeError:
            pass

    def forward(signum, _frame) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    threading.Thread(target=client_to_proxy, daemon=True).start()
    threading.Thread(target=copy_stderr, daemon=True).start()
    out = sys.stdout.buffer
    for line in child.stdout:
        record("out", line)
        try:
            out.write(line)
            out.flush()
        except BrokenPipeError:
            break
    code = child.wait()
    with lock:
        log.write(json.dumps({"t": round(time.monotonic() - STARTED, 4), "exit": code}) + "\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    os._exit(main())
