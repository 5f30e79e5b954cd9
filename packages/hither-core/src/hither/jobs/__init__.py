"""Jobs: the user's ``Job`` handle, the manager that routes them, placement checks, the cache policy, waiting."""
