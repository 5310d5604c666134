"""Cross-validation on the device GPU: Keras 3 on the JAX backend, from a prepared data file.

    python3 -m inference.training.device_cv --data var/device/data_384.npz --out $OUT/s384 \\
        --epochs 40 --deadline-seconds 250 --require-gpu

Needs numpy, Pillow (to rebuild derived slices), Keras and its backend; no Django, TensorFlow or
scikit-learn. The data file comes from `python -m inference.training.cv prep` (run locally).
Writes `cv_result.npz`, `weights.npz` and `cv_log.txt` to --out (see `cv.save_cv`); turn them
into `.keras` files locally with `python -m inference.training.cv convert OUT_DIR`.

Every line is printed with a timestamp and flushed. With --deadline-seconds (from the process's
start) the run stops before the budget: the epochs of every fold are cut during the first fold
where they would not fit (unless --no-adapt-epochs), no fold starts or goes on that could not
finish, and the results of the folds completed are written all the same.

Precision (JAX): training at JAX's default (TF32 convolutions on the GPU, faster); the held-out
predictions, and so the OOF probabilities, at 'highest' (plain float32), which TensorFlow on the
CPU reproduces to ~1e-7 with the converted models.

Exit status: 0 all folds done; 1 stopped by the deadline (partial results written); 2 a fold
failed (partial results written); 3 no GPU where --require-gpu asked for one (nothing written).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cv import DeviceData, PredictContext, load_device_data, run_cv, save_cv

EXIT_COMPLETED, EXIT_DEADLINE, EXIT_ERROR, EXIT_NO_GPU = 0, 1, 2, 3


class _Log:
    """Print with the seconds since start, flushed; keep the lines for cv_log.txt."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        stamp = f"[{time.monotonic() - self.started:6.1f}s]"
        lines = [f"{stamp} {line}" for line in (message.splitlines() or [""])]
        self.lines.extend(lines)
        print("\n".join(lines), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m inference.training.device_cv", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="a data_{size}.npz from `cv prep`")
    parser.add_argument("--out", type=Path, required=True, help="output folder (3 files)")
    parser.add_argument("--variant", default="bn_gap")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--deadline-seconds", type=float, default=None, help="budget from this process's start"
    )
    parser.add_argument("--reserve-seconds", type=float, default=10.0, help="kept for writing the results")
    parser.add_argument("--adapt-epochs", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--min-epochs", type=int, default=5)
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="hold out only these folds")
    parser.add_argument("--limit", type=int, default=None, help="dry runs: slices per class and fold")
    parser.add_argument("--require-gpu", action=argparse.BooleanOptionalAction, default=False)
    precisions = ("default", "high", "highest")
    parser.add_argument(
        "--train-precision", choices=precisions, default="default", help="JAX precision for training (TF32)"
    )
    parser.add_argument(
        "--predict-precision",
        choices=precisions,
        default="highest",
        help="JAX precision for the held-out predictions: 'highest' (no TF32) matches TensorFlow on the CPU",
    )
    return parser


def _environment(args: argparse.Namespace, log: _Log) -> tuple[dict[str, Any], PredictContext | None]:
    """Versions and devices, and, with JAX, the training precision set and the context for the
    predictions' precision. `gpu` says whether the backend sees a GPU."""
    import keras

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "gpu": False,
    }
    predict_context: PredictContext | None = None
    if info["backend"] == "jax":
        jax = importlib.import_module("jax")  # no type stubs for mypy here
        if args.train_precision != "default":
            jax.config.update("jax_default_matmul_precision", args.train_precision)
        if args.predict_precision != args.train_precision:
            predict_context = functools.partial(jax.default_matmul_precision, args.predict_precision)
        devices = jax.devices()
        info.update(
            jax=jax.__version__,
            devices=[f"{d.platform}:{getattr(d, 'device_kind', d)}" for d in devices],
            gpu=any(d.platform == "gpu" for d in devices),
            train_precision=args.train_precision,
            predict_precision=args.predict_precision,
        )
    elif info["backend"] == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        info.update(tensorflow=tf.__version__, devices=[d.name for d in gpus] or ["cpu"], gpu=bool(gpus))
    log(f"environment: {info}")
    return info, predict_context


def _select(data: DeviceData, limit: int | None) -> np.ndarray:
    """All slices, or (dry runs) the first `limit` of each class within each fold."""
    if not limit:
        return np.arange(len(data.labels))
    keep = [
        index[np.argsort(data.sequences[index], kind="stable")[:limit]]
        for fold in np.unique(data.fold_of)
        for label in np.unique(data.labels)
        if len(index := np.flatnonzero((data.fold_of == fold) & (data.labels == label)))
    ]
    return np.sort(np.concatenate(keep))


def _exit_code(stop_reason: str) -> int:
    if stop_reason == "completed":
        return EXIT_COMPLETED
    return EXIT_ERROR if stop_reason.startswith("error") else EXIT_DEADLINE


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = _parser().parse_args(argv)
    log = _Log(started)
    log(f"device_cv: {' '.join(sys.argv if argv is None else argv)}")
    deadline = started + args.deadline_seconds - args.reserve_seconds if args.deadline_seconds else None
    info, predict_context = _environment(args, log)
    if args.require_gpu and not info["gpu"]:
        log("ERROR: no GPU is visible to the backend (--require-gpu); nothing trained")
        return EXIT_NO_GPU
    data = load_device_data(args.data, echo=log)
    index = _select(data, args.limit)
    log(
        f"data: {args.data}, {len(data.labels)} slices at {data.image_size} px ({data.derived} derived, "
        f"{data.crc_mismatches} CRC mismatches), using {len(index)}; "
        f"class counts {np.bincount(data.labels[index], minlength=3).tolist()}"
    )
    result = run_cv(
        data.gray[index],
        data.labels[index],
        data.fold_of[index],
        variant=args.variant,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        dropout=args.dropout,
        seed=args.seed,
        echo=log,
        deadline=deadline,
        adapt_epochs=args.adapt_epochs,
        min_epochs=args.min_epochs,
        run_folds=args.folds,
        predict_context=predict_context,
    )
    extra = {
        "environment": info,
        "data": str(args.data),
        "limit": args.limit,
        "derived_slices": data.derived,
        "crc_mismatches": data.crc_mismatches,
        "fold_description": data.description,
    }
    files = save_cv(
        result,
        args.out,
        paths=data.paths[index],
        sequences=data.sequences[index],
        log_lines=log.lines,
        extra=extra,
    )
    for file in files:
        log(f"wrote {file} ({file.stat().st_size / 1e6:.2f} MB)")
    log(f"device_cv done in {time.monotonic() - started:.0f}s: {result.stop_reason}")
    return _exit_code(result.stop_reason)


if __name__ == "__main__":
    sys.exit(main())
