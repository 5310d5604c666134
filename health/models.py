from django.db import models


class WorkerHeartbeat(models.Model):
    """Written by every Celery worker every few seconds; /healthz reads it."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()
    queues = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.hostname
