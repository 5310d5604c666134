"""Patient-grouped cross-validation: the folds, the device data files, the training loop, its
outputs and their conversion to .keras (TensorFlow backend, tiny synthetic images)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from inference.preprocessing import CLASS_NAMES, preprocess_gray
from inference.training.cv import (
    _Budget,
    fold_summary,
    grouped_folds,
    load_device_data,
    prepare_device_data,
    weighted_log_loss,
)
from inference.training.data import Record, load_images, read_manifest, unique_records
from tests.dataset import DATASET, dataset_missing

from .conftest import tiny_dataset


def _patients(lengths_by_class: dict[str, list[int]], size: int = 32, seed: int = 0):
    """Records numbered consecutively within each class, slices of one patient near-identical
    (a shared random picture plus a little noise). Returns records, images and patient ids."""
    rng = np.random.default_rng(seed)
    records, images, patient_of = [], [], []
    patient = 0
    for label, lengths in lengths_by_class.items():
        sequence = 0
        for length in lengths:
            base = rng.integers(0, 256, (size, size)).astype(np.float64)
            for _ in range(length):
                sequence += 1
                noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
                records.append(
                    Record(
                        f"{label}/{sequence}.png", label, sequence, size, size, f"{patient}-{sequence}", ""
                    )
                )
                images.append(noisy)
                patient_of.append(patient)
            patient += 1
    return records, np.stack(images), np.array(patient_of)


def _assert_contiguous_folds(records, folds: np.ndarray, k: int) -> None:
    assert folds.shape == (len(records),)
    assert set(folds.tolist()) == set(range(k)), "every record in exactly one of the k folds"
    for label in {r.label for r in records}:
        order = sorted(
            (i for i, r in enumerate(records) if r.label == label), key=lambda i: records[i].sequence
        )
        in_order = folds[order]
        # Contiguous blocks in sequence order: fold numbers never go back, and none is skipped.
        assert (np.diff(in_order) >= 0).all(), f"{label}: a fold is not one contiguous block"
        assert set(in_order.tolist()) == set(range(k)), f"{label}: a fold misses the class"


def test_grouped_folds_are_contiguous_per_class_and_keep_patients_whole() -> None:
    lengths = {
        "normal": [5, 7, 6, 8, 4, 6, 7, 5, 6, 6],
        "benign": [4, 5, 3, 6, 4, 5, 4, 3, 6, 5],
        "malignant": [9, 7, 8, 6, 10, 7, 8, 9, 6, 8, 7, 9],
    }
    records, images, patient_of = _patients(lengths)
    folds = grouped_folds(records, images, k=5, snap_window=0.08)
    _assert_contiguous_folds(records, folds, 5)
    for patient in np.unique(patient_of):
        assert len(set(folds[patient_of == patient].tolist())) == 1, f"patient {patient} straddles two folds"
    # Blocks of about equal size within each class.
    for label in lengths:
        counts = np.bincount(folds[[r.label == label for r in records]], minlength=5)
        assert counts.max() - counts.min() <= 0.25 * counts.sum()


def test_grouped_folds_refuse_a_class_smaller_than_k() -> None:
    records, images, _ = _patients({"normal": [3, 3], "benign": [2], "malignant": [3, 3]})
    with pytest.raises(ValueError, match="fewer than 5 folds"):
        grouped_folds(records, images, k=5)


def test_grouped_folds_on_the_shared_dataset(tmp_path: Path) -> None:
    if not (DATASET / "manifest.csv").exists():
        dataset_missing(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}")
    records = unique_records(read_manifest(DATASET))
    images = load_images(DATASET, records, cache_dir=tmp_path, echo=lambda _: None)
    folds = grouped_folds(records, images, k=5)
    _assert_contiguous_folds(records, folds, 5)
    assert len(records) == len({r.sha256 for r in records}), "duplicates counted once"
    summary = fold_summary(records, folds, images)
    for label, description in summary["classes"].items():
        shares = np.array([block["count"] for block in description["folds"]]) / description["n"]
        assert shares.min() > 0.1 and shares.max() < 0.3, f"{label}: unbalanced folds {shares}"
        # Each cut lies between two dissimilar slices (neighbours of one patient correlate ~0.8).
        assert max(description["cut_neighbour_correlation"]) < 0.6, label


def test_weighted_log_loss_weights_classes() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 2])
    plain = -np.log([0.9, 0.8, 0.6])
    assert weighted_log_loss(probs, labels, np.ones(3)) == pytest.approx(plain.mean())
    weights = np.array([1.0, 2.0, 3.0])
    assert weighted_log_loss(probs, labels, weights) == pytest.approx((plain * weights).sum() / 6)


def test_budget_cuts_every_fold_to_what_fits_and_stops_folds_that_cannot_finish() -> None:
    notes: list[str] = []
    budget = _Budget(
        epochs=40, n_folds=5, deadline=time.monotonic() + 100, adapt=True, min_epochs=5, echo=notes.append
    )
    assert budget.after_epoch(0, 1, 30.0)  # the first epoch compiles: not an estimate
    assert budget.epochs == 40
    budget.after_epoch(0, 2, 1.0)  # 1.1 s per epoch with the margin: (100/1.1 + 2) / 5 -> 18
    assert 15 <= budget.epochs <= 18 and notes
    assert budget.can_start_fold()
    late = _Budget(epochs=10, n_folds=2, deadline=time.monotonic() + 5, adapt=False, min_epochs=5, echo=print)
    late.times = [30.0, 1.0, 1.0]
    assert not late.can_start_fold()
    assert not late.after_epoch(1, 2, 1.0)


def test_prepared_data_rebuilds_derived_slices_exactly(tmp_path: Path) -> None:
    tiny_dataset(tmp_path / "data")
    files = prepare_device_data(
        tmp_path / "data", tmp_path / "device", sizes=(32, 64), k=2, echo=lambda _: None
    )
    assert [f.name for f in files] == ["data_64.npz", "data_32.npz"]
    with np.load(tmp_path / "device" / "data_32.npz") as small:
        assert len(small["images"]) == 3, "only the padded slices are stored in the smaller file"
    data = load_device_data(tmp_path / "device" / "data_32.npz", echo=lambda _: None)
    assert data.derived == 33 and data.crc_mismatches == 0
    for path, gray in zip(data.paths, data.gray, strict=True):
        assert np.array_equal(gray, preprocess_gray((tmp_path / "data" / path).read_bytes(), size=32))
    _assert_contiguous_folds(
        [
            Record(str(p), CLASS_NAMES[lab], int(s), 0, 0, "", "")
            for p, lab, s in zip(data.paths, data.labels, data.sequences, strict=True)
        ],
        data.fold_of,
        2,
    )


@pytest.mark.slow
def test_bn_gap_variant_layers_and_grad_cam() -> None:
    import tensorflow as tf

    from inference.network import VARIANT_DESCRIPTIONS, VARIANTS, build_model, last_conv_layer_name
    from inference.predictor import _gradcam_function

    assert "bn_gap" in VARIANTS and "bn_gap" in VARIANT_DESCRIPTIONS
    model = build_model("bn_gap", input_size=384)
    assert tuple(model.input_shape) == (None, 384, 384, 3)
    assert model.count_params() == 324_579
    names = [layer.name for layer in model.layers]
    for i in range(1, 7):
        assert (
            names.index(f"conv{i}")
            < names.index(f"bn{i}")
            < names.index(f"relu{i}")
            < names.index(f"pool{i}")
        )
    assert names[-4:] == ["gap", "dropout", "dense", "probabilities"]
    assert {"aug_contrast", "aug_brightness"} <= set(names)
    assert last_conv_layer_name(model) == "relu6"
    small = build_model("bn_gap", input_size=64)
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32")
    gradcam, conv_name = _gradcam_function(small, tf.TensorSpec((1, 64, 64, 3), tf.float32), 64)
    heat = gradcam(x).numpy()
    assert conv_name == "relu6" and heat.shape == (64, 64) and 0 <= heat.min() and heat.max() <= 1


def _synthetic_cv_data(n_per_class: int = 8, size: int = 32):
    """Classes told apart by where a bright block sits; two contiguous folds per class."""
    rng = np.random.default_rng(5)
    gray, labels, folds = [], [], []
    for c in range(len(CLASS_NAMES)):
        for i in range(n_per_class):
            image = rng.integers(0, 60, (size, size)).astype(np.uint8)
            image[4 + 8 * c : 12 + 8 * c, 8:24] = 220
            gray.append(image)
            labels.append(c)
            folds.append(0 if i < n_per_class // 2 else 1)
    return np.stack(gray), np.array(labels), np.array(folds)


@pytest.mark.slow
def test_run_cv_shapes_and_chosen_epoch() -> None:
    from inference.network import build_model
    from inference.training.cv import run_cv

    gray, labels, folds = _synthetic_cv_data()
    result = run_cv(gray, labels, folds, epochs=2, batch_size=8, echo=lambda _: None)
    n = len(labels)
    assert result.stop_reason == "completed"
    assert result.val_loss.shape == (2, 2) and np.isfinite(result.val_loss).all()
    assert 1 <= result.chosen_epoch <= 2
    assert result.mean_val_loss[result.chosen_epoch - 1] == result.mean_val_loss.min()
    assert result.oof_probs.shape == (n, 3) and np.allclose(result.oof_probs.sum(axis=1), 1, atol=1e-5)
    assert result.oof_features.shape == (n, 64) and np.isfinite(result.oof_features).all()
    assert result.oof_probs_by_epoch.shape == (n, 2, 3)
    assert np.array_equal(result.oof_probs, result.oof_probs_by_epoch[:, result.chosen_epoch - 1])
    assert sorted(result.fold_weights) == [0, 1]
    reference = build_model("bn_gap", input_size=32).get_weights()
    for weights in result.fold_weights.values():
        assert [w.shape for w in weights] == [w.shape for w in reference]


@pytest.mark.slow
def test_each_fold_starts_from_the_same_model_and_optimizer_state() -> None:
    import keras

    from inference.training.cv import _Trainer, class_weight_array

    gray, labels, _ = _synthetic_cv_data(4)
    trainer = _Trainer("bn_gap", 32, dropout=0.5, seed=1, learning_rate=1e-3, batch_size=4)
    initial = trainer.weights()
    index = np.arange(len(labels))
    trainer.train_epoch(gray, labels, index, class_weight_array(labels), np.random.default_rng(0))
    assert int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)) == 3
    assert any(not np.array_equal(a, b) for a, b in zip(initial, trainer.weights(), strict=True))
    trainer.reset()
    assert all(np.array_equal(a, b) for a, b in zip(initial, trainer.weights(), strict=True))
    assert int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)) == 0
    assert float(keras.ops.convert_to_numpy(trainer.optimizer.learning_rate)) == pytest.approx(1e-3)


@pytest.mark.slow
def test_device_entry_point_save_and_convert_round_trip(tmp_path: Path) -> None:
    from inference.training import device_cv
    from inference.training.cv import check_conversion, convert_to_keras, load_fold_weights

    tiny_dataset(tmp_path / "data")
    prepare_device_data(tmp_path / "data", tmp_path / "device", sizes=(32, 64), k=2, echo=lambda _: None)
    out = tmp_path / "out" / "s32"
    code = device_cv.main(
        [
            "--data",
            str(tmp_path / "device" / "data_32.npz"),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "8",
        ]
    )
    assert code == device_cv.EXIT_COMPLETED
    assert sorted(p.name for p in out.iterdir()) == ["cv_log.txt", "cv_result.npz", "weights.npz"]
    with np.load(out / "cv_result.npz") as result:
        assert int(result["image_size"]) == 32 and str(result["variant"]) == "bn_gap"
        assert result["val_loss"].shape == (2, 2) and result["mean_val_loss"].shape == (2,)
        assert result["oof_probs"].shape == (36, 3) and result["oof_features"].shape == (36, 64)
        assert list(result["completed_folds"]) == [0, 1] and len(result["paths"]) == 36
        assert 1 <= int(result["chosen_epoch"]) <= 2
    meta, weights = load_fold_weights(out)
    assert meta["variant"] == "bn_gap" and sorted(weights) == [0, 1]
    models = convert_to_keras(out, tmp_path / "keras", echo=lambda _: None)
    assert [m.name for m in models] == ["fold0.keras", "fold1.keras"]
    worst = check_conversion(
        out,
        tmp_path / "device" / "data_32.npz",
        models_dir=tmp_path / "keras",
        per_fold=18,
        echo=lambda _: None,
    )
    assert worst < 1e-5
    assert "E* =" in (out / "cv_log.txt").read_text()
