"""Content addressing: sha1 hashing, the local content folder (blob layout) and the configured content store."""
