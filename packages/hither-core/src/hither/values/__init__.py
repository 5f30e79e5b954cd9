"""Values: the value grammar (validation, scan, snapshot, substitute, hash), ``hi.File``, stored references, outcomes and error descriptions."""
