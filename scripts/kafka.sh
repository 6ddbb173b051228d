#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller) for development and the tests.
#
#   scripts/kafka.sh fetch                 the broker's jars from Maven Central, cached
#   scripts/kafka.sh start [options]       format (first time), start in the background, wait
#   scripts/kafka.sh stop  [--data-dir D]  SIGTERM, wait, SIGKILL only if it hangs
#   scripts/kafka.sh status [--data-dir D] exit 0 when running, 3 when not
#   scripts/kafka.sh acls [options]        (secure broker) apply acls.txt for another --topic-prefix
#
# start options (each also an environment variable):
#   --data-dir DIR          KAFKA_DATA_DIR         default var/kafka in the checkout
#   --port N                KAFKA_PORT             client listener, default 9092
#   --controller-port N     KAFKA_CONTROLLER_PORT  KRaft controller listener, default 9093
#   --host H                KAFKA_HOST             default 127.0.0.1
#   --heap SIZE             KAFKA_HEAP             JVM -Xmx, default 512m
#   --extra-config FILE     KAFKA_EXTRA_CONFIG     appended to server.properties
#   --owner-pid PID         KAFKA_OWNER_PID        stop the broker when this process exits
#   --secure                KAFKA_SECURE=1         TLS + SASL/SCRAM-SHA-512 + ACLs (below)
#   --topic-prefix P        KAFKA_TOPIC_PREFIX     topic prefix the ACLs name (services' --topic-prefix)
#   --group-prefix G        KAFKA_GROUP_PREFIX     consumer-group prefix of the ACLs, default P
#
# --secure: the client listener is SASL_SSL (SCRAM-SHA-512 over TLS) and is the only one; the
# controller listener is TLS with client certificates. A CA and the broker's certificate are made
# with openssl under DATA_DIR/secure/ on the first start; SCRAM users are created when the storage
# is formatted (so a secure broker needs a fresh --data-dir): `admin` (super user) and one per
# service (frame-sampler, detector, embedder, matcher, review), each with a random password in
# secure/users/NAME.password and a ready environment in secure/users/NAME.env (FACESTREAM_KAFKA_*).
# The StandardAuthorizer denies everything that scripts/kafka/acls.txt does not allow.
#
# The jars live in ${FACESTREAM_CACHE:-~/.cache/facestream}/kafka-4.1.1/libs (KAFKA_HOME
# overrides). The data dir holds server.properties, the KRaft log dirs, kafka.pid, kafka.out
# (stdout, warnings) and server.log (the broker's INFO log: read it when something fails).
set -euo pipefail

KAFKA_VERSION=4.1.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CACHE="${FACESTREAM_CACHE:-$HOME/.cache/facestream}"
KAFKA_HOME="${KAFKA_HOME:-$CACHE/kafka-$KAFKA_VERSION}"
LIBS="$KAFKA_HOME/libs"
POM="$HERE/kafka/pom.xml"
LOG4J="$HERE/kafka/log4j2.properties"

DATA_DIR="${KAFKA_DATA_DIR:-$REPO/var/kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HOST="${KAFKA_HOST:-127.0.0.1}"
HEAP="${KAFKA_HEAP:-512m}"
EXTRA_CONFIG="${KAFKA_EXTRA_CONFIG:-}"
OWNER_PID="${KAFKA_OWNER_PID:-}"
SECURE="${KAFKA_SECURE:-}"
TOPIC_PREFIX="${KAFKA_TOPIC_PREFIX:-}"
GROUP_PREFIX="${KAFKA_GROUP_PREFIX-unset}"
ACLS="$HERE/kafka/acls.txt"
ACL_TOOL="$HERE/kafka/Acls.java"
SERVICE_USERS=(frame-sampler detector embedder matcher review)
START_TIMEOUT_S="${KAFKA_START_TIMEOUT_S:-90}"
STOP_TIMEOUT_S="${KAFKA_STOP_TIMEOUT_S:-30}"

die() {
  echo "kafka.sh: $1" >&2
  exit "${2:-1}"
}

# The broker's size limit is stated once, in the topic catalogue; read from there, not copied.
limit_from_catalogue() {
  local value
  value="$(sed -n "s/^$1 = \([0-9_]*\)$/\1/p" "$REPO/src/facestream/transport/topics.py" | tr -d _)"
  [[ "$value" =~ ^[0-9]+$ ]] || die "no '$1 = <number>' line in src/facestream/transport/topics.py"
  echo "$value"
}

