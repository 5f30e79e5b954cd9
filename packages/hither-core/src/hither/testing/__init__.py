"""Test helpers for packages that implement hither's plugin interfaces (need pytest).

- ``hither.testing.cache_conformance.CacheBackendConformance``: the behaviour every
  ``CacheBackend`` must show; a backend's tests subclass it and say how to make one.
- ``hither.testing.store_conformance.StoreConformance``: the same for every ``Store``; the
  tests provide a ``store`` fixture (see hither-store's tests, or the dict-backed store in
  hither-core's ``tests/test_core_store_conformance.py``).
- ``hither.testing.value_strategies``: hypothesis strategies of every value hither accepts,
  equal twins in other layouts, differing variants, and ``assert_exact`` (need hypothesis).
- ``hither.testing.services``: skip a test whose service (MongoDB, S3, Slurm, Docker) is
  absent, or fail it under ``HITHER_REQUIRE_SERVICES=1``; a MongoDB database of a test's own,
  a MongoDB-protocol server of a test's own (for outages).
- ``hither.testing.processes``: whether a pid runs (a zombie does not), waiting for the file
  a job writes (its pids) and for processes to end.
"""
