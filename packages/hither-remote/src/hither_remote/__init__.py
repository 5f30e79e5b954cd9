"""hither-remote: run hither jobs on a named compute resource through a MongoDB job bus.

Client: ``hi.RemoteJobHandler(database=db, compute_resource_id='resource1')``; resource:
``hi.ComputeResource(database=db, compute_resource_id='resource1', ...).run()`` or
``hither-remote serve``. Only MongoDB and the content store are shared between them.
"""
from __future__ import annotations

from .__about__ import __version__

__all__ = ["__version__"]
