from django.db import models


class WorkerHeartbeat(models.Model):
    """Written by every Celery worker every few seconds; /healthz reads it."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()
    # When this run of the worker started: a worker restarted under the same name is not the one
    # that was running a prediction before the restart.
    booted_at = models.DateTimeField(null=True, blank=True)
    queues = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.hostname
