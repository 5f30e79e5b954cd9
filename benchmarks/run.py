"""Run every benchmark file (``bench_*.py``) in its own process: ``hatch run bench [--quick]``."""
import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
status = 0
for path in sorted(glob.glob(os.path.join(here, "bench_*.py"))):
    if os.path.basename(path) == "bench_funcs.py":
        continue
    print(f"== {os.path.basename(path)}", flush=True)
    status |= subprocess.call([sys.executable, path, *sys.argv[1:]])
sys.exit(status)
