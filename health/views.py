from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import checks


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Public on purpose (load balancers call it); names states, never patient data."""
    results = {
        "database": checks.database(),
        "broker": checks.broker(),
        "worker": checks.workers(),
        "model_version": checks.model_version(),
    }
    healthy = all(ok for ok, _ in results.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        **{name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)
