"""Management commands: classify (JSON and table), evaluate_model, register_model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from inference.artifacts import version_sha256
from inference.models import ModelVersion
from inference.preprocessing import CLASS_NAMES

from .conftest import SHIPPED_WEIGHTS
from .test_services import make_weights_dir

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def shipped(settings):
    settings.INFERENCE_WEIGHTS_DIR = SHIPPED_WEIGHTS
    return SHIPPED_WEIGHTS


def _png(path: Path, size: tuple[int, int] = (300, 200), value: int = 180) -> Path:
    image = Image.new("L", size, 0)
    image.paste(value, (50, 40, 150, 160))
    image.save(path, format="PNG")
    return path


@pytest.mark.slow
def test_classify_json_prints_one_object_per_file_and_fails_on_a_bad_one(
    shipped, dataset_dir, tmp_path
) -> None:
    good = dataset_dir / "malignant" / "Malignant case (1).jpg"
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    also_good = dataset_dir / "normal" / "Normal case (1).jpg"
    drawing = _png(tmp_path / "drawing.png")  # a white box on black: readable, but no CT slice
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 4 files could not be classified"):
        call_command(
            "classify", str(good), str(not_image), str(also_good), str(drawing), "--json", stdout=out
        )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["file"] for line in lines] == [str(good), str(not_image), str(also_good), str(drawing)]
    active = ModelVersion.objects.get(is_active=True)
    for line in (lines[0], lines[2]):
        assert line["assessable"] is True and "reason" not in line
        assert line["label"] in CLASS_NAMES
        assert list(line["probabilities"]) == list(CLASS_NAMES)
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        assert line["model_version"] == active.name
    assert lines[1]["error"] == "not a JPEG or PNG image"
    assert "label" not in lines[1]
    assert lines[3]["assessable"] is False and lines[3]["reason"]
    assert "label" not in lines[3] and "probabilities" not in lines[3]


@pytest.mark.slow
def test_classify_table_output(shipped, dataset_dir, tmp_path) -> None:
    good = dataset_dir / "benign" / "Bengin case (1).jpg"
    out = io.StringIO()
    call_command("classify", str(good), stdout=out)
    text = out.getvalue()
    assert "model version:" in text and "normal" in text and "malignant" in text
    assert str(good) in text


def test_classify_reports_missing_and_empty_files_without_loading_tensorflow(shipped, tmp_path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 of 2 files"):
        call_command("classify", str(tmp_path / "missing.jpg"), str(empty), "--json", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["error"] == "no such file"
    assert lines[1]["error"] == "the file is empty"


def test_classify_without_an_active_version_is_a_clear_error(settings, tmp_path) -> None:
    settings.INFERENCE_WEIGHTS_DIR = tmp_path / "nothing-here"
    ModelVersion.objects.create(name="off", sha256="0" * 64, weights_dir="x", is_active=False)
    with pytest.raises(CommandError, match="no model version is active"):
        call_command("classify", str(_png(tmp_path / "s.png")), "--json", stdout=io.StringIO())


def test_register_model_command_registers_and_activates(tmp_path) -> None:
    directory = make_weights_dir(tmp_path / "m", "my-model", b"weights")
    out = io.StringIO()
    call_command("register_model", str(directory), "--activate", stdout=out)
    version = ModelVersion.objects.get()
    assert version.name == "my-model" and version.is_active
    assert "my-model (active)" in out.getvalue()
    with pytest.raises(CommandError, match="no model.keras"):
        call_command("register_model", str(tmp_path), stdout=io.StringIO())


@pytest.mark.slow
def test_evaluate_model_prints_metrics_for_a_labelled_folder(shipped, tmp_path) -> None:
    data = tmp_path / "data"
    for c, label in enumerate(CLASS_NAMES):
        (data / label).mkdir(parents=True)
        for i in range(2):
            _png(data / label / f"{label} ({i + 1}).png", (200 + 10 * i, 200), value=100 + 50 * c)
    out = io.StringIO()
    call_command(
        "evaluate_model",
        "--data",
        str(data),
        "--weights",
        str(shipped),
        "--json",
        stdout=out,
        stderr=io.StringIO(),
    )
    metrics = json.loads(out.getvalue())
    assert metrics["n"] == 6
    assert sum(map(sum, metrics["confusion_matrix"])) == 6
    assert 0 <= metrics["balanced_accuracy"] <= 1
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    card = json.loads((shipped / "card.json").read_text())
    assert metrics["weights_sha256"] == version_sha256({m["file"]: m["sha256"] for m in card["members"]})

    out = io.StringIO()
    call_command(
        "evaluate_model", "--data", str(data), "--weights", str(shipped), stdout=out, stderr=io.StringIO()
    )
    assert "balanced accuracy" in out.getvalue() and "confusion matrix" in out.getvalue()


def test_evaluate_model_refuses_a_missing_folder(tmp_path) -> None:
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("evaluate_model", "--data", str(tmp_path / "nope"), stdout=io.StringIO())


def test_evaluate_model_has_no_held_out_block_for_a_cross_validated_model(shipped, dataset_dir) -> None:
    with pytest.raises(CommandError, match="cross-validation"):
        args = ["--data", str(dataset_dir), "--weights", str(shipped), "--split", "test"]
        call_command("evaluate_model", *args, stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.slow
def test_the_shipped_card_is_reproduced_from_its_out_of_fold_predictions(shipped, dataset_dir) -> None:
    from inference.training.ensemble import CV_PREDICTIONS, card_from_predictions

    card = json.loads((shipped / "card.json").read_text())
    cv = dict(np.load(shipped / CV_PREDICTIONS, allow_pickle=False))
    again = card_from_predictions(cv, data_dir=dataset_dir, echo=lambda _: None)
    keys = ("calibration", "study_rule", "slice_metrics", "study_metrics", "metrics", "assessability")
    for key in (*keys, "intervals"):  # intervals: a bootstrap with a fixed seed, so reproducible
        assert _close(json.loads(json.dumps(again[key])), card[key]), key


def _close(found, expected) -> bool:
    """Equal, floats to 1e-6 relative (fitting sums in a BLAS-dependent order)."""
    if isinstance(expected, dict):
        return (
            isinstance(found, dict)
            and found.keys() == expected.keys()
            and all(_close(found[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return isinstance(found, list) and len(found) == len(expected) and all(map(_close, found, expected))
    if isinstance(expected, float):
        return found == pytest.approx(expected, rel=1e-6, abs=1e-9)
    return found == expected


@pytest.mark.slow
def test_serving_reproduces_each_members_out_of_fold_predictions(shipped, dataset_dir) -> None:
    """Serving (bytes -> inspect -> preprocess -> Keras under TensorFlow) and training (prepared
    arrays -> Keras under JAX on the GPU) see the same pixels and give the same probabilities."""
    import keras

    from inference.preprocessing import gray_to_input, inspect, preprocess_gray
    from inference.training.ensemble import CV_PREDICTIONS

    card = json.loads((shipped / "card.json").read_text())
    cv = np.load(shipped / CV_PREDICTIONS, allow_pickle=False)
    for member in card["members"][:2]:
        model = keras.models.load_model(shipped / member["file"], compile=False)
        held_out = np.flatnonzero(cv["fold_of"] == member["fold"] - 1)[:3]
        images = [
            preprocess_gray(
                inspect((dataset_dir / str(cv["paths"][i])).read_bytes()).image, size=card["image_size"]
            )
            for i in held_out
        ]
        probabilities = np.asarray(model(gray_to_input(np.stack(images)), training=False))
        assert np.abs(probabilities - cv["oof_probs"][held_out]).max() < 1e-4


@pytest.mark.slow
def test_serving_cost_times_a_study_with_the_active_version(shipped, dataset_dir) -> None:
    out = io.StringIO()
    call_command("serving_cost", "--data", str(dataset_dir / "malignant"), "--slices", "3", stdout=out)
    text = out.getvalue()
    assert "3 slices, 3 assessable" in text and "a study, warm worker" in text
    assert ModelVersion.objects.get(is_active=True).name in text
