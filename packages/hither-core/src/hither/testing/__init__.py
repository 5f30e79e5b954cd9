"""Test helpers for packages that implement hither's plugin interfaces (need pytest).

``hither.testing.cache_conformance.CacheBackendConformance``: the behaviour every
``CacheBackend`` must show; a backend's tests subclass it and say how to make one.
"""
