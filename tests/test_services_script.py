"""scripts/services.sh's Slurm start-up, run for real but against stand-in daemons (the
machine's own Slurm is in use by other tests and must not be stopped): a missing or stale pid
file of a daemon that runs, a state folder of another cluster name, a daemon that does not
start. Paths come from the script's HITHER_SLURM_* variables (a temporary folder), commands
from a folder of stand-ins first on PATH (/usr/sbin, where slurmctld and slurmd live, is left
out), and the script is sourced with HITHER_SERVICES_SOURCED=1 so that only
``start_slurm`` runs."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Dict, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "services.sh"

#: stand-ins: each daemon starts a ``sleep`` recorded in its pid file; FAKE/<name>.answers
#: makes scontrol say the daemon runs without one; FAKE/<name>.fails makes it refuse to start
DAEMON = r"""#!/bin/bash
name=$(basename "$0")
pidfile=$([ "$name" = slurmctld ] && echo "$HITHER_SLURMCTLD_PID" || echo "$HITHER_SLURMD_PID")
if [ -e "$FAKE/$name.answers" ] || [ -e "$FAKE/$name.fails" ]; then
  echo "$name: fatal: another $name is running (or cannot start)" >>"$HITHER_SLURM_LOG_DIR/$name.log"; exit 1
fi
if [ "$name" = slurmctld ]; then
  f="$HITHER_SLURM_STATE_DIR/clustername"
  if [ -f "$f" ] && [ "$(cat "$f")" != hitherci ]; then
    echo "fatal: CLUSTER NAME MISMATCH: read $(cat "$f")" >>"$HITHER_SLURM_LOG_DIR/$name.log"; exit 1
  fi
  printf hitherci >"$f"
fi
setsid sleep 120 </dev/null >/dev/null 2>&1 &
echo $! >"$pidfile"
"""
SCONTROL = r"""#!/bin/bash
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
case "$1 $2" in
  "ping "*) { [ -e "$FAKE/slurmctld.answers" ] || alive "$HITHER_SLURMCTLD_PID"; } &&
            echo "Slurmctld(primary) at localhost is UP" || echo "Slurmctld(primary) at localhost is DOWN" ;;
  "show slurmd") [ -e "$FAKE/slurmd.answers" ] || alive "$HITHER_SLURMD_PID" ;;
  "shutdown slurmctld") rm -f "$FAKE/slurmctld.answers" ;;
  "shutdown "*) rm -f "$FAKE/slurmctld.answers" "$FAKE/slurmd.answers" ;;
