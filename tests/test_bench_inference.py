"""The inference benchmark runs end to end on real slices and returns positive figures."""

from __future__ import annotations

import pytest

from bench.inference import run
from bench.report import Section

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_quick_inference_benchmark_reports_every_path_with_positive_figures(dataset_dir):
    section = run(quick=True, data_dir=dataset_dir)

    assert isinstance(section, Section)
    figures = section.figures
    for name in (
        "serving_slices_per_s",
        "predict_per_image_slices_per_s",
        "reload_per_request_slices_per_s",
        "arithmetic_limit_slices_per_s",
        "tflite_slices_per_s",
        "worker_startup_s",
        "peak_gflops",
    ):
        assert figures[name] > 0, name
    assert figures["slices"] == 24
    assert 0 <= figures["tflite_max_abs_diff"] <= 1e-4
    assert all(ratio > 0 for ratio in figures["ratios"].values())
    assert set(figures["batch_size_slices_per_s"]) >= {"1", "8", "16", "32"}
    assert "| path | slices/s | ratio |" in section.markdown


def test_inference_benchmark_skips_saying_why_without_the_dataset(tmp_path):
    section = run(quick=True, data_dir=tmp_path / "absent")

    assert section.figures == {"skipped": True}
    assert "Skipped" in section.markdown
