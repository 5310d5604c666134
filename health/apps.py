from django.apps import AppConfig


class HealthConfig(AppConfig):
    """Worker heartbeats and /healthz. Registers its own worker step, so the Celery app needs to
    know nothing of this app."""

    name = "health"
    verbose_name = "Health"

    def ready(self) -> None:
        from celery import current_app

        from .worker import HeartbeatStep

        current_app.steps["worker"].add(HeartbeatStep)
