from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_WEIGHTS = ROOT / "inference" / "weights"
