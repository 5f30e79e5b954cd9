"""The job runtime: what runs inside a container or on another machine. Stdlib-only, Python >= 3.8; imports nothing else of hither."""
