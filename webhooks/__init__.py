"""Signed webhooks: endpoints admins register per care team (`models`, `admin`, `api`), the
allow-list of hosts they may point at (`hosts`), events emitted by the clinical services
(`events.emit`) and their delivery by Celery with retries, a log and a sweep (`services`, `tasks`).

Guarantees: every event is delivered at least once to each endpoint subscribed when it was
emitted, under a stable `webhook-id` (the event's id) so that receivers can drop duplicates;
order per endpoint is best-effort (the sweep and a recovered endpoint's backlog go in event
order, retries may overtake)."""
