#!/usr/bin/env bash
# Single sign-on parts for the review app's SSO tests (tests/review/test_review_sso*.py), fetched the
# only ways this project's machines allow:
#   mock-oauth2-server  a real OpenID Connect provider (no.nav.security:mock-oauth2-server on Maven
#                       Central, with its runtime dependencies, by `mvn dependency:copy-dependencies`);
#                       run: java -cp "$MOCK_OAUTH2_CP" no.nav.security.mock.oauth2.StandaloneMockOAuth2ServerKt
#                       (config in env JSON_CONFIG, port in SERVER_PORT)
#   oauth2-proxy        the sign-in proxy the Helm chart's Ingress is meant for, built from the Go
#                       module proxy (github.com/oauth2-proxy/oauth2-proxy/v7)
#
# Idempotent and cached under ${FACESTREAM_CACHE:-$HOME/.cache/facestream}/sso-tools: a second run only
# checks what is there. The first run builds oauth2-proxy (a minute or two on 2 cores).
#
#   scripts/sso-tools.sh [install]   install whatever is missing
#   scripts/sso-tools.sh env         install, then print OAUTH2_PROXY= and MOCK_OAUTH2_CP= lines
set -euo pipefail

MOCK_OAUTH2_SERVER_VERSION=6.0.2
OAUTH2_PROXY_VERSION=v7.15.6

CACHE="${FACESTREAM_CACHE:-$HOME/.cache/facestream}"
TOOLS="$CACHE/sso-tools"
OAUTH2_PROXY="$TOOLS/oauth2-proxy-$OAUTH2_PROXY_VERSION/oauth2-proxy"
MOCK_DIR="$TOOLS/mock-oauth2-server-$MOCK_OAUTH2_SERVER_VERSION"
MOCK_JAR="$MOCK_DIR/lib/mock-oauth2-server-$MOCK_OAUTH2_SERVER_VERSION.jar"

log() { echo "sso-tools: $*" >&2; }
die() { echo "sso-tools: error: $*" >&2; exit 1; }

install_oauth2_proxy() {
  if [[ -x "$OAUTH2_PROXY" && -f "$(dirname "$OAUTH2_PROXY")/BUILD" ]]; then
    return
  fi
  export PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "go is needed to build oauth2-proxy (Go module proxy)"
  log "building oauth2-proxy $OAUTH2_PROXY_VERSION from the Go module proxy (a minute or two, once)"
  mkdir -p "$(dirname "$OAUTH2_PROXY")"
  # -mod=mod: the module's go.mod is used as published (it has replace-free requirements only)
  GOBIN="$(dirname "$OAUTH2_PROXY")" GOFLAGS="-mod=mod -trimpath" \
    go install "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
  "$OAUTH2_PROXY" --version >/dev/null 2>&1 || die "built oauth2-proxy does not run"
  echo "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION" >"$(dirname "$OAUTH2_PROXY")/BUILD"
}

install_mock_oauth2_server() {
  if [[ -f "$MOCK_JAR" && -f "$MOCK_DIR/BUILD" ]]; then
    return
  fi
  command -v mvn >/dev/null || die "mvn is needed to fetch mock-oauth2-server from Maven Central"
  command -v java >/dev/null || die "java (17+) is needed to run mock-oauth2-server"
  log "fetching mock-oauth2-server $MOCK_OAUTH2_SERVER_VERSION and its dependencies from Maven Central"
  mkdir -p "$MOCK_DIR"
  cat >"$MOCK_DIR/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.facestream</groupId>
  <artifactId>sso-tools</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>no.nav.security</groupId>
      <artifactId>mock-oauth2-server</artifactId>
      <version>$MOCK_OAUTH2_SERVER_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf "$MOCK_DIR/lib"
  (cd "$MOCK_DIR" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib)
  [[ -f "$MOCK_JAR" ]] || die "mock-oauth2-server jar missing after mvn"
  echo "no.nav.security:mock-oauth2-server:$MOCK_OAUTH2_SERVER_VERSION" >"$MOCK_DIR/BUILD"
}

install_oauth2_proxy
install_mock_oauth2_server
log "oauth2-proxy $OAUTH2_PROXY_VERSION; mock-oauth2-server $MOCK_OAUTH2_SERVER_VERSION"
if [[ "${1:-install}" == "env" ]]; then
  echo "OAUTH2_PROXY=$OAUTH2_PROXY"
  echo "MOCK_OAUTH2_CP=$MOCK_DIR/lib/*"
fi
