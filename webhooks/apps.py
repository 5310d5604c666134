from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The clinical core publishes to the outbox and names no integration: webhooks listen.
        from outbox import subscribe

        from .events import event_receive
        from .models import EventType

        for event_type in EventType.values:
            subscribe(event_type, event_receive, name="webhooks")
