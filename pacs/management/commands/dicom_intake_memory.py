"""python manage.py dicom_intake_memory [--parts 40]"""

from __future__ import annotations

import math
import tempfile
import tracemalloc
from collections.abc import Callable
from io import BytesIO
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.test import override_settings


def _peak(action: Callable[[], Any]) -> int:
    """The most memory `action` held at once (tracemalloc: Python objects and numpy arrays)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            action()
        except Exception as error:  # a refusal is what some cases measure
            from pacs.reading import DicomRefused

            if not isinstance(error, DicomRefused):
                raise
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


class Command(BaseCommand):
    help = (
        "Peak memory of DICOM intake, measured with tracemalloc: the largest image the limits allow "
        "(UPLOAD_MAX_PIXELS) read, checked and made into its stored files; an RLE bomb refused from its "
        "header; a STOW-RS body parsed part by part. Files go to a temporary folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--parts", type=int, default=40, help="1024×1024 instances in the STOW-RS body")

    def handle(self, *args: Any, **options: Any) -> None:
        from pacs import ingest
        from pacs.dicomweb import _parts
        from pacs.reading import RequestBudget, read_series
        from pacs.synthetic import ct_series, rle_bomb

        MB = 1024 * 1024
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
            side = math.isqrt(settings.UPLOAD_MAX_PIXELS)
            image = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
            [(_, data)] = ct_series([image])
            del image
            source = tempfile.TemporaryFile()
            source.write(data)
            size = len(data)
            del data

            def largest() -> None:
                [series] = read_series([("largest.dcm", source)], max_slices=1)
                ingest._prepared(series.instances[0], [])

            peak = _peak(largest)
            self.stdout.write(
                f"largest allowed image {side}×{side} ({side * side / 1e6:.1f} Mpx, "
                f"file {size / MB:.0f} MiB, "
                f"{side * side * 2 / MB:.0f} MiB as int16): peak {peak / MB:.0f} MiB = "
                f"{peak / (side * side):.1f} bytes per pixel"
            )

            bomb = rle_bomb(8192)
            peak = _peak(lambda: read_series([("bomb.dcm", bomb)], max_slices=1))
            self.stdout.write(
                f"RLE bomb 8192×8192 ({len(bomb) / MB:.1f} MiB, 128 MiB decoded) refused from its header: "
                f"peak {peak / MB:.1f} MiB"
            )

            parts = options["parts"]
            [(_, instance)] = ct_series([np.zeros((1024, 1024), dtype=np.uint8)])
            body = BytesIO()
            for _ in range(parts):
                body.write(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + instance + b"\r\n")
            body.write(b"--b--\r\n")
            length = body.tell()
            body.seek(0)
            peak = _peak(lambda: _parts(body, b"b", RequestBudget(max_bytes=2 * length)))
            self.stdout.write(
                f"STOW-RS body of {parts} instances ({length / MB:.0f} MiB) parsed and spooled: "
                f"peak {peak / MB:.1f} MiB"
            )
