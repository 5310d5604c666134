"""Who hears which event: integration apps subscribe in their AppConfig.ready, so the clinical
core never names them. No model imports here: `outbox.subscribe` is importable at start-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import OutboxEvent

Handler = Callable[["OutboxEvent"], None]

_handlers: dict[str, dict[str, Handler]] = {}


def subscribe(topic: str, handler: Handler, *, name: str) -> None:
    """Hand every `topic` event to `handler`, inside the transaction that marks it handed on to
    `name`: whatever rows the handler writes exist if and only if the event counts as delivered
    to it. `name` is recorded on the event; keep it stable (renaming one re-sends nothing, but an
    event still waiting would go to the new name too). Subscribing again replaces the handler."""
    _handlers.setdefault(topic, {})[name] = handler


def subscribers(topic: str) -> dict[str, Handler]:
    """name -> handler for `topic`, in the order they subscribed."""
    return dict(_handlers.get(topic, {}))
