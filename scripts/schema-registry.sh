#!/usr/bin/env bash
# A Confluent-compatible Schema Registry for the schema-registration test
# (tests/examples/test_register_schemas.py): Conduit's schema registry
# (github.com/conduitio/conduit-schema-registry, from the Go module proxy) over an in-memory store,
# built from scripts/schema-registry/ (main.go, and go.mod/go.sum pinning every module by checksum).
# Confluent's own registry is not on any registry this project's machines reach; this one speaks
# the same REST calls for registering and reading schemas (not compatibility checks or IMPORT mode).
#
# Idempotent and cached under ${FACESTREAM_CACHE:-$HOME/.cache/facestream}/schema-registry/<digest of
# the sources>: a second run only checks that the binary is there.
#
#   scripts/schema-registry.sh [install]   build it if missing
#   scripts/schema-registry.sh env         build if missing, then print SCHEMA_REGISTRY=<binary>
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/scripts/schema-registry"
CACHE="${FACESTREAM_CACHE:-$HOME/.cache/facestream}"

log() { echo "schema-registry: $*" >&2; }
die() { echo "schema-registry: error: $*" >&2; exit 1; }

digest="$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-16)"
BIN="$CACHE/schema-registry/$digest/schema-registry"

install() {
  if [[ -x "$BIN" ]]; then
    return
  fi
  export PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "go is needed to build the schema registry (Go module proxy)"
  log "building the schema registry from the Go module proxy (under a minute, once)"
  mkdir -p "$(dirname "$BIN")"
  # -mod=readonly: go.sum must already hold every module's checksum; nothing is resolved anew
  (cd "$SRC" && GOFLAGS="-mod=readonly -trimpath" go build -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
}

case "${1:-install}" in
  install) install ;;
  env) install; echo "SCHEMA_REGISTRY=$BIN" ;;
  *) die "unknown command '$1' (install or env)" ;;
esac
