"""Job events: each job's life recorded to a local SQLite event log, read by hither-monitor."""
