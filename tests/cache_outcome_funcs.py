"""hither functions of tests/test_job_cache_outcomes.py, importable by worker processes."""
import os
import time

import hither as hi


@hi.function("co_sleep", "0.1.0")
def co_sleep(seconds):
    time.sleep(seconds)
    return seconds


@hi.function("co_die_once", "0.1.0")
def co_die_once(x, marker):
    """Kills its own process the first time (no file at ``marker`` yet), returns x after."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return x


@hi.function("co_add", "0.1.0")
def co_add(x):
    return x + 1
