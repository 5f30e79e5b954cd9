#!/usr/bin/env bash
# Install (once) and start (if not running) the real services hither's tests use:
#   - a MongoDB-protocol server (SecantusDB) on 127.0.0.1:27017   (hither-cache, hither-remote)
#   - an S3 API (moto_server) on 127.0.0.1:5555                     (hither-store)
#   - a Docker Engine (dockerd --bridge=none --iptables=false) and a locally built
#     Python 3.11 + numpy image, hither-test/python-numpy:3.11       (hither-container)
#   - a single-node Slurm cluster (munge + slurmctld + slurmd)       (hither-slurm)
#   - Debian's chromium (headless, driven by playwright)             (hither-monitor's page tests)
# Idempotent: safe to run again when things are installed or already up.
# Each service lives in its own venv under /opt (SecantusDB is GPL-2.0: a separate
# process, never a dependency of hither). Only loopback addresses are used.
set -euo pipefail

MONGO_PORT=${HITHER_TEST_MONGO_PORT:-27017}
S3_PORT=${HITHER_TEST_S3_PORT:-5555}
LOG_DIR=${HITHER_SERVICES_LOG_DIR:-/tmp/hither-services}
mkdir -p "$LOG_DIR"
# Daemons start under setsid: in a session of their own they outlive the shell (and its
# process group) that started them, as services should.

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
  setsid nohup /opt/secantus/bin/secantusd-py --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory: \
    >"$LOG_DIR/secantus.log" 2>&1 &
  wait_port "$MONGO_PORT" SecantusDB 60
}

start_s3() {
  if port_open "$S3_PORT"; then log "S3 API already on $S3_PORT"; return 0; fi
  ensure_venv /opt/hither-moto "moto[server]>=5" moto_server
  setsid nohup /opt/hither-moto/bin/moto_server -H 127.0.0.1 -p "$S3_PORT" >"$LOG_DIR/moto.log" 2>&1 &
  wait_port "$S3_PORT" moto_server 60
}

DOCKER_IMAGE=${HITHER_TEST_IMAGE:-hither-test/python-numpy:3.11}

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_docker() {
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 \
     || ! command -v docker >/dev/null 2>&1; then
    log "installing docker.io and debootstrap"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap
  fi
  if docker_answers; then
    log "Docker Engine already answering"
  else
    # --bridge=none: no 172.17.0.0/16 bridge; job containers run with network "none".
    # --iptables=false: the engine touches no firewall rules.
    setsid nohup dockerd --bridge=none --iptables=false >"$LOG_DIR/dockerd.log" 2>&1 &
    local i
    for ((i = 0; i < 600; i++)); do docker_answers && break; sleep 0.1; done
    docker_answers || { log "dockerd did not answer within 60 s; see $LOG_DIR/dockerd.log"; return 1; }
    log "Docker Engine is up"
  fi
  if docker image inspect "$DOCKER_IMAGE" >/dev/null 2>&1; then
    log "image $DOCKER_IMAGE already built"; return 0
  fi
  # No registry is reachable: build the image from a Debian root file system.
  local mirror rootfs
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /tmp/hither-rootfs.XXXXXX)
  log "building $DOCKER_IMAGE with debootstrap from $mirror (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-numpy bookworm "$rootfs" "$mirror" \
    >"$LOG_DIR/debootstrap.log" 2>&1 || { log "debootstrap failed; see $LOG_DIR/debootstrap.log"; rm -rf "$rootfs"; return 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - "$DOCKER_IMAGE" >/dev/null
  rm -rf "$rootfs"
  docker run --rm --network none "$DOCKER_IMAGE" python3 -c 'import numpy' \
    || { log "$DOCKER_IMAGE cannot import numpy"; return 1; }
  log "built $DOCKER_IMAGE"
}

# The Slurm paths; the HITHER_SLURM_* variables exist for a dry run of this logic with
# stand-in daemons (tests/test_services_script.py), never needed on a real machine.
SLURM_CONF=${HITHER_SLURM_CONF:-/etc/slurm/slurm.conf}
SLURM_CLUSTER=hitherci
SLURM_STATE=${HITHER_SLURM_STATE_DIR:-/var/spool/slurmctld}
SLURMD_SPOOL=${HITHER_SLURMD_SPOOL_DIR:-/var/spool/slurmd}
SLURMCTLD_PID=${HITHER_SLURMCTLD_PID:-/run/slurmctld.pid}
SLURMD_PID=${HITHER_SLURMD_PID:-/run/slurmd.pid}
SLURM_LOG_DIR=${HITHER_SLURM_LOG_DIR:-/var/log}
MUNGE_KEY=${HITHER_MUNGE_KEY:-/etc/munge/munge.key}

