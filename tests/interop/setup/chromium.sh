# Debian's chromium, for the chromium_login scenario (chromium.py), which drives it with the npm
# package playwright-core (never Playwright's own browser download).
# Sourced by ./run: cwd is tests/interop; log, die and RUN_DIR are available; `set -euo pipefail`
# is on, so every command that may fail is tested.
#
#   INTEROP_SKIP_CHROMIUM=1  do not install chromium; the scenario SKIPs
#   INTEROP_CHROMIUM         a Chromium to use instead of /usr/bin/chromium (not installed by us)
#
# Exports for the scenario: INTEROP_CHROMIUM (executable, empty if none) and
# INTEROP_CHROMIUM_SKIP_REASON or INTEROP_CHROMIUM_FAIL_REASON. A Chromium that cannot be
# installed is a FAIL, not a SKIP: the login would otherwise silently go untested in CI.

interop_chromium_setup() {
  local bin="${INTEROP_CHROMIUM:-/usr/bin/chromium}" log="$RUN_DIR/chromium-install.log"
  local started=$SECONDS updated=""
  local -a sudo=()
  INTEROP_CHROMIUM="" INTEROP_CHROMIUM_SKIP_REASON="" INTEROP_CHROMIUM_FAIL_REASON=""
  if [[ "${INTEROP_SKIP_CHROMIUM:-}" == 1 ]]; then
    INTEROP_CHROMIUM_SKIP_REASON="INTEROP_SKIP_CHROMIUM=1"
    return 0
  fi
  if [[ -x "$bin" ]]; then
    INTEROP_CHROMIUM="$bin"
    return 0
  fi
  if [[ "$bin" != /usr/bin/chromium ]]; then
    INTEROP_CHROMIUM_FAIL_REASON="INTEROP_CHROMIUM=$bin is not an executable"
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    INTEROP_CHROMIUM_FAIL_REASON="$bin is missing and there is no apt-get to install Debian's chromium"
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      INTEROP_CHROMIUM_FAIL_REASON="$bin is missing; installing it needs root or passwordless sudo"
      return 0
    fi
  fi

  log "installing Debian's chromium with apt-get (log: $log)"
  # DPkg::Lock::Timeout: wait for an install already running (parallel CI jobs, unattended upgrades).
  local -a apt=(timeout 900 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  local -a install=(install -y --no-install-recommends chromium)
  # Fresh containers have no package lists: update first when apt does not know chromium.
  if ! apt-cache show chromium >/dev/null 2>&1; then
    updated=1
    "${apt[@]}" update >>"$log" 2>&1 || true
  fi
  # Stale lists name superseded .debs: then update (once) and try again.
  if ! "${apt[@]}" "${install[@]}" >>"$log" 2>&1 &&
    { [[ -n "$updated" ]] || ! "${apt[@]}" update >>"$log" 2>&1 || ! "${apt[@]}" "${install[@]}" >>"$log" 2>&1; }; then
    INTEROP_CHROMIUM_FAIL_REASON="apt-get install chromium failed (log: $log)"
    return 0
  fi
  if ! "$bin" --version >>"$log" 2>&1; then
    INTEROP_CHROMIUM_FAIL_REASON="$bin was installed but does not run (log: $log)"
    return 0
  fi
  INTEROP_CHROMIUM="$bin"
  log "installed $("$bin" --version 2>/dev/null) in $((SECONDS - started))s"
}

interop_chromium_setup
unset -f interop_chromium_setup
export INTEROP_CHROMIUM INTEROP_CHROMIUM_SKIP_REASON INTEROP_CHROMIUM_FAIL_REASON
