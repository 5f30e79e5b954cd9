"""``python -m hither.runtime JOB_DIR`` or ``python -m hither.runtime --serve ...`` (see ``cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
