"""A minimal npm registry on 127.0.0.1, for `npx -y <package>` exactly as users run it: it serves
the packument (`GET /<name>`) of every tarball in a folder, built from the tarball's own
package.json with its sha512 integrity, and the tarballs themselves (`GET /-/<file>`). Every
request is logged as one line (`GET <path> <status>`), so a scenario can tell which tarballs npm
fetched.

    python npm_registry.py --port PORT --dir FOLDER
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import json
import tarfile
import urllib.parse
from pathlib import Path


def packuments(folder: Path, base: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for tarball in sorted(folder.glob("*.tgz")):
        with tarfile.open(tarball) as tar:
            manifest = json.load(tar.extractfile("package/package.json"))
        data = tarball.read_bytes()
        manifest["dist"] = {
            "tarball": f"{base}/-/{tarball.name}",
            "shasum": hashlib.sha1(data).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
        }
        doc = out.setdefault(manifest["name"], {"name": manifest["name"], "versions": {}, "dist-tags": {}})
        doc["versions"][manifest["version"]] = manifest
        doc["dist-tags"]["latest"] = manifest["version"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    docs = packuments(args.dir, base)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.unquote(self.path.split("?", 1)[0])
            body: bytes | None = None
            kind = "application/json"
            if path.startswith("/-/") and (args.dir / path[3:]).is_file() and "/" not in path[3:]:
                body, kind = (args.dir / path[3:]).read_bytes(), "application/octet-stream"
            elif path[1:] in docs:
                body = json.dumps(docs[path[1:]]).encode()
            status = 200 if body is not None else 404
            body = body if body is not None else b'{"error":"not found"}'
            print(f"GET {path} {status}", flush=True)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"npm registry on {base}: {', '.join(sorted(docs))}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
