# shellcheck shell=bash
# Starts and stops the local services the pipeline needs, without Docker:
# a throwaway PostgreSQL cluster and LocalStack (S3 + SQS) in host mode,
# both on 127.0.0.1, on free ports, with all their data in one temp folder.
#
# Sourced by scripts/test, scripts/demo and scripts/bench:
#
#   source scripts/lib/services.sh
#   services_start          # installs what is missing, starts both, exports:
#                           #   DATABASE_URL      postgres://... (superuser, random password)
#                           #   DATABASE_CA, DATABASE_OTHER_CA  the server certificate's CA, and another
#                           #   AWS_ENDPOINT_URL  http://127.0.0.1:<port>
#                           #   AWS_REGION, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (LocalStack's)
#   trap services_stop EXIT # stops what services_start started, whatever happens
#
# Settings: PIPELINE_CACHE_DIR (default ~/.cache/api-pipeline) keeps the
# LocalStack virtualenv between runs; PG_FSYNC=on keeps PostgreSQL durable
# (default off: these clusters are thrown away).

SERVICES_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/common.sh
source "$SERVICES_ROOT/scripts/lib/common.sh"
LOCALSTACK_LOCK="$SERVICES_ROOT/localstack/host/requirements.lock"
LOCALSTACK_LAUNCHER="$SERVICES_ROOT/localstack/host/launch.py"

_log() { printf '[services] %s\n' "$*" >&2; }

_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_http_ok() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1
}

# A throwaway CA, a server certificate it signs for the name localhost
# (not 127.0.0.1: the TLS tests check that a wrong name is refused), and a
# second, unrelated CA.
_make_certificates() { # DIR
  local dir="$1"
  command -v openssl >/dev/null || _apt_install openssl
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=api-pipeline test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=unrelated CA" -keyout "$dir/other-ca.key" -out "$dir/other-ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth\n' > "$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir/server.key"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$dir"
  chmod 755 "$dir"; chmod 644 "$dir"/*.crt
}

# The directory with initdb, pg_ctl and postgres; installs PostgreSQL if there is none.
_pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"; return
  fi
  _apt_install postgresql
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  _log "PostgreSQL is not installed and could not be installed"; return 1
}

# Runs a PostgreSQL command as the cluster's owner: PostgreSQL refuses to run as root.
_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_start_postgres() {
  local bindir port password
  bindir="$(_pg_bindir)"
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    _as_root useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  PG_DIR="$SERVICES_RUN_DIR/postgres"
  mkdir -p "$PG_DIR"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
  chmod 700 "$PG_DIR"
  password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  printf '%s\n' "$password" > "$SERVICES_RUN_DIR/pgpass.txt"
  [ "$(id -u)" -eq 0 ] && chown postgres "$SERVICES_RUN_DIR/pgpass.txt"
  _as_pg "$bindir/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$SERVICES_RUN_DIR/pgpass.txt" -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$SERVICES_RUN_DIR/pgpass.txt"
  port="$(_free_port)"
  cat >> "$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_DIR'
fsync = ${PG_FSYNC:-off}
synchronous_commit = ${PG_FSYNC:-off}
full_page_writes = ${PG_FSYNC:-off}
max_connections = 200
ssl = on
ssl_cert_file = '$PG_DIR/tls/server.crt'
ssl_key_file = '$PG_DIR/tls/server.key'
CONF
  _make_certificates "$PG_DIR/tls"
  _as_pg "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null
  PG_CTL="$bindir/pg_ctl"
  export DATABASE_URL="postgres://postgres:$password@127.0.0.1:$port/postgres"
  # For the TLS tests: the CA that signed the server's certificate (valid
  # for the name localhost only), and an unrelated one.
  export DATABASE_CA="$PG_DIR/tls/ca.crt" DATABASE_OTHER_CA="$PG_DIR/tls/other-ca.crt"
  _log "PostgreSQL ready on 127.0.0.1:$port (log: $PG_DIR/server.log)"
}

# A virtualenv with LocalStack, built once from the lock file and kept in the cache.
_localstack_venv() {
  venv_from_lock localstack "$LOCALSTACK_LOCK"
}

_start_localstack() {
  local venv port dir i
  venv="$(_localstack_venv)"
  port="$(_free_port)"
  dir="$SERVICES_RUN_DIR/localstack"
  mkdir -p "$dir/s3" "$dir/fs"
  # LocalStack's own settings: S3, SQS, Secrets Manager, SNS and EventBridge only, no telemetry, no downloads,
  # no DNS server, queue URLs on 127.0.0.1 (no DNS needed), state in $dir.
  (
    cd "$dir" || exit 1
    exec env SERVICES=s3,sqs,secretsmanager,sns,events DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 \
      OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$dir/fs" LOCALSTACK_S3_DIR="$dir/s3" \
      GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
      SQS_ENDPOINT_STRATEGY=off LOCALSTACK_BIND_HOST=127.0.0.1 \
      "$venv/bin/python" "$LOCALSTACK_LAUNCHER"
  ) >"$dir/localstack.log" 2>&1 &
  LOCALSTACK_PID=$!
  for i in $(seq 1 120); do
    if grep -q '^Ready\.' "$dir/localstack.log" 2>/dev/null && _http_ok "http://127.0.0.1:$port/_localstack/health"; then
      break
    fi
    if ! kill -0 "$LOCALSTACK_PID" 2>/dev/null || [ "$i" -eq 120 ]; then
      _log "LocalStack did not start; its log:"; tail -n 30 "$dir/localstack.log" >&2; return 1
    fi
    sleep 0.5
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  _log "LocalStack ready on $AWS_ENDPOINT_URL (log: $dir/localstack.log)"
}

services_start() {
  SERVICES_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/api-pipeline.XXXXXX")"
  chmod 755 "$SERVICES_RUN_DIR"
  _start_postgres
  _start_localstack
}

services_stop() {
  local status=$?
  if [ -n "${LOCALSTACK_PID:-}" ] && kill -0 "$LOCALSTACK_PID" 2>/dev/null; then
    kill -TERM "$LOCALSTACK_PID" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$LOCALSTACK_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$LOCALSTACK_PID" 2>/dev/null || true
  fi
  if [ -n "${PG_CTL:-}" ] && [ -d "${PG_DIR:-}/data" ]; then
    _as_pg "$PG_CTL" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "${SERVICES_RUN_DIR:-}" ] && [ "${KEEP_SERVICES_DIR:-0}" != 1 ]; then
    rm -rf "$SERVICES_RUN_DIR"
  fi
  _log "stopped PostgreSQL and LocalStack"
  return "$status"
}
