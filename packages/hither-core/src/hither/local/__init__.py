"""Jobs on this machine: the Default and Parallel job handlers, the pool worker, its messages and shared-memory transfer."""
