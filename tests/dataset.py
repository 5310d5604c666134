"""The shared IQ-OTH/NCCD slices that tests on real CT need, and what happens where they are absent:
a local run skips those tests, saying why; CI (`LUNGPORTAL_REQUIRE_DATASET=1`, set by `.ci/run`)
fails them, so that a run without the dataset cannot pass green.

`LUNGPORTAL_DATASET_DIR` points elsewhere (the tests of this rule point it at nothing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATASET = Path(os.environ.get("LUNGPORTAL_DATASET_DIR") or ROOT.parent / "shared" / "datasets" / "iqothnccd")
REQUIRE = "LUNGPORTAL_REQUIRE_DATASET"


def dataset_required() -> bool:
    return os.environ.get(REQUIRE, "").strip().lower() not in ("", "0", "false", "no")


def dataset_missing(reason: str) -> NoReturn:
    """Skip the test for `reason`, or, where the dataset is required, fail it."""
    if dataset_required():
        pytest.fail(f"{reason} ({REQUIRE} is set: this run needs the dataset)", pytrace=False)
    pytest.skip(reason)
