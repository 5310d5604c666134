from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import checks


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Public on purpose (load balancers call it): up or down per component, nothing more.
    Staff, logged in, also see each component's detail (hosts, model version, errors)."""
    results = {
        "database": checks.database(),
        "broker": checks.broker(),
        "worker": checks.workers(),
        "model_version": checks.model_version(),
    }
    healthy = all(ok for ok, _ in results.values())
    detailed = request.user.is_authenticated and request.user.is_staff
    body = {
        "status": "ok" if healthy else "unavailable",
        **{
            name: {"ok": ok, **({"detail": detail} if detailed else {})}
            for name, (ok, detail) in results.items()
        },
    }
    return JsonResponse(body, status=200 if healthy else 503)