usage() {
  sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

parse_options() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --data-dir) DATA_DIR="${2:?--data-dir needs a value}"; shift 2 ;;
      --port) PORT="${2:?--port needs a value}"; shift 2 ;;
      --controller-port) CONTROLLER_PORT="${2:?--controller-port needs a value}"; shift 2 ;;
      --host) HOST="${2:?--host needs a value}"; shift 2 ;;
      --heap) HEAP="${2:?--heap needs a value}"; shift 2 ;;
      --extra-config) EXTRA_CONFIG="${2:?--extra-config needs a value}"; shift 2 ;;
      --owner-pid) OWNER_PID="${2:?--owner-pid needs a value}"; shift 2 ;;
      --secure) SECURE=1; shift ;;
      --topic-prefix) TOPIC_PREFIX="${2?--topic-prefix needs a value}"; shift 2 ;;
      --group-prefix) GROUP_PREFIX="${2?--group-prefix needs a value}"; shift 2 ;;
      *) die "unknown option: $1 (see scripts/kafka.sh --help)" 2 ;;
    esac
  done
  for value in "$PORT" "$CONTROLLER_PORT"; do
    [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -ge 1 ] && [ "$value" -le 65535 ] ||
      die "not a port number: $value" 2
  done
  [ "$PORT" != "$CONTROLLER_PORT" ] || die "--port and --controller-port must differ" 2
  [ -z "$EXTRA_CONFIG" ] || [ -f "$EXTRA_CONFIG" ] || die "no such file: $EXTRA_CONFIG" 2
  [ -z "$OWNER_PID" ] || [[ "$OWNER_PID" =~ ^[0-9]+$ ]] || die "not a pid: $OWNER_PID" 2
  [[ "$TOPIC_PREFIX" =~ ^[A-Za-z0-9._-]*$ ]] || die "not a topic prefix: $TOPIC_PREFIX" 2
  [ "$GROUP_PREFIX" != unset ] || GROUP_PREFIX="$TOPIC_PREFIX"
  [[ "$GROUP_PREFIX" =~ ^[A-Za-z0-9._-]*$ ]] || die "not a group prefix: $GROUP_PREFIX" 2
  DATA_DIR="$(realpath -m "$DATA_DIR")"
  PID_FILE="$DATA_DIR/kafka.pid"
  LOG_DIRS="$DATA_DIR/kraft-logs"
  SECURE_DIR="$DATA_DIR/secure"
  # a broker formatted --secure stays secure: its SCRAM users and certificates are in the data dir
  [ ! -f "$SECURE_DIR/users/admin.password" ] || SECURE=1
}

# -- fetch -------------------------------------------------------------------------------------

