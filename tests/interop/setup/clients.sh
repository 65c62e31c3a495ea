# The desktop MCP clients users run, for the real-client scenarios (real_clients/): npm
# @anthropic-ai/claude-code, @openai/codex, @google/gemini-cli and opencode-ai, each shipping its
# binary inside the package (nothing is downloaded when they run). They live in clients/ with a
# lock file of their own.
# Sourced by ./run: cwd is tests/interop; log, die, npm_install_stamped and RUN_DIR are available; `set -euo pipefail`
# is on, so every command that may fail is tested.

interop_clients_setup() {
  local dir="$PWD/clients"
  # `npm install --no-save`, not `npm ci`: the registry has opencode-ai's binary packages for
  # some platforms only, so the lock cannot name the others, and `npm ci` refuses a lock that
  # lacks optional dependencies; this installs exactly what the lock says and leaves it as is.
  npm_install_stamped "$dir" "$RUN_DIR/npm-install-clients.log" install --no-save
  # Each ships a prebuilt binary for one platform; the scenarios need all four to start.
  local bin
  for bin in claude codex gemini opencode; do
    [[ -x "$dir/node_modules/.bin/$bin" ]] || die "$dir/node_modules/.bin/$bin is missing after npm ci"
  done
}

interop_clients_setup