esac
"""
SINFO = r"""#!/bin/bash
up() { [ -e "$FAKE/$1.answers" ] || { [ -f "$2" ] && kill -0 "$(cat "$2")" 2>/dev/null; }; }
up slurmctld "$HITHER_SLURMCTLD_PID" && up slurmd "$HITHER_SLURMD_PID" && echo idle
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Dict[str, str]]:
    fake = tmp_path / "fake"
    bin_dir = tmp_path / "bin"
    for d in (fake, bin_dir, tmp_path / "log"):
        d.mkdir()
    for name, text in {"slurmctld": DAEMON, "slurmd": DAEMON, "scontrol": SCONTROL, "sinfo": SINFO,
                       "munged": "#!/bin/sh\n", "mungekey": "#!/bin/sh\n", "runuser": "#!/bin/sh\n",
                       "chown": "#!/bin/sh\n", "pgrep": "#!/bin/sh\nexit 0\n",
                       "apt-get": "#!/bin/sh\nexit 1\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE": str(fake),
           "HITHER_SERVICES_SOURCED": "1", "HITHER_SERVICES_LOG_DIR": str(tmp_path / "services-log"),
           "HITHER_SLURM_CONF": str(tmp_path / "etc" / "slurm.conf"),
           "HITHER_SLURM_STATE_DIR": str(tmp_path / "state"), "HITHER_SLURMD_SPOOL_DIR": str(tmp_path / "spool"),
           "HITHER_SLURMCTLD_PID": str(tmp_path / "slurmctld.pid"), "HITHER_SLURMD_PID": str(tmp_path / "slurmd.pid"),
           "HITHER_SLURM_LOG_DIR": str(tmp_path / "log"), "HITHER_MUNGE_KEY": str(tmp_path / "munge.key")}
    (tmp_path / "munge.key").write_text("k")
    yield env
    for pidfile in ("slurmctld.pid", "slurmd.pid"):  # the stand-ins' sleeps, ours only
        try:
            os.kill(int((tmp_path / pidfile).read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def start_slurm(env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}" && start_slurm'], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_fresh_start_writes_the_conf_and_starts_both(sandbox: Dict[str, str]) -> None:
    proc = start_slurm(sandbox)
    assert proc.returncode == 0 and "Slurm is up" in proc.stderr, proc.stderr
    conf = Path(sandbox["HITHER_SLURM_CONF"]).read_text()
    assert f"StateSaveLocation={sandbox['HITHER_SLURM_STATE_DIR']}" in conf and "ClusterName=hitherci" in conf
    again = start_slurm(sandbox)  # idempotent: nothing restarted
    assert again.returncode == 0 and "writing" not in again.stderr, again.stderr


def test_daemons_that_answer_without_pid_files_are_used_not_started_again(sandbox: Dict[str, str]) -> None:
    start_slurm(sandbox)  # the conf is written
    for name in ("slurmctld", "slurmd"):
        Path(sandbox[f"HITHER_{name.upper()}_PID"]).unlink()
        (Path(sandbox["FAKE"]) / f"{name}.answers").touch()  # running, but the pid file is gone
    proc = start_slurm(sandbox)
    assert proc.returncode == 0, proc.stderr
    assert "slurmctld answers, but its pid file" in proc.stderr and "slurmd answers, but its pid file" in proc.stderr
    assert "Slurm is up" in proc.stderr


def test_a_stale_pid_file_is_not_a_running_daemon(sandbox: Dict[str, str]) -> None:
    Path(sandbox["HITHER_SLURMD_PID"]).write_text("999999999\n")
    Path(sandbox["HITHER_SLURMCTLD_PID"]).write_text("")
    proc = start_slurm(sandbox)
    assert proc.returncode == 0 and "Slurm is up" in proc.stderr, proc.stderr


def test_a_state_folder_of_another_cluster_is_moved_aside(sandbox: Dict[str, str], tmp_path: Path) -> None:
    state = Path(sandbox["HITHER_SLURM_STATE_DIR"])
    state.mkdir()
    (state / "clustername").write_text("othercluster")
    (state / "job_state").write_text("their jobs")
    proc = start_slurm(sandbox)
    assert proc.returncode == 0 and "Slurm is up" in proc.stderr, proc.stderr
    (aside,) = tmp_path.glob("state.othercluster.*")
    assert (aside / "job_state").read_text() == "their jobs"  # kept, not deleted
    assert (state / "clustername").read_text() == "hitherci"
    assert f"moved it aside to {aside}" in proc.stderr and "set ClusterName=othercluster" in proc.stderr


def test_a_daemon_that_does_not_start_says_why_and_what_to_do(sandbox: Dict[str, str]) -> None:
    (Path(sandbox["FAKE"]) / "slurmd.fails").touch()
    proc = start_slurm(sandbox)
    assert proc.returncode == 1, proc.stderr
    assert "slurmd did not start" in proc.stderr and "fatal: another slurmd is running" in proc.stderr
    assert "run this script again" in proc.stderr


def test_the_conf_of_the_defaults_is_unchanged() -> None:
    """Without the HITHER_SLURM_* variables the written configuration is the one every
    machine set up by this script has (a different text would restart its daemons)."""
    env = {"PATH": "/usr/bin:/bin", "HITHER_SERVICES_SOURCED": "1", "HOME": "/tmp",
           "HITHER_SERVICES_LOG_DIR": "/tmp/hither-services"}
    proc = subprocess.run(["bash", "-c", f'source "{SCRIPT}" && slurm_conf'], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for line in ("ClusterName=hitherci", "StateSaveLocation=/var/spool/slurmctld", "SlurmdSpoolDir=/var/spool/slurmd",
                 "SlurmctldPidFile=/run/slurmctld.pid", "SlurmdPidFile=/run/slurmd.pid",
                 "SlurmctldLogFile=/var/log/slurmctld.log", "SlurmdLogFile=/var/log/slurmd.log"):
        assert line in proc.stdout.splitlines()