fetch() {
  local stamp="$LIBS/.complete" want
  want="$(sha256sum "$POM" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the broker: apt-get install maven"
  mkdir -p "$KAFKA_HOME"
  # One fetch at a time; a second caller waits, then finds the stamp.
  exec 9>"$KAFKA_HOME/.fetch.lock"
  flock 9
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  local tmp
  tmp="$(mktemp -d "$KAFKA_HOME/.libs.XXXXXX")"
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION broker jars into $LIBS" >&2
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not fetch the broker jars (see above)"
  fi
  rm -f "$tmp.log"
  echo "$want" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

# -- start -------------------------------------------------------------------------------------

# The listeners, in one place. The client listener is plaintext on loopback or, with --secure,
# SASL_SSL (SCRAM over TLS) with the controller listener on mutual TLS.
LISTENERS=()
listener() {
  LISTENERS+=("$1:$2:$3")
}

listener_config() {
  if [ -n "$SECURE" ]; then
    listener CLIENT SASL_SSL "$PORT"
    listener CONTROLLER SSL "$CONTROLLER_PORT"
  else
    listener CLIENT PLAINTEXT "$PORT"
    listener CONTROLLER PLAINTEXT "$CONTROLLER_PORT"
  fi
  local bind=() advertised=() protocols=() entry name protocol port
  for entry in "${LISTENERS[@]}"; do
    IFS=: read -r name protocol port <<<"$entry"
    bind+=("$name://$HOST:$port")
    protocols+=("$name:$protocol")
    [ "$name" = CONTROLLER ] || advertised+=("$name://$HOST:$port")
  done
  local IFS=,
  cat <<EOF
listeners=${bind[*]}
advertised.listeners=${advertised[*]}
listener.security.protocol.map=${protocols[*]}
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
EOF
}

server_config() {
  cat <<EOF
# Written by scripts/kafka.sh start; edits are overwritten on the next start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
log.dirs=$LOG_DIRS
$(listener_config)

# One node: internal topics cannot be replicated.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Consumers join at once; topics exist only when created (facestream topics create).
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=1

# Record size limit: MAX_BATCH_BYTES of src/facestream/transport/topics.py (docs/delivery.md).
message.max.bytes=$MAX_BATCH_BYTES
replica.fetch.max.bytes=$MAX_BATCH_BYTES

# A small machine.
num.network.threads=2
num.io.threads=4
log.cleaner.threads=1
num.recovery.threads.per.data.dir=1
EOF
  [ -z "$SECURE" ] || secure_config
  if [ -n "$EXTRA_CONFIG" ]; then
    echo
    echo "# --extra-config $EXTRA_CONFIG"
    cat "$EXTRA_CONFIG"
  fi
}

# -- --secure: certificates, SCRAM users, authorizer, ACLs -------------------------------------

secure_config() {
  cat <<EOF

# --secure: TLS everywhere, SCRAM-SHA-512 for clients, mutual TLS between broker and controller,
# and nothing allowed that an ACL does not allow (scripts/kafka/acls.txt).
ssl.keystore.type=PEM
ssl.keystore.location=$SECURE_DIR/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
ssl.enabled.protocols=TLSv1.3,TLSv1.2
listener.name.controller.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$SECURE_DIR/users/admin.password")";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:CN=facestream-broker
allow.everyone.if.no.acl.found=false
EOF
}

# The CA, the broker's certificate (server and client: it is the controller's client too), and a
# password per user; made once per data dir. Keys and passwords are readable by the owner only.
make_secrets() {
  command -v openssl >/dev/null || die "openssl is needed for --secure"
  (
    umask 077
    mkdir -p "$SECURE_DIR/users"
    if [ ! -f "$SECURE_DIR/broker-keystore.pem" ]; then
      local san="DNS:localhost,IP:127.0.0.1"
      if [[ "$HOST" =~ ^[0-9.]+$ ]]; then san="$san,IP:$HOST"; else san="$san,DNS:$HOST"; fi
      openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=facestream-dev-ca" \
        -keyout "$SECURE_DIR/ca.key" -out "$SECURE_DIR/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null || die "openssl could not make the CA"
      openssl req -newkey rsa:2048 -nodes -subj "/CN=facestream-broker" \
        -keyout "$SECURE_DIR/broker.key" -out "$SECURE_DIR/broker.csr" 2>/dev/null ||
        die "openssl could not make the broker key"
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' \
        "$san" >"$SECURE_DIR/broker.ext"
      openssl x509 -req -in "$SECURE_DIR/broker.csr" -CA "$SECURE_DIR/ca.pem" -CAkey "$SECURE_DIR/ca.key" \
        -CAcreateserial -days 825 -extfile "$SECURE_DIR/broker.ext" -out "$SECURE_DIR/broker.pem" \
        2>/dev/null || die "openssl could not sign the broker certificate"
      cat "$SECURE_DIR/broker.key" "$SECURE_DIR/broker.pem" "$SECURE_DIR/ca.pem" >"$SECURE_DIR/broker-keystore.pem"
      chmod 644 "$SECURE_DIR/ca.pem"
    fi
    local user
    for user in admin "${SERVICE_USERS[@]}"; do
      [ -f "$SECURE_DIR/users/$user.password" ] || openssl rand -hex 24 >"$SECURE_DIR/users/$user.password"
    done
  )
}

# What a client of this broker needs, per user: a facestream environment (FACESTREAM_KAFKA_*) and,
# for the admin, Java client properties (used to apply the ACLs).
write_client_files() {
  (
    umask 077
    local user
    for user in admin "${SERVICE_USERS[@]}"; do
      cat >"$SECURE_DIR/users/$user.env" <<EOF
FACESTREAM_KAFKA_BOOTSTRAP_SERVERS=$HOST:$PORT
FACESTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL
FACESTREAM_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
FACESTREAM_KAFKA_SASL_USERNAME=$user
FACESTREAM_KAFKA_SASL_PASSWORD=$(cat "$SECURE_DIR/users/$user.password")
FACESTREAM_KAFKA_SSL_CA_LOCATION=$SECURE_DIR/ca.pem
EOF
    done
    cat >"$SECURE_DIR/admin.properties" <<EOF
bootstrap.servers=$HOST:$PORT
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$SECURE_DIR/users/admin.password")";
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
default.api.timeout.ms=60000
EOF
  )
}

scram_args() {
  local user
  SCRAM_ARGS=()
  for user in admin "${SERVICE_USERS[@]}"; do
    SCRAM_ARGS+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$SECURE_DIR/users/$user.password")]")
  done
}

apply_acls() {
  [ -f "$SECURE_DIR/admin.properties" ] || die "no secure broker in $DATA_DIR (start it with --secure)" 2
  java_cmd
  "${JAVA[@]}" "$ACL_TOOL" "$SECURE_DIR/admin.properties" "$ACLS" "$TOPIC_PREFIX" "$GROUP_PREFIX" \
    >>"$DATA_DIR/kafka.out" 2>&1 || {
    tail -n 20 "$DATA_DIR/kafka.out" >&2
    die "applying $ACLS failed"
  }
  echo "kafka.sh: ACLs of $ACLS applied (topic prefix '$TOPIC_PREFIX', group prefix '$GROUP_PREFIX')" >&2
}

