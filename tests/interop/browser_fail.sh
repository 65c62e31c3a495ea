#!/bin/sh
# A $BROWSER that must not be used: records that it was invoked, then fails loudly.
: "${INTEROP_BROWSER_MARKER:=/tmp/interop-browser-fail.invoked}"
printf '%s\n' "$*" >> "$INTEROP_BROWSER_MARKER"
echo "browser_fail.sh: the browser was opened although no login was expected: $*" >&2
exit 1
