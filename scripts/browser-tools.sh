#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the review page tests (tests/review/test_review_browser.py),
# from Debian's own packages: `chromium` and `chromium-driver` (always the same version, so the
# driver speaks the browser's protocol; no browser is downloaded from anywhere else).
#
# Idempotent: when both binaries are there it only prints their versions.
#
#   scripts/browser-tools.sh           install whatever is missing (needs root, or sudo)
#   scripts/browser-tools.sh env       install, then print CHROMIUM= and CHROMEDRIVER= lines
set -euo pipefail

CHROMIUM="${FACESTREAM_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${FACESTREAM_CHROMEDRIVER:-/usr/bin/chromedriver}"

log() { echo "browser-tools: $*" >&2; }
die() { echo "browser-tools: error: $*" >&2; exit 1; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@" || die "needs root to run: $*"
  else die "needs root (or sudo) to run: $*"
  fi
}

install() {
  if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    return
  fi
  command -v apt-get >/dev/null || die "apt-get not found: install chromium and chromium-driver yourself"
  log "installing chromium and chromium-driver with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
  [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] || die "chromium or chromedriver still missing after apt-get"
}

install
browser="$("$CHROMIUM" --version 2>/dev/null | head -1 || true)"
driver="$("$CHROMEDRIVER" --version 2>/dev/null | head -1 || true)"
log "${browser:-chromium ?}; ${driver:-chromedriver ?}"
if [[ "${1:-install}" == "env" ]]; then
  echo "CHROMIUM=$CHROMIUM"
  echo "CHROMEDRIVER=$CHROMEDRIVER"
fi
