"""Writing the trail. Changes are recorded at once, in the transaction of the change they record;
reads are collected during a request and written at its end in one query (`AuditMiddleware`).

Who and from where come from the request being served; outside a request (workers, commands)
the entry is the system's unless a user is given."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model
from django.http import HttpRequest

from core.net import client_ip

from .models import AuditEntry

Action = AuditEntry.Action
Outcome = AuditEntry.Outcome
Channel = AuditEntry.Channel

ADMIN_NAMESPACE = "admin"
API_NAMESPACE = "api"
DICOMWEB_NAMESPACE = "dicomweb"  # STOW-RS from a PACS: an integration, like the API


@dataclass
class RequestTrail:
    request: HttpRequest
    pending: list[AuditEntry] = field(default_factory=list)


_current: ContextVar[RequestTrail | None] = ContextVar("audit_request_trail", default=None)


def begin(request: HttpRequest) -> Any:
    return _current.set(RequestTrail(request))


def end(token: Any) -> None:
    """Write what the request read, in one query, and forget the request."""
    trail = _current.get()
    _current.reset(token)
    if trail is not None and trail.pending:
        AuditEntry.objects.bulk_create(trail.pending)


def record(
    action: str,
    *,
    object_type: str = "",
    object_id: int | None = None,
    patient_id: int | None = None,
    outcome: str = Outcome.OK,
    changes: Mapping[str, Any] | None = None,
    detail: str = "",
    user: AbstractBaseUser | AnonymousUser | None = None,
    username: str = "",
    request: HttpRequest | None = None,
) -> AuditEntry:
    """Write one entry now: call it inside the transaction of the change it records."""
    entry = _entry(
        action,
        user=user,
        username=username,
        request=request,
        changes=changes,
        detail=detail,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id,
        outcome=outcome,
    )
    entry.save()
    return entry


def record_object(action: str, obj: Model, **kwargs: Any) -> AuditEntry:
    """`record` for a model instance: its type, id and (where it has one) patient."""
    return record(action, **_subject(obj), **kwargs)


def read(obj: Model, *, object_type: str = "", detail: str = "") -> None:
    """Someone was shown `obj` (or, with `object_type`, a file or view of it)."""
    _later(_entry(Action.READ, **{**_subject(obj, object_type), "detail": detail}))


def read_list(object_type: str, *, patient_id: int | None = None, detail: str = "") -> None:
    """Someone was shown a list (of patients, of studies): no object ids, and never the search
    text; `patient_id` for a list's part that is one patient's records (a FHIR search's)."""
    _later(_entry(Action.READ, object_type=object_type, patient_id=patient_id, detail=detail))


def refused(model: type[Model], pk: int, *, patient_id: int | None) -> None:
    """Someone asked for an existing object outside their care teams and was told it does not exist."""
    _later(
        _entry(
            Action.REFUSED,
            object_type=model._meta.model_name or "",
            object_id=pk,
            patient_id=patient_id,
            outcome=Outcome.REFUSED,
        )
    )


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for the fields whose value differs, as JSON-safe values."""
    return {
        name: [plain(before.get(name)), plain(after.get(name))]
        for name in sorted(set(before) | set(after))
        if plain(before.get(name)) != plain(after.get(name))
    }


def plain(value: Any) -> Any:
    """A value as it should read in the trail: dates as ISO text, objects by their name."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Model):
        return str(value)
    if isinstance(value, Iterable):
        return sorted(str(plain(item)) for item in value)
    return str(value)


def _later(entry: AuditEntry) -> None:
    trail = _current.get()
    if trail is None:
        entry.save()
    else:
        trail.pending.append(entry)


def _subject(obj: Model, object_type: str = "") -> dict[str, Any]:
    return {
        "object_type": object_type or obj._meta.model_name or "",
        "object_id": obj.pk,
        "patient_id": getattr(obj, "audit_patient_id", None),
    }


def _entry(
    action: str,
    *,
    user: AbstractBaseUser | AnonymousUser | None = None,
    username: str = "",
    request: HttpRequest | None = None,
    changes: Mapping[str, Any] | None = None,
    detail: str = "",
    **fields: Any,
) -> AuditEntry:
    """An unsaved entry: who and from where (the request being served, unless given), what, and
    the model fields in `fields` (object_type, object_id, patient_id, outcome) as they are."""
    trail = _current.get()
    request = request or (trail.request if trail else None)
    if user is None and request is not None:
        user = getattr(request, "user", None)
    known = user if user is not None and user.is_authenticated else None
    return AuditEntry(
        user_id=known.pk if known is not None else None,
        username=(known.get_username() if known is not None else username)[:150],
        client_address=client_address(request) if request is not None else None,
        channel=channel_of(request),
        action=action,
        changes=dict(changes or {}),
        detail=detail[:500],
        **fields,
    )


def client_address(request: HttpRequest) -> str | None:
    return client_ip(request)


def channel_of(request: HttpRequest | None) -> str:
    if request is None:
        return Channel.SYSTEM
    match = getattr(request, "resolver_match", None)
    namespace = match.namespaces[0] if match is not None and match.namespaces else ""
    if namespace == ADMIN_NAMESPACE:
        return Channel.ADMIN
    if namespace in (API_NAMESPACE, DICOMWEB_NAMESPACE, "fhir"):
        return Channel.API
    return Channel.PAGE