# A TCP connect proves little on a TLS listener still starting: wait for a verified TLS handshake.
accepts_tls() {
  openssl s_client -connect "$HOST:$PORT" -CAfile "$SECURE_DIR/ca.pem" -verify_return_error \
    </dev/null >/dev/null 2>&1
}

running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

java_cmd() {
  JAVA=(java -Xmx"$HEAP" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true -Dkafka.logs.dir="$DATA_DIR" -Dlog4j2.configurationFile="$LOG4J"
    -cp "$LIBS/*")
}

accepts_connections() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

start() {
  local pid
  if pid="$(running_pid)"; then
    echo "kafka.sh: already running (pid $pid, data $DATA_DIR)" >&2
    return 0
  fi
  [ -d "$LIBS" ] && [ -f "$LIBS/.complete" ] || fetch
  mkdir -p "$DATA_DIR"
  command -v java >/dev/null || die "java is needed to run the broker (Java 17+)"
  SCRAM_ARGS=()
  if [ -n "$SECURE" ]; then
    if [ -f "$LOG_DIRS/meta.properties" ] && [ ! -f "$SECURE_DIR/users/admin.password" ]; then
      die "$DATA_DIR was formatted without --secure (SCRAM users are made at format): use a fresh --data-dir" 2
    fi
    make_secrets
    write_client_files
    scram_args
  fi
  MAX_BATCH_BYTES="$(limit_from_catalogue MAX_BATCH_BYTES)"
  (umask 077 && server_config >"$DATA_DIR/server.properties")
  java_cmd
  if [ ! -f "$LOG_DIRS/meta.properties" ]; then
    local cluster_id
    cluster_id="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)"
    "${JAVA[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$DATA_DIR/server.properties" \
      "${SCRAM_ARGS[@]}" >>"$DATA_DIR/kafka.out" 2>&1 || {
      tail -n 20 "$DATA_DIR/kafka.out" >&2
      die "formatting the storage in $LOG_DIRS failed"
    }
  fi
  nohup "${JAVA[@]}" kafka.Kafka "$DATA_DIR/server.properties" >>"$DATA_DIR/kafka.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  if [ -n "$OWNER_PID" ]; then
    # A test run that dies without its teardown must not leave a broker behind.
    nohup bash -c "while kill -0 $OWNER_PID 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 2; done; \
      kill -TERM $pid 2>/dev/null" >/dev/null 2>&1 </dev/null &
  fi
  local waited=0
  until accepts_connections; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail -n 30 "$DATA_DIR/kafka.out" >&2
      die "the broker exited during start-up (logs: $DATA_DIR/server.log)"
    fi
    if [ "$waited" -ge $((START_TIMEOUT_S * 5)) ]; then
      stop_pid "$pid"
      die "the broker did not accept connections on $HOST:$PORT within ${START_TIMEOUT_S}s"
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
  if [ -n "$SECURE" ]; then
    until accepts_tls; do
      kill -0 "$pid" 2>/dev/null || die "the broker exited during start-up (logs: $DATA_DIR/server.log)"
      [ "$waited" -lt $((START_TIMEOUT_S * 5)) ] || die "no TLS handshake on $HOST:$PORT within ${START_TIMEOUT_S}s"
      sleep 0.2
      waited=$((waited + 1))
    done
    apply_acls
    echo "kafka.sh: SASL_SSL on $HOST:$PORT; CA $SECURE_DIR/ca.pem; users in $SECURE_DIR/users/" >&2
  fi
  echo "kafka.sh: broker on $HOST:$PORT (pid $pid, data $DATA_DIR)" >&2
}

# -- stop / status -----------------------------------------------------------------------------

stop_pid() {
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((STOP_TIMEOUT_S * 5)) ]; then
      echo "kafka.sh: broker $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    stop_pid "$pid"
    echo "kafka.sh: stopped (pid $pid)" >&2
  else
    echo "kafka.sh: not running (data $DATA_DIR)" >&2
  fi
  rm -f "$PID_FILE"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running pid=$pid data=$DATA_DIR"
    return 0
  fi
  echo "stopped data=$DATA_DIR"
  return 3
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  fetch) [ $# -eq 0 ] || die "fetch takes no options" 2; fetch ;;
  start) parse_options "$@"; start ;;
  stop) parse_options "$@"; stop ;;
  status) parse_options "$@"; status ;;
  acls) parse_options "$@"; running_pid >/dev/null || die "not running (data $DATA_DIR)"; apply_acls ;;
  -h | --help | help) usage ;;
  *) echo "kafka.sh: expected fetch, start, stop, status or acls" >&2; usage ;;
esac
