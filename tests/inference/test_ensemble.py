"""A tiny cross-validation run, end to end: device entry point -> build_ensemble -> a complete
card -> a registered model version whose ensemble classifies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from inference.artifacts import CARD_MARKDOWN_FILE
from inference.preprocessing import CLASS_NAMES, inspect, preprocess

from .conftest import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_a_tiny_cross_validation_run_writes_a_complete_card(tmp_path: Path) -> None:
    from inference.services import model_version_register
    from inference.training import device_cv
    from inference.training.cv import prepare_device_data

    data = tmp_path / "data"
    tiny_dataset(data)
    prepare_device_data(data, tmp_path / "device", sizes=(32,), k=2, echo=lambda _: None)
    run = tmp_path / "run"
    args = ["--data", str(tmp_path / "device" / "data_32.npz"), "--out", str(run), "--epochs", "2"]
    assert device_cv.main([*args, "--batch-size", "8"]) == device_cv.EXIT_COMPLETED

    other = tmp_path / "other"  # another learning rate on the same folds, for the comparison table
    assert (
        device_cv.main([*args[:3], str(other), *args[4:], "--batch-size", "8", "--learning-rate", "3e-4"])
        == 0
    )

    model_dir = tmp_path / "model"
    out = io.StringIO()
    words = ["build_ensemble", str(run), "--data", str(data), "--out", str(model_dir), "--name", "tiny"]
    call_command(*words, "--compare", str(other), stdout=out)

    card = json.loads((model_dir / "card.json").read_text())
    for key in ("members", "image_size", "cross_validation", "calibration", "study_rule", "assessability"):
        assert key in card, key
    assert [m["file"] for m in card["members"]] == ["member1.keras", "member2.keras"]
    assert card["cross_validation"]["folds"] == 2 and 1 <= card["cross_validation"]["chosen_epoch"] <= 2
    assert card["calibration"]["temperature"] > 0 and card["calibration"]["ece_after"] >= 0
    assert set(card["slice_metrics"]["recall"]) == set(CLASS_NAMES)
    for figure in ("sensitivity", "specificity"):
        assert set(card["study_metrics"][figure]) == {"pooled", "mean", "sd"}
    assert card["assessability"]["catch_rate"] > 0.5 and card["assessability"]["limits"]
    assert any(step.startswith("python manage.py build_ensemble") for step in card["reproduce"])
    assert [run["run"] for run in card["comparisons"]] == ["run", "other"]
    assert card["comparisons"][0]["shipped"] and not card["comparisons"][1]["shipped"]
    text = (model_dir / CARD_MARKDOWN_FILE).read_text()
    assert "out-of-fold" in text and "calibration error" in text and "Reproduce" in text
    assert "## 95% intervals" in text
    for entry in card["intervals"]["figures"].values():
        assert entry["value"] is None or entry["low"] <= entry["value"] <= entry["high"]
    for plot in card["plots"].values():
        assert (model_dir / plot).read_bytes()[:4] == b"\x89PNG"

    version = model_version_register(weights_dir=model_dir)
    assert set(version.files) == {"member1.keras", "member2.keras"}
    assert version.metrics["malignant_sensitivity"] is not None

    from inference.services import model_version_predictor

    predictor = model_version_predictor(version)
    first = next(iter(sorted(data.rglob("*.png"))))
    probabilities = predictor.predict([preprocess(inspect(first.read_bytes()).image, size=32)])
    assert probabilities.shape == (1, 3) and probabilities.sum() == pytest.approx(1.0)


def test_given_members_must_hold_the_runs_fold_weights(tmp_path: Path) -> None:
    from django.core.management.base import CommandError

    from inference.training import device_cv
    from inference.training.cv import convert_to_keras, prepare_device_data

    data = tmp_path / "data"
    tiny_dataset(data)
    prepare_device_data(data, tmp_path / "device", sizes=(32,), k=2, echo=lambda _: None)
    runs = {}
    for name, rate in (("a", "1e-3"), ("b", "3e-4")):
        runs[name] = tmp_path / name
        args = ["--data", str(tmp_path / "device" / "data_32.npz"), "--out", str(runs[name]), "--epochs", "1"]
        assert device_cv.main([*args, "--batch-size", "8", "--learning-rate", rate]) == 0
    wrong = convert_to_keras(runs["b"], tmp_path / "b-keras", echo=lambda _: None)
    out = tmp_path / "m"
    words = ["build_ensemble", str(runs["a"]), "--data", str(data), "--out", str(out), "--name", "x"]
    with pytest.raises(CommandError, match="does not hold fold 0"):
        call_command(*words, "--members", *map(str, wrong), stdout=io.StringIO())
    assert not out.exists()
