"""Content addressing: the one sha1 helper and sha1:// URIs (``hashing``), the one on-disk
layout of a folder of blobs (``layout``), hither-core's own content store on it
(``folder.ContentFolder``, a ``hither.plugins.interfaces.Store``) and the configured store
(``stores``)."""
