from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """One set of trained weights: what the portal can list, switch and record on a prediction."""

    name = models.CharField(max_length=120, unique=True)
    sha256 = models.CharField(
        "SHA-256",
        max_length=64,
        unique=True,
        help_text="identifies the weights: the file's SHA-256, or for an ensemble that of its members",
    )
    files = models.JSONField(
        default=dict,
        blank=True,
        help_text="SHA-256 of every weights file, checked whenever the weights are loaded",
    )
    weights_dir = models.CharField(
        max_length=500,
        help_text="folder with the weights and card.json; relative to the project when inside it",
    )
    metrics = models.JSONField(
        default=dict,
        blank=True,
        help_text="measured performance from the model card (cross-validated for ensembles)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="inference_one_active_model_version"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def weights_path(self) -> Path:
        """Absolute path of the weights folder."""
        path = Path(self.weights_dir)
        return path if path.is_absolute() else (Path(settings.BASE_DIR) / path).resolve()

    @property
    def balanced_accuracy(self) -> float | None:
        value = (self.metrics or {}).get("balanced_accuracy")
        return float(value) if value is not None else None
