"""Inside the loopback-only network namespace: runs one case (see scenarios.py).

Usage: unshare --net -- python -m real_clients.inner CLIENT CASE DIR
"""

import sys
from pathlib import Path

from real_clients.scenarios import inner

if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: python -m real_clients.inner CLIENT CASE DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(inner(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
