"""A batch that stays PENDING: a reason Slurm never resolves (here: more CPUs than the
partition has) fails its jobs at once; any other wait fails them after pending_timeout.
Either way the error names the batch and squeue's reason, and the batch is scancel'ed."""
import time

import pytest

import hither as hi
from hither_slurm import SlurmError
from hither_slurm.batches import never_starts, squeue_states

import slurm_funcs as sf

pytestmark = pytest.mark.timeout(60)


def _gone_from_squeue(slurm_job_id, seconds=15.0):
    deadline = time.monotonic() + seconds
    while squeue_states().get(slurm_job_id) not in (None, "COMPLETED", "CANCELLED"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _batch_id(message):
    return message.split("Slurm batch ", 1)[1].split()[0]


def test_a_batch_slurm_never_starts_fails_at_once(slurm, make_handler):
    # 4 workers x 2 cores: 8 CPUs, on a partition of 2 (sbatch accepts it; it pends with
    # PartitionConfig for ever); no pending_timeout: the reason alone ends the wait
    jh = make_handler(num_workers_per_batch=4, num_cores_per_job=2, pending_timeout=None)
    t0 = time.monotonic()
    with hi.Config(job_handler=jh):
        jobs = [sf.slurm_add.run(x=i, y=1) for i in range(3)]
        for j in jobs:
            with pytest.raises(SlurmError) as err:
                j.wait(40)
    took = time.monotonic() - t0
    msg = str(err.value)
    assert took < 30, f"the jobs failed after {took:.0f} s"
    for words in ("can never start", "PartitionConfig", "8 CPUs", "num_workers_per_batch", "cancelled"):
        assert words in msg, msg
    assert _gone_from_squeue(_batch_id(msg)), f"batch {_batch_id(msg)} still in squeue"
    assert not jh.batches()


def test_a_batch_pending_past_pending_timeout_fails(slurm, make_handler):
    jh = make_handler(pending_timeout=3, additional_sbatch_opts=["--begin=now+1hour"])
    t0 = time.monotonic()
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=1, y=2)
        with pytest.raises(SlurmError) as err:
            job.wait(40)
    took = time.monotonic() - t0
    msg = str(err.value)
    assert 3 <= took < 20, f"failed after {took:.1f} s with pending_timeout=3"
    for words in ("BeginTime", "pending_timeout=3", "waited", "cancelled", "slurm_add"):
        assert words in msg, msg
    assert _gone_from_squeue(_batch_id(msg)), f"batch {_batch_id(msg)} still in squeue"
    # the handler stays usable: a later job starts a new batch (here also held back)
    with hi.Config(job_handler=jh):
        again = sf.slurm_add.run(x=2, y=2)
        with pytest.raises(SlurmError, match="BeginTime"):
            again.wait(40)


@pytest.mark.parametrize("reason, never", [
    ("PartitionConfig", True), ("PartitionTimeLimit", True), ("BadConstraints", True),
    ("QOSMaxCpuPerJobLimit", True), ("AssocMaxWallDurationPerJobLimit", True),
    ("Priority", False), ("Resources", False), ("BeginTime", False), ("JobHeldUser", False),
    ("ReqNodeNotAvail", False), ("AssocMaxJobsLimit", False), ("QOSGrpCpuLimit", False),
    ("PartitionDown", False),
])
def test_which_reasons_never_resolve(reason, never):
    assert never_starts(reason) is never


@pytest.mark.slow
def test_a_batch_given_up_does_not_fail_the_next_jobs(slurm, make_handler, caplog):
    """A second batch, asked for while the first fills the node (2 workers x 1 core on 2
    CPUs), pends past pending_timeout and is given up while the first runs all the jobs.
    Once that one has ended, the next job starts a new batch and runs: the old batch's
    error must not fail it (it did, once: the launch error outlived the jobs it was for)."""
    # pending_timeout leaves the first batch 8 s to start on a busy node (it takes ~1 s)
    jh = make_handler(num_workers_per_batch=2, num_cores_per_job=1, max_simultaneous_batches=2,
                      pending_timeout=8, idle_timeout=2)
    with hi.Config(job_handler=jh):
        # two run at once, then the third: the handler watches (and gives up) the second
        # batch while they run
        jobs = [sf.slurm_sleep.run(seconds=10 + i * 0.01) for i in range(3)]
        assert [j.wait(60) for j in jobs] == [10, 10.01, 10.02]
    given_up = [r.getMessage() for r in caplog.records if "pending_timeout=8" in r.getMessage()]
    assert given_up, "the second batch was not given up: the test did not make its case"
    first = jobs[0].get_runtime_info().slurm_job_id
    assert _gone_from_squeue(first, 30), f"the first batch {first} did not end when idle"
    with hi.Config(job_handler=jh):
        assert sf.slurm_add.run(x=2, y=5).wait(40) == 7


def test_slurm_job_id_is_none_until_the_job_runs_in_a_batch(slurm, make_handler):
    """Issue 21: ``get_runtime_info().slurm_job_id`` was an AttributeError before the job ran."""
    jh = make_handler(pending_timeout=None, additional_sbatch_opts=["--begin=now+1hour"])
    with hi.Config(job_handler=jh):
        job = sf.slurm_add.run(x=1, y=2)
        assert job.get_runtime_info().slurm_job_id is None
        deadline = time.monotonic() + 30
        while not jh.batches() or not jh.batches()[0].slurm_job_id:
            assert time.monotonic() < deadline, "no batch was submitted"
            time.sleep(0.1)
        time.sleep(1.0)  # its batch pends (BeginTime): the job has not run anywhere
        assert job.get_status() is hi.JobStatus.QUEUED
        assert job.get_runtime_info().slurm_job_id is None
        assert job.cancel()
