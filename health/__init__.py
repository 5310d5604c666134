"""Liveness: worker heartbeats (a worker step this app registers itself) and the public /healthz."""