slurm_conf() {  # the minimal single-node configuration (CPUs = nproc)
  cat <<CONF
# written by hither's scripts/services.sh: one node (localhost) for the test suite
ClusterName=$SLURM_CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$SLURM_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$SLURM_LOG_DIR/slurmctld.log
SlurmdLogFile=$SLURM_LOG_DIR/slurmd.log
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start_slurm() {
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    log "installing slurm-wlm and munge (apt-get)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
  fi
  mkdir -p "$(dirname "$SLURM_CONF")" "$SLURM_STATE" "$SLURMD_SPOOL" /run/munge
  local want; want=$(slurm_conf)
  if [ ! -f "$SLURM_CONF" ] || [ "$(cat "$SLURM_CONF")" != "$want" ]; then
    log "writing $SLURM_CONF"
    printf '%s\n' "$want" >"$SLURM_CONF"
    # a changed configuration needs restarted daemons
    stop_slurm_daemon slurmd "$SLURMD_PID"; stop_slurm_daemon slurmctld "$SLURMCTLD_PID"
  fi
  [ -f "$MUNGE_KEY" ] || mungekey -c
  chown munge:munge "$MUNGE_KEY" /run/munge
  if ! pgrep -x munged >/dev/null; then runuser -u munge -- munged; fi
  if ! slurm_daemon_up slurmctld "$SLURMCTLD_PID"; then
    claim_slurm_state
    start_slurm_daemon slurmctld || return 1
  fi
  if ! slurm_daemon_up slurmd "$SLURMD_PID"; then start_slurm_daemon slurmd || return 1; fi
  local i
  for ((i = 0; i < 300; i++)); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      log "Slurm is up ($(sinfo -h -o '%P %D %c %t' | head -1))"; return 0
    fi
    sleep 0.1
  done
  log "Slurm did not come up within 30 s; see $SLURM_LOG_DIR/slurmctld.log and $SLURM_LOG_DIR/slurmd.log:"
  slurm_log_tail slurmctld; slurm_log_tail slurmd
  return 1
}

slurm_answers() {  # slurm_answers slurmctld|slurmd: does the daemon answer (no pid file needed)?
  if [ "$1" = slurmctld ]; then
    timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'
  else
    timeout 10 scontrol show slurmd >/dev/null 2>&1
  fi
}

slurm_daemon_up() {  # slurm_daemon_up NAME PIDFILE: running (by its pid file, or it answers)?
  pidfile_alive "$2" && return 0
  if slurm_answers "$1"; then
    log "$1 answers, but its pid file $2 is missing or stale: using it as it runs" \
        "(to restart it: scontrol shutdown, then run this script again)"
    return 0
  fi
  return 1
}

stop_slurm_daemon() {  # stop_slurm_daemon NAME PIDFILE: by its pid file, else ask it to stop
  if pidfile_alive "$2"; then
    pkill_pidfile "$2"
  elif slurm_answers "$1"; then
    log "$1 answers without a live pid file ($2): asking it to stop (scontrol shutdown $1)"
    if [ "$1" = slurmctld ]; then scontrol shutdown slurmctld || true; else scontrol shutdown || true; fi
    local i; for ((i = 0; i < 100; i++)); do slurm_answers "$1" || return 0; sleep 0.1; done
    log "$1 still answers after 10 s; stop it by hand (kill the $1 process), then run this script again"
    return 1
  fi
  return 0
}

claim_slurm_state() {  # a state folder of another cluster: moved aside (slurmctld refuses it)
  local file="$SLURM_STATE/clustername" other
  [ -f "$file" ] || return 0
  other=$(tr -d '[:space:]' <"$file")
  [ -n "$other" ] && [ "$other" != "$SLURM_CLUSTER" ] || return 0
  local aside; aside="$SLURM_STATE.$other.$(date +%Y%m%d-%H%M%S)"
  mv "$SLURM_STATE" "$aside"
  mkdir -p "$SLURM_STATE"
  log "$SLURM_STATE held the state of cluster '$other', which slurmctld refuses for" \
      "'$SLURM_CLUSTER': moved it aside to $aside (to use it again: stop Slurm, move it back and" \
      "set ClusterName=$other)"
}

start_slurm_daemon() {  # start_slurm_daemon NAME: start it; say what to do if it fails
  if ! "$1"; then
    log "$1 did not start; its log ($SLURM_LOG_DIR/$1.log) ends with:"
    slurm_log_tail "$1"
    log "fix what it says (another $1 running without a pid file? stop it), then run this script again"
    return 1
  fi
}

slurm_log_tail() {  # the last lines of a daemon's log, indented
  tail -n 5 "$SLURM_LOG_DIR/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true
}

pidfile_alive() {  # pidfile_alive FILE: is the process named in FILE running?
  [ -f "$1" ] && [ -n "$(cat "$1" 2>/dev/null)" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

pkill_pidfile() {  # stop the daemon named in a pid file (never by process name)
  if pidfile_alive "$1"; then
    kill "$(cat "$1")" 2>/dev/null || true  # it may end by itself meanwhile
    local i; for ((i = 0; i < 100; i++)); do pidfile_alive "$1" || return 0; sleep 0.1; done
  fi
  return 0
}

install_chromium() {  # a browser for the page tests: Debian's, never one downloaded by playwright
  if [ -x /usr/bin/chromium ]; then log "chromium already installed"; return 0; fi
  log "installing chromium (apt-get)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
  [ -x /usr/bin/chromium ] || { log "chromium did not install"; return 1; }
}

[ "${HITHER_SERVICES_SOURCED:-0}" = 1 ] && return 0  # sourced for a dry run: functions only

what=${1:-all}
case "$what" in
  all) start_mongo; start_s3; start_slurm; start_docker; install_chromium ;;
  mongo) start_mongo ;;
  s3) start_s3 ;;
  slurm) start_slurm ;;
  docker) start_docker ;;
  chromium) install_chromium ;;
  *) echo "usage: $0 [all|mongo|s3|slurm|docker|chromium]" >&2; exit 2 ;;
esac
