"""hither-monitor: a live web page over the job event log and the remote job bus (``hither-monitor serve``)."""
from .__about__ import __version__

__all__ = ["__version__"]
