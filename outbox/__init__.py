"""The transactional outbox: what happened in the clinical core, recorded as a row in the same
transaction as the change, and handed to the integrations that subscribe to it.

Below `cases` and above `core`: it knows no clinical model (teams and subjects by id) and no
integration (they register their handlers with `subscribe` at start-up). `cases.events.publish`
writes events; `services.event_dispatch` and `services.events_sweep` hand them on."""

from .registry import subscribe

__all__ = ["subscribe"]
