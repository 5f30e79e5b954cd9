"""Version of hither-remote."""
__version__ = "0.1.0"
