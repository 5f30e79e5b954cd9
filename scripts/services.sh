#!/usr/bin/env bash
# Install (once) and start (if not running) the real services hither's tests use:
#   - a MongoDB-protocol server (SecantusDB) on 127.0.0.1:27017   (hither-cache, hither-remote)
#   - an S3 API (moto_server) on 127.0.0.1:5555                     (hither-store)
# Idempotent: safe to run again when things are installed or already up.
# Each service lives in its own venv under /opt (SecantusDB is GPL-2.0: a separate
# process, never a dependency of hither). Only loopback addresses are used.
set -euo pipefail

MONGO_PORT=${HITHER_TEST_MONGO_PORT:-27017}
S3_PORT=${HITHER_TEST_S3_PORT:-5555}
LOG_DIR=${HITHER_SERVICES_LOG_DIR:-/tmp/hither-services}
mkdir -p "$LOG_DIR"

log() { echo "[services] $*" >&2; }

port_open() {  # port_open PORT: is something listening on 127.0.0.1:PORT?
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

wait_port() {  # wait_port PORT NAME SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" && { log "$2 is up on 127.0.0.1:$1"; return 0; }
    sleep 0.1
  done
  log "$2 did not come up on 127.0.0.1:$1 within $3 s; see $LOG_DIR"; return 1
}

ensure_venv() {  # ensure_venv DIR PIP_SPEC CHECK_BIN
  if [ ! -x "$1/bin/$3" ]; then
    log "installing $2 into $1"
    python3 -m venv "$1"
    "$1/bin/pip" install -q "$2"
  fi
}

start_mongo() {
  if port_open "$MONGO_PORT"; then log "MongoDB-protocol server already on $MONGO_PORT"; return 0; fi
  ensure_venv /opt/secantus "secantusdb==0.7.0b3" secantusd-py
  nohup /opt/secantus/bin/secantusd-py --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory: \
    >"$LOG_DIR/secantus.log" 2>&1 &
  wait_port "$MONGO_PORT" SecantusDB 60
}

start_s3() {
  if port_open "$S3_PORT"; then log "S3 API already on $S3_PORT"; return 0; fi
  ensure_venv /opt/hither-moto "moto[server]>=5" moto_server
  nohup /opt/hither-moto/bin/moto_server -H 127.0.0.1 -p "$S3_PORT" >"$LOG_DIR/moto.log" 2>&1 &
  wait_port "$S3_PORT" moto_server 60
}

what=${1:-all}
case "$what" in
  all) start_mongo; start_s3 ;;
  mongo) start_mongo ;;
  s3) start_s3 ;;
  *) echo "usage: $0 [all|mongo|s3]" >&2; exit 2 ;;
esac
