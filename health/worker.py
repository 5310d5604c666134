"""A worker bootstep that records a heartbeat in the database, so /healthz can tell whether a
worker is alive with any broker (the serverless transport has no broadcast to ping)."""

import logging
import socket
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)


class HeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.hostname = getattr(worker, "hostname", None) or socket.gethostname()
        self.tref = None
        self.booted_at: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings
        from django.utils import timezone

        self.booted_at = timezone.now()
        self.beat()
        self.tref = worker.timer.call_repeatedly(settings.WORKER_HEARTBEAT_SECONDS, self.beat)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        try:
            from .models import WorkerHeartbeat

            WorkerHeartbeat.objects.filter(hostname=self.hostname).delete()
        except Exception:  # the database may be gone at shutdown; the beat simply goes stale
            logger.debug("could not remove heartbeat", exc_info=True)

    def beat(self) -> None:
        from django.db import close_old_connections
        from django.utils import timezone

        from .models import WorkerHeartbeat

        try:
            WorkerHeartbeat.objects.update_or_create(
                hostname=self.hostname, defaults={"last_seen": timezone.now(), "booted_at": self.booted_at}
            )
        except Exception:
            logger.warning("worker heartbeat failed", exc_info=True)
        finally:
            close_old_connections()
