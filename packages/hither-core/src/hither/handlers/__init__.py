"""The job handlers that ship with hither-core."""
