"""An earlier day's session: starts the gateway (argv), initializes, lists the tools (following
cursors), prints their names, waits a moment and closes stdin. Listing is what makes the gateway
remember its backends' lists for the next start.

Usage: python3 list_once.py COMMAND [ARGS...]
"""

import json
import subprocess
import sys
import time


def main() -> int:
    proxy = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(message: dict) -> None:
        proxy.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        proxy.stdin.flush()

    def answer(id: int) -> dict:
        for line in proxy.stdout:
            message = json.loads(line)
            if message.get("id") == id and "method" not in message:
                return message
        raise SystemExit(f"the gateway closed stdout before answering request {id}")

    send({"id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "interop-list-once", "version": "1"}}})
    answer(1)
    send({"method": "notifications/initialized"})
    names, cursor, id = [], None, 1
    while True:
        id += 1
        send({"id": id, "method": "tools/list", "params": {"cursor": cursor} if cursor else {}})
        result = answer(id)["result"]
        names += [t["name"] for t in result["tools"]]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    print("\n".join(names))
    time.sleep(1)  # the catalog is written as the fresh lists arrive; leave it time
    proxy.stdin.close()
    return proxy.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
