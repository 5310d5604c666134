"""Patient-disjoint split, metrics, shortcut check and a tiny end-to-end training run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.preprocessing import CLASS_NAMES
from inference.training import (
    Record,
    class_weights_for,
    classification_metrics,
    limit_records,
    patient_block_split,
    read_manifest,
    size_shortcut_check,
    unique_records,
)


def _patients(n_patients: int, slices: int, seed: int) -> np.ndarray:
    """Grayscale stacks where each 'patient' is a different random pattern with slight noise per
    slice: neighbours within a patient correlate strongly, across patients hardly at all."""
    rng = np.random.default_rng(seed)
    stacks = []
    for _ in range(n_patients):
        base = rng.integers(0, 256, (256, 256)).astype(np.float64)
        for _ in range(slices):
            stacks.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255))
    return np.array(stacks, dtype=np.uint8)


def _records(label: str, n: int, *, start: int = 1, width: int = 512) -> list[Record]:
    return [
        Record(f"{label}/{label} ({i}).png", label, i, width, 512, f"{label}{i:04d}", "")
        for i in range(start, start + n)
    ]


def test_split_is_contiguous_disjoint_and_ordered_within_each_class() -> None:
    records = _records("normal", 40) + _records("benign", 20) + _records("malignant", 30)
    images = np.concatenate([_patients(8, 5, 0), _patients(4, 5, 1), _patients(6, 5, 2)])
    assignment, split = patient_block_split(records, images)
    assert set(np.unique(assignment)) == {0, 1, 2}
    for label in CLASS_NAMES:
        seqs = {
            s: sorted(
                r.sequence for r, a in zip(records, assignment, strict=True) if r.label == label and a == s
            )
            for s in range(3)
        }
        assert all(seqs[s] for s in range(3)), f"{label}: every block non-empty"
        # train < val < test, each a contiguous run of sequence numbers
        assert max(seqs[0]) < min(seqs[1]) and max(seqs[1]) < min(seqs[2])
        for block in seqs.values():
            assert block == list(range(block[0], block[-1] + 1))
    assert (
        split["classes"]["normal"]["train"]["count"]
        + split["classes"]["normal"]["val"]["count"]
        + split["classes"]["normal"]["test"]["count"]
        == 40
    )


def test_split_cuts_between_patients_not_through_one() -> None:
    # 10 patients of 10 slices: a 70/15/15 cut at 70 and 85 would cut patient 9 in half; the cut
    # must move to a patient boundary (80 or 90), found from neighbour similarity alone.
    records = _records("normal", 100)
    images = _patients(10, 10, 3)
    assignment, split = patient_block_split(records, images, fractions=(0.7, 0.15, 0.15), snap_window=0.06)
    for start in range(0, 100, 10):
        assert len(set(assignment[start : start + 10])) == 1, f"patient at {start} straddles a cut"
    assert all(cut["neighbour_correlation"] < 0.5 for cut in split["classes"]["normal"]["cuts"])
    assert split["leakage_check"]["test_slices_with_nearest_train_correlation_over_0.95"] == 0


def test_duplicates_are_counted_once_and_limit_keeps_lowest_sequences() -> None:
    records = _records("benign", 5)
    records.append(Record("benign/copy.png", "benign", 6, 512, 512, "benign0001", "benign/benign (1).png"))
    records.append(Record("benign/copy2.png", "benign", 7, 512, 512, "benign0002", ""))  # same bytes
    unique = unique_records(records)
    assert [r.sequence for r in unique] == [1, 2, 3, 4, 5]
    assert [r.sequence for r in limit_records(unique + _records("normal", 9), 3)] == [1, 2, 3, 1, 2, 3]


def test_class_weights_are_balanced() -> None:
    weights = class_weights_for(np.array([0] * 60 + [1] * 10 + [2] * 30))
    assert weights[1] == pytest.approx(100 / (3 * 10))
    assert weights[0] * 60 == pytest.approx(weights[1] * 10) == pytest.approx(weights[2] * 30)


def test_metrics_on_a_known_confusion() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 0, 0, 1, 1, 0, 2, 2]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3, abs=1e-4)
    assert m["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"]["benign"]["precision"] == 0.5
    assert m["per_class"]["malignant"]["roc_auc"] == 1.0
    assert m["per_class"]["normal"]["support"] == 4


def test_size_shortcut_check_detects_a_size_only_signal() -> None:
    # Malignant images are wide and everything else square: width alone finds malignant.
    records = _records("normal", 20) + _records("benign", 20) + _records("malignant", 20, width=801)
    assignment = np.array(([0] * 14 + [1] * 3 + [2] * 3) * 3)
    result = size_shortcut_check(records, assignment)
    assert result["features"] == ["width", "height"]
    assert result["recall"]["malignant"] == 1.0
    assert result["balanced_accuracy"] < 0.75  # normal and benign cannot both be right


def test_manifest_is_read_with_sequences_and_duplicates(dataset_dir: Path) -> None:
    records = read_manifest(dataset_dir)
    assert len(records) == 939
    assert {r.label for r in records} == set(CLASS_NAMES)
    assert len(records) - len(unique_records(records)) == 27
    first_benign = next(r for r in records if r.path == "benign/Bengin case (1).jpg")
    assert first_benign.sequence == 1 and first_benign.label == "benign"


def _synthetic_dataset(root: Path, per_class: int = 8) -> Path:
    """A labelled folder without manifest.csv: class subfolders of small PNGs, one class bright,
    one dark, one striped, and a duplicate file."""
    rng = np.random.default_rng(0)
    for c, label in enumerate(CLASS_NAMES):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(1, per_class + 1):
            pixels = rng.integers(0, 60, (64, 64)) + 80 * c
            if label == "malignant":
                pixels[:, ::8] = 255
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(folder / f"{label} case ({i}).png")
    (root / "normal" / f"normal case ({per_class + 1}).png").write_bytes(
        (root / "normal" / "normal case (1).png").read_bytes()
    )
    return root


def test_labelled_folder_without_manifest_is_read(tmp_path: Path) -> None:
    data = _synthetic_dataset(tmp_path / "data")
    records = read_manifest(data)
    assert len(records) == 25
    duplicates = [r for r in records if r.duplicate_of]
    assert [(r.path, r.duplicate_of) for r in duplicates] == [
        ("normal/normal case (9).png", "normal/normal case (1).png")
    ]
    assert sorted(r.sequence for r in records if r.label == "benign") == list(range(1, 9))


@pytest.mark.slow
def test_tiny_training_run_writes_a_complete_card(tmp_path: Path) -> None:
    from django.core.management import call_command

    from inference.predictor import Predictor

    data = _synthetic_dataset(tmp_path / "data")
    out = tmp_path / "model"
    output = io.StringIO()
    call_command(
        "train_model",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--variant",
        "published",
        "--no-cache",
        stdout=output,
    )
    log = output.getvalue()
    assert "epoch   1/1" in log and "val_loss" in log

    for name in ("model.keras", "card.json", "MODEL_CARD.md", "training_curves.png", "confusion_matrix.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for plot in ("training_curves.png", "confusion_matrix.png"):
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.size[0] >= 300

    card = json.loads((out / "card.json").read_text())
    for key in (
        "name",
        "created_at",
        "class_names",
        "preprocessing",
        "architecture",
        "weights",
        "dataset",
        "split",
        "counts",
        "training",
        "metrics",
        "validation_metrics",
        "shortcut_check",
        "plots",
        "command",
        "environment",
        "caveats",
    ):
        assert key in card, key
    assert card["class_names"] == list(CLASS_NAMES)
    assert card["dataset"]["duplicates_dropped"] == 1 and card["dataset"]["images_used"] == 24
    assert card["dataset"]["doi"] == "10.17632/bhmdr45bh2"
    assert card["architecture"]["parameters_without_dropout"] == 347_715
    assert sum(card["counts"]["test"].values()) > 0
    assert sum(sum(v.values()) for v in card["counts"].values()) == 24
    for split in ("train", "val", "test"):
        assert all(card["split"]["classes"][c][split]["count"] > 0 for c in CLASS_NAMES)
    metrics = card["metrics"]
    for key in ("accuracy", "balanced_accuracy", "per_class", "confusion_matrix", "roc_auc_ovr_macro"):
        assert key in metrics
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    assert sum(map(sum, metrics["confusion_matrix"])) == sum(card["counts"]["test"].values())
    assert 0 <= card["shortcut_check"]["balanced_accuracy"] <= 1
    assert card["training"]["epochs_run"] == 1 and len(card["training"]["history"]["loss"]) == 1
    assert "python manage.py train_model --data " in card["command"]
    assert card["command"].startswith("TF_INTRA_OP_THREADS=")
    assert "--epochs 1" in card["command"] and "--variant published" in card["command"]

    from inference.artifacts import file_sha256

    assert card["weights"]["sha256"] == file_sha256(out / "model.keras")
    markdown = (out / "MODEL_CARD.md").read_text()
    for text in (
        "balanced accuracy",
        "Alyasriy",
        "10.17632/bhmdr45bh2",
        card["weights"]["sha256"],
        card["command"],
        "shortcut",
        "Caveats",
        "training_curves.png",
    ):
        assert text in markdown, text

    # The directory it wrote is a loadable model.
    predictor = Predictor(out)
    assert predictor.sha256 == card["weights"]["sha256"] and predictor.name == card["name"]

    # Other runs on the same split can be shown beside it; runs on another split cannot.
    from inference.training import add_comparisons

    other = tmp_path / "other"
    other.mkdir()
    (other / "card.json").write_text(json.dumps({**card, "name": "baseline-run"}))
    add_comparisons(out, [other])
    markdown = (out / "MODEL_CARD.md").read_text()
    assert "Compared with other runs on the same split" in markdown and "baseline-run" in markdown
    assert json.loads((out / "card.json").read_text())["comparisons"][0]["name"] == "baseline-run"
    moved = json.loads(json.dumps(card))
    moved["split"]["classes"]["normal"]["test"]["sequence_range"] = [1, 2]
    (other / "card.json").write_text(json.dumps(moved))
    with pytest.raises(ValueError, match="another split"):
        add_comparisons(out, [other])

    from inference.training import add_notes

    add_notes(out, ["Benign recall rests on two patients."])
    assert "## What this means" in (out / "MODEL_CARD.md").read_text()
    assert json.loads((out / "card.json").read_text())["notes"] == ["Benign recall rests on two patients."]
