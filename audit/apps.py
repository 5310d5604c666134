from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The append-only audit trail: who read or changed what, when, from where.

    Knows nothing of the clinical apps: entries name objects by type and id, and the patient by id,
    so that the trail outlives any row it mentions."""

    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Logins, logouts, failures and lockouts happen inside Django and axes: their signals are
        # the only place to hear of them.
        from . import receivers  # noqa: F401
