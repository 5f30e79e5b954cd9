"""Compat: ``python -m hither.runner`` runs ``hither.runtime`` (JOB_DIR, or --serve); and
``hither.runner.JobExitError`` is the name error descriptions give that class."""
import sys

from hither.runtime import JobExitError, main  # noqa: F401 - JobExitError: rebuild_error finds it here

if __name__ == "__main__":
    sys.exit(main())
