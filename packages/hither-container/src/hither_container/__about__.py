"""Version of hither-container."""
__version__ = "0.1.0"
