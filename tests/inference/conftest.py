from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT.parent / "shared" / "datasets" / "iqothnccd"
SHIPPED_WEIGHTS = ROOT / "inference" / "weights"


@pytest.fixture
def dataset_dir() -> Path:
    if not (DATASET / "manifest.csv").exists():
        pytest.skip(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}; these tests need real slices")
    return DATASET


def slice_bytes(relative: str) -> bytes:
    path = DATASET / relative
    if not path.exists():
        pytest.skip(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}; this test needs {relative}")
    return path.read_bytes()
