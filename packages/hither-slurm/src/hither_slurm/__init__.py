"""hither-slurm: ``hi.SlurmJobHandler`` runs hither jobs on a Slurm cluster, many per
allocation, through pilot workers that claim job directories from a shared working folder.

    import hither as hi

    jh = hi.SlurmJobHandler(working_dir="/shared/hither-work", num_workers_per_batch=8,
                            num_cores_per_job=1, time_limit_per_batch=3600)
    with hi.Config(job_handler=jh):
        jobs = [sqr.run(x=i) for i in range(100)]
    hi.wait()
"""
from __future__ import annotations

from .__about__ import __version__
from .errors import AllocationLostError, SlurmError
from .handler import SlurmJobHandler

__all__ = ["__version__", "SlurmJobHandler", "SlurmError", "AllocationLostError"]
