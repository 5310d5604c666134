"""python manage.py dicom_upload_cost --data ../shared/datasets/iqothnccd [--slices 200]"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.test import override_settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _same_size(paths: Any, size: tuple[int, int] = (512, 512)) -> list[Path]:
    """The slices of one size (a series has one), in name order."""
    from PIL import Image

    kept = []
    for path in sorted(paths):
        with Image.open(path) as image:
            if image.size == size:
                kept.append(path)
    return kept


class Rollback(Exception):
    """Undo the benchmark's rows: it measures, it does not record."""


class Command(BaseCommand):
    help = (
        "Time upload-to-result for one DICOM series of N slices made from real 8-bit slices: read and "
        "store it as an upload does (decode, Hounsfield units, windowed model input, thumbnails), then "
        "classify it as a warm worker does (the model loaded beforehand, as a running worker has it). "
        "Nothing is kept: rows are rolled back and files written to a temporary folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="a folder of JPEG/PNG slices")
        parser.add_argument("--slices", type=int, default=200)

    def handle(self, *args: Any, **options: Any) -> None:
        from pacs.synthetic import ct_series

        images = _same_size(p for p in options["data"].rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise CommandError(f"no 512×512 JPEG or PNG slices under {options['data']}")
        count = options["slices"]
        started = time.perf_counter()
        files = ct_series([images[i % len(images)] for i in range(count)], window=(40.0, 400.0))
        build = time.perf_counter() - started
        megabytes = sum(len(data) for _, data in files) / 1e6
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
            timings = self._measure(files)
        total = timings["ingest"] + timings["classify"]
        self.stdout.write(
            f"{count}-slice CT series ({megabytes:.0f} MB of DICOM; built in {build:.1f} s, not counted):\n"
            f"  model load (once per worker)   {timings['load']:6.1f} s\n"
            f"  upload: read and store         {timings['ingest']:6.1f} s\n"
            f"  worker: classify and heatmaps  {timings['classify']:6.1f} s\n"
            f"  upload to stored result        {total:6.1f} s  ({count / total:.1f} slices/s)"
        )

    def _measure(self, files: list[tuple[str, bytes]]) -> dict[str, float]:
        from cases.models import CareTeam, Patient, Prediction
        from cases.services.prediction_runs import prediction_execute
        from inference.services import model_version_active, model_version_predictor
        from pacs.ingest import study_upload

        timings: dict[str, float] = {}
        started = time.perf_counter()
        model_version_predictor(model_version_active())
        timings["load"] = time.perf_counter() - started
        try:
            with transaction.atomic():
                team = CareTeam.objects.create(name="dicom_upload_cost (rolled back)")
                patient = Patient.objects.create(
                    team=team, mrn="P-1", name="Benchmark", birth_date=date(1961, 3, 14), sex="F"
                )
                uploads = [SimpleUploadedFile(name, data, "application/dicom") for name, data in files]
                started = time.perf_counter()
                scans = study_upload(patient=patient, files=uploads, uploaded_by=None)
                timings["ingest"] = time.perf_counter() - started
                prediction = Prediction.objects.get(scan=scans[0])
                started = time.perf_counter()
                prediction_execute(prediction_id=prediction.pk)
                timings["classify"] = time.perf_counter() - started
                prediction.refresh_from_db()
                if prediction.status != "succeeded":
                    raise CommandError(f"the prediction ended {prediction.status}: {prediction.error}")
                raise Rollback
        except Rollback:
            pass
        return timings
