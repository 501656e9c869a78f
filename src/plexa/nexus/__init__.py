"""The nexus layer: the coordinator (actor table, lifecycle commands, supervision, status,
the control server, cleanup)."""
