"""Jobs that leave the calling process: job directories, documents for other machines, launchers, the job server, code bundles."""
