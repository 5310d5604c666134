"""Inference benchmark: slices/s of the worker's serving path against `model.predict` per image,
the published app's reload-per-request and the network's arithmetic limit, with the variants
tried (batch sizes, thread counts, decode overlapped with compute, XLA, TFLite) and the worker's
start-up, all measured side by side in one process on the same real slices.

Run inside Django (`django.setup()` done by the caller): `run(quick=True)` for a short run.
Thread counts can only be set before TensorFlow's first op, so thread variants and the start-up
run in fresh subprocesses (`python -m bench.inference --child ...`).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import Section, markdown_table

TITLE = "Inference"
FULL_SLICES = 200
QUICK_SLICES = 24
BATCH_SIZES = (1, 8, 16, 32)
# TFLite must give the Keras probabilities within this (calibrated, on the shared slices).
LITE_TOLERANCE = 1e-4
# The whole study as one batch is tried only where its activations fit comfortably in memory.
_ACTIVATION_COPIES = 3


def run(*, quick: bool = False, data_dir: Path | str | None = None) -> Section:
    """Measure the inference paths on N real slices (200, or 24 with `quick`) and return the
    Section for docs/benchmarks.md. Skips, saying why, where the dataset is absent."""
    from django.conf import settings

    dataset = Path(data_dir) if data_dir is not None else _default_dataset(settings)
    n = QUICK_SLICES if quick else FULL_SLICES
    paths = _slice_paths(dataset, n)
    if not paths:
        return Section(
            TITLE,
            f"Skipped: no JPEG or PNG slices of the IQ-OTH/NCCD dataset under `{dataset}` "
            "(set settings.BENCH_DATASET_DIR or pass data_dir).",
            {"skipped": True},
        )
    blobs = [path.read_bytes() for path in paths]  # disk reads are not what is compared here

    from inference.services import model_version_active, model_version_predictor

    version = model_version_active()
    started = time.perf_counter()
    predictor = model_version_predictor(version)  # what workers run: checked against the version
    load_s = time.perf_counter() - started
    bench = _Bench(predictor, blobs, quick=quick)
    figures = bench.measure()
    figures["predictor_load_in_process_s"] = round(load_s, 2)

    started = time.perf_counter()
    children = _child_runs(
        weights_dir=predictor.weights_dir,
        hashes=dict(version.files or {}),
        paths=paths[: min(len(paths), 8 if quick else 64)],
        configs=_thread_configs(settings, quick=quick),
        batch_size=predictor.batch_size,
    )
    figures.update(_child_figures(children, settings))
    figures["bench_step_s"]["fresh_processes"] = round(time.perf_counter() - started, 1)
    figures.update(
        model=version.name,
        members=len(predictor.members),
        image_size=predictor.image_size,
        slices=len(blobs),
        quick=quick,
    )
    return Section(TITLE, _markdown(figures, children), figures)


class _Bench:
    """The measurements that share one loaded predictor and one set of decoded slices."""

    def __init__(self, predictor: Any, blobs: list[bytes], *, quick: bool) -> None:
        self.predictor = predictor
        self.blobs = blobs
        self.quick = quick
        self.n = len(blobs)

    # --- the paths ------------------------------------------------------------------------------

    def decode(self, blobs: Sequence[bytes]) -> list[np.ndarray]:
        """What the worker does per slice before the network: decode, check, preprocess."""
        from inference.preprocessing import inspect, preprocess

        inputs = []
        for blob in blobs:
            found = inspect(blob)
            if self.predictor.not_assessable_reason(found) is None:
                inputs.append(preprocess(found.image, size=self.predictor.image_size))
        return inputs

    def serving(self) -> np.ndarray:
        """The worker's path: decode every slice of the study, then Predictor.predict over them."""
        return np.asarray(self.predictor.predict(self.decode(self.blobs)))

    def overlapped(self) -> np.ndarray:
        """Decode the next batch in a thread while the network runs on this one."""
        size = self.predictor.batch_size
        chunks = [self.blobs[start : start + size] for start in range(0, self.n, size)]
        outputs = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.decode, chunks[0])
            for index in range(len(chunks)):
                inputs = pending.result()
                if index + 1 < len(chunks):
                    pending = pool.submit(self.decode, chunks[index + 1])
                if inputs:
                    outputs.append(self.predictor.predict(inputs))
        return np.concatenate(outputs, axis=0)

    def predict_per_image(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """`model.predict` one slice per call, for each member, averaged and calibrated like serving."""
        from inference.calibration import apply_temperature

        rows = []
        for image in inputs:
            batch = image[np.newaxis]
            mean = np.mean(
                [member.predict(batch, verbose=0)[0] for member in self.predictor.members], axis=0
            ).astype(np.float64)
            rows.append(mean / mean.sum())
        return apply_temperature(np.asarray(rows), self.predictor.temperature)

    def reload_per_request(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The published app's way: load the model from disk, then predict, for every request."""
        import keras

        from inference.calibration import apply_temperature

        rows = []
        for image in inputs:
            members = [
                keras.models.load_model(self.predictor.weights_dir / name, compile=False)
                for name in self.predictor.hashes
            ]
            mean = np.mean(
                [member.predict(image[np.newaxis], verbose=0)[0] for member in members], axis=0
            ).astype(np.float64)
            rows.append(mean / mean.sum())
            del members
        return apply_temperature(np.asarray(rows), self.predictor.temperature)

    def with_batch_size(self, size: int) -> Callable[[], np.ndarray]:
        def call() -> np.ndarray:
            previous = self.predictor.batch_size
            self.predictor.batch_size = size
            try:
                return self.serving()
            finally:
                self.predictor.batch_size = previous

        return call

    # --- the measurement ------------------------------------------------------------------------

    def measure(self) -> dict[str, Any]:
        predictor = self.predictor
        figures: dict[str, Any] = {"serving_batch_size": predictor.batch_size}

        started = time.perf_counter()
        inputs = self.decode(self.blobs)
        figures["decode_ms_per_slice"] = round(1000 * (time.perf_counter() - started) / self.n, 2)
        if len(inputs) != self.n:
            raise RuntimeError(f"{self.n - len(inputs)} of the benchmark slices were not assessable")
        predictor.predict(inputs[:1])  # builds the graph: a warm worker has done this already
        predictor.predict(inputs[: predictor.batch_size])

        laps = _Laps()
        serving_first, reference = _timed(self.serving)
        laps.lap("serving")
        rates: dict[str, float] = {}

        # model.predict per image: warm up its own predict function first.
        self.predict_per_image(inputs[:1])
        seconds, per_image = _timed(lambda: self.predict_per_image(inputs))
        rates["predict_per_image"] = self.n / seconds
        figures["predict_per_image_max_abs_diff"] = _diff(per_image, reference)
        laps.lap("predict_per_image")

        reloads = 2 if self.quick else 4
        seconds, reloaded = _timed(lambda: self.reload_per_request(inputs[:reloads]))
        rates["reload_per_request"] = reloads / seconds
        figures["reload_requests_timed"] = reloads
        figures["reload_max_abs_diff"] = _diff(reloaded, reference[:reloads])
        laps.lap("reload_per_request")

        batch_rates: dict[str, float] = {}
        for size in BATCH_SIZES:
            if size == predictor.batch_size:
                continue  # that is the serving path, measured first and last
            seconds, _ = _timed(self.with_batch_size(size))
            batch_rates[str(size)] = self.n / seconds
        estimate = self._activation_bytes(self.n)
        available = _available_memory()
        if available is None or estimate * _ACTIVATION_COPIES < available // 2:
            seconds, _ = _timed(self.with_batch_size(self.n))
            batch_rates[f"{self.n} (whole study)"] = self.n / seconds
        else:
            figures["whole_study_batch_skipped"] = (
                f"{self.n} slices in one batch need ~{estimate * _ACTIVATION_COPIES / 2**30:.1f} GiB "
                f"of activations; {available / 2**30:.1f} GiB available"
            )

        laps.lap("batch_sizes")
        seconds, overlapped = _timed(self.overlapped)
        rates["overlapped_decode"] = self.n / seconds
        figures["overlapped_max_abs_diff"] = _diff(overlapped, reference)
        laps.lap("overlapped")

        if not self.quick:  # XLA compiles for half a minute per batch shape: full runs only
            xla_predict = _xla_predictor(predictor)
            xla_predict(inputs[: predictor.batch_size])  # compiles, for both batch shapes used
            if self.n % predictor.batch_size:
                xla_predict(inputs[: self.n % predictor.batch_size])
            seconds, compiled = _timed(lambda: xla_predict(self.decode(self.blobs)))
            rates["xla"] = self.n / seconds
            figures["xla_max_abs_diff"] = _diff(compiled, reference)
            laps.lap("xla")

        started = time.perf_counter()
        lite_predict = _lite_predictor(predictor)
        figures["tflite_convert_s"] = round(time.perf_counter() - started, 2)
        lite_predict(inputs[: predictor.batch_size])
        seconds, lite = _timed(lambda: lite_predict(self.decode(self.blobs)))
        rates["tflite"] = self.n / seconds
        figures["tflite_max_abs_diff"] = _diff(lite, reference)
        if figures["tflite_max_abs_diff"] > LITE_TOLERANCE:
            raise AssertionError(
                f"TFLite differs from Keras by {figures['tflite_max_abs_diff']:.2e} "
                f"(> {LITE_TOLERANCE:g}) in calibrated probabilities on the benchmark slices"
            )

        # The serving path again, last: its spread first-to-last is the run's drift (noise).
        laps.lap("tflite")
        serving_last, _ = _timed(self.serving)
        serving = self.n / min(serving_first, serving_last)
        spread = abs(serving_first - serving_last) / max(serving_first, serving_last)
        figures["serving_drift"] = round(spread, 3)

        flops = sum(_network_flops(member) for member in predictor.members)
        peak = _peak_gflops()
        limit = peak * 1e9 / flops
        laps.lap("serving_again_and_peak")
        figures["bench_step_s"] = dict(laps)

        figures.update(
            serving_slices_per_s=round(serving, 2),
            predict_per_image_slices_per_s=round(rates["predict_per_image"], 2),
            reload_per_request_slices_per_s=round(rates["reload_per_request"], 3),
            overlapped_decode_slices_per_s=round(rates["overlapped_decode"], 2),
            tflite_slices_per_s=round(rates["tflite"], 2),
            batch_size_slices_per_s={
                str(predictor.batch_size): round(serving, 2),
                **{size: round(rate, 2) for size, rate in batch_rates.items()},
            },
            gflop_per_slice=round(flops / 1e9, 2),
            peak_gflops=round(peak, 1),
            arithmetic_limit_slices_per_s=round(limit, 2),
            serving_share_of_limit=round(serving / limit, 3),
            ratios={
                "serving_over_predict_per_image": round(serving / rates["predict_per_image"], 2),
                "serving_over_reload_per_request": round(serving / rates["reload_per_request"], 1),
                "limit_over_serving": round(limit / serving, 2),
                "overlapped_over_serving": round(rates["overlapped_decode"] / serving, 3),
                "tflite_over_serving": round(rates["tflite"] / serving, 3),
            },
        )
        if "xla" in rates:
            figures["xla_slices_per_s"] = round(rates["xla"], 2)
            figures["ratios"]["xla_over_serving"] = round(rates["xla"] / serving, 3)
        # A variant wins only by more than the run's own noise (and 10% at least).
        margin = 1 + max(0.1, figures["serving_drift"])
        candidates = {
            "overlapped decode": rates["overlapped_decode"],
            "TFLite": rates["tflite"],
            **({"XLA": rates["xla"]} if "xla" in rates else {}),
            **{f"batch {size}": rate for size, rate in batch_rates.items()},
        }
        figures["variants_beating_serving"] = {
            name: round(rate / serving, 2)
            for name, rate in sorted(candidates.items(), key=lambda item: -item[1])
            if rate > margin * serving
        }
        best_batch = max(figures["batch_size_slices_per_s"].items(), key=lambda item: item[1])
        figures["best_batch_size"] = best_batch[0]
        return figures

    def _activation_bytes(self, batch: int) -> int:
        """float32 bytes of the largest layer output for `batch` slices (the first convolution's)."""
        largest = 0
        for layer in self.predictor.members[0].layers:
            shape = getattr(getattr(layer, "output", None), "shape", None)
            if shape is not None and None not in shape[1:]:
                largest = max(largest, int(np.prod(shape[1:])))
        return 4 * largest * batch


def _timed(call: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


class _Laps(dict[str, float]):
    """What each part of the benchmark itself cost, warm-ups and conversions included (seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self[name] = round(now - self._last, 1)
        self._last = now


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _xla_predictor(predictor: Any) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """The serving path's ensemble compiled with XLA (`jit_compile=True`), same batches."""
    import tensorflow as tf

    from inference.calibration import apply_temperature

    members = predictor.members
    forward = tf.function(
        lambda x: tf.add_n([member(x, training=False) for member in members]) / len(members),
        jit_compile=True,
    )

    def predict(inputs: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.asarray(inputs, dtype=np.float32)
        size = predictor.batch_size
        raw = np.concatenate(
            [forward(batch[start : start + size]).numpy() for start in range(0, len(batch), size)]
        ).astype(np.float64)
        return apply_temperature(raw / raw.sum(axis=1, keepdims=True), predictor.temperature)

    return predict


def _lite_predictor(predictor: Any) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """The serving code's TFLite ensemble (inference.lite), averaged and calibrated like the
    Predictor, in the serving batch size."""
    from django.conf import settings

    from inference.calibration import apply_temperature
    from inference.lite import LiteEnsemble

    lite = LiteEnsemble(predictor.members, threads=int(settings.TF_INTRA_OP_THREADS) or None)

    def predict(inputs: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.asarray(inputs, dtype=np.float32)
        size = predictor.batch_size
        raw = np.concatenate(
            [lite.forward(batch[start : start + size]) for start in range(0, len(batch), size)]
        )
        return apply_temperature(raw / raw.sum(axis=1, keepdims=True), predictor.temperature)

    return predict


def _network_flops(model: Any) -> int:
    """Multiply-adds x 2 of one slice through the convolutions and dense layers (batch norm,
    ReLU and pooling are a few percent more and left out)."""
    import keras

    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
            _, height, width, _ = layer.output.shape
            flops += 2 * kh * kw * cin * cout * int(height) * int(width)
        elif isinstance(layer, keras.layers.Dense):
            rows, cols = (int(d) for d in layer.kernel.shape)
            flops += 2 * rows * cols
    return flops


def _peak_gflops(size: int = 2048, repeats: int = 4) -> float:
    """This CPU's attainable float32 rate under TensorFlow's thread settings: the best of a few
    large matrix products."""
    import tensorflow as tf

    a = tf.random.normal([size, size], seed=1)
    tf.linalg.matmul(a, a).numpy()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            tf.linalg.matmul(a, a).numpy()
        best = min(best, time.perf_counter() - started)
    return repeats * 2 * size**3 / best / 1e9


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


# --- dataset ------------------------------------------------------------------------------------


def _default_dataset(settings: Any) -> Path:
    configured = getattr(settings, "BENCH_DATASET_DIR", None)
    if configured:
        return Path(configured)
    return Path(settings.BASE_DIR).resolve().parent / "shared" / "datasets" / "iqothnccd"


def _slice_paths(dataset: Path, n: int) -> list[Path]:
    """N distinct slices spread evenly over the dataset (so every class is in), in a fixed order."""
    manifest = dataset / "manifest.csv"
    if manifest.exists():
        with manifest.open(newline="") as handle:
            files = [
                dataset / row["path"]
                for row in csv.DictReader(handle)
                if not row.get("duplicate_of") and (dataset / row["path"]).exists()
            ]
    elif dataset.is_dir():
        files = sorted(p for p in dataset.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    else:
        return []
    if len(files) <= n:
        return files
    return [files[int(i)] for i in np.linspace(0, len(files) - 1, n)]


# --- fresh processes: thread counts and the worker's start-up ---------------------------------------


def _thread_configs(settings: Any, *, quick: bool) -> list[tuple[int, int]]:
    serving = (int(settings.TF_INTRA_OP_THREADS), int(settings.TF_INTER_OP_THREADS))
    cores = os.cpu_count() or 1
    tried = [(1, 1)] if quick else [(1, 1), (cores, 1), (cores, 2), (1, 2), (0, 0)]
    return [serving] + [config for config in dict.fromkeys(tried) if config != serving]


def _child_runs(
    *,
    weights_dir: Path,
    hashes: dict[str, str],
    paths: Sequence[Path],
    configs: Sequence[tuple[int, int]],
    batch_size: int,
) -> list[dict[str, Any]]:
    """One fresh process per thread setting: its start-up as a worker pays it, then slices/s."""
    from django.conf import settings

    results = []
    for intra, inter in configs:
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "lungportal.settings")
        env.update(TF_INTRA_OP_THREADS=str(intra), TF_INTER_OP_THREADS=str(inter), TF_CPP_MIN_LOG_LEVEL="2")
        request = {
            "weights_dir": str(weights_dir),
            "hashes": hashes,
            "paths": [str(path) for path in paths],
            "batch_size": batch_size,
        }
        spawned = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "bench.inference", "--child", json.dumps(request)],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"benchmark subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
        result = json.loads(lines[-1])
        result.update(intra=intra, inter=inter, startup_s=result["ready_at"] - spawned)
        results.append(result)
    return results


def _child_figures(children: list[dict[str, Any]], settings: Any) -> dict[str, Any]:
    serving = children[0]  # the settings' thread counts: what a worker runs
    best = max(children, key=lambda child: child["slices_per_s"])
    return {
        "worker_startup_s": round(serving["startup_s"], 2),
        "worker_startup_parts_s": {
            "django_setup": round(serving["django_s"], 2),
            "import_tensorflow": round(serving["import_s"], 2),
            "load_predictor": round(serving["load_s"], 2),
            "first_batch": round(serving["first_batch_s"], 2),
        },
        "threads_slices_per_s": {
            f"intra {child['intra']}, inter {child['inter']}": round(child["slices_per_s"], 2)
            for child in children
        },
        "threads_slices": children[0]["slices"],
        "serving_threads": f"intra {settings.TF_INTRA_OP_THREADS}, inter {settings.TF_INTER_OP_THREADS}",
        "best_threads": f"intra {best['intra']}, inter {best['inter']}",
    }


def _child(request: dict[str, Any]) -> None:
    """In a fresh process: start up as a worker does (Django, TensorFlow, the verified weights),
    then classify the slices at the given batch size."""
    started = time.perf_counter()
    import django

    django.setup()
    django_s = time.perf_counter() - started
    from inference.runtime import configure_tensorflow

    tick = time.perf_counter()
    configure_tensorflow()  # imports TensorFlow and sets the thread counts from the environment
    import_s = time.perf_counter() - tick

    from inference.predictor import get_predictor
    from inference.preprocessing import inspect, preprocess

    tick = time.perf_counter()
    predictor = get_predictor(request["weights_dir"], expected_hashes=request["hashes"] or None)
    predictor.batch_size = int(request["batch_size"])
    load_s = time.perf_counter() - tick
    blobs = [Path(path).read_bytes() for path in request["paths"]]
    inputs = [preprocess(inspect(blob).image, size=predictor.image_size) for blob in blobs]
    tick = time.perf_counter()
    predictor.predict(inputs[:1])
    first_batch_s = time.perf_counter() - tick
    ready_at = time.time()
    predictor.predict(inputs[: predictor.batch_size])  # warm for the batch shape too
    tick = time.perf_counter()
    predictor.predict(inputs)
    seconds = time.perf_counter() - tick
    print(
        json.dumps(
            {
                "django_s": django_s,
                "import_s": import_s,
                "load_s": load_s,
                "first_batch_s": first_batch_s,
                "ready_at": ready_at,
                "slices": len(inputs),
                "slices_per_s": len(inputs) / seconds,
            }
        )
    )


# --- the report ---------------------------------------------------------------------------------


def _markdown(f: dict[str, Any], children: list[dict[str, Any]]) -> str:
    serving = f["serving_slices_per_s"]

    def row(name: str, rate: float) -> list[Any]:
        return [name, f"{rate:.2f}", f"{rate / serving:.2f}×"]

    bs = f["serving_batch_size"]
    rows = [
        row(f"serving path: decode + `Predictor.predict`, batch {bs} (the worker's)", serving),
        row("`model.predict` per image, each member", f["predict_per_image_slices_per_s"]),
        row("published app: reload the model, predict, per request", f["reload_per_request_slices_per_s"]),
        *[
            row(f"batch {size}", rate)
            for size, rate in f["batch_size_slices_per_s"].items()
            if size != str(bs)
        ],
        row("decode of the next batch overlapped with compute", f["overlapped_decode_slices_per_s"]),
        *(
            [row(f"XLA (`jit_compile=True`), batch {bs}", f["xla_slices_per_s"])]
            if "xla_slices_per_s" in f
            else []
        ),
        row(
            f"TFLite (XNNPACK), batch {bs}, max diff {f['tflite_max_abs_diff']:.1e}",
            f["tflite_slices_per_s"],
        ),
        row(
            f"arithmetic limit: {f['gflop_per_slice']:.2f} GFLOP/slice at {f['peak_gflops']:.0f} GFLOP/s",
            f["arithmetic_limit_slices_per_s"],
        ),
    ]
    thread_rows = [
        [
            f"intra {child['intra']}, inter {child['inter']}" + (" (settings)" if index == 0 else ""),
            f"{child['slices_per_s']:.2f}",
            f"{child['startup_s']:.1f}",
        ]
        for index, child in enumerate(children)
    ]
    parts = f["worker_startup_parts_s"]
    skipped = f.get("whole_study_batch_skipped")
    ratios = f["ratios"]
    winners = f["variants_beating_serving"]
    return "\n".join(
        [
            f"{f['model']}: {f['members']} members at {f['image_size']} px, {f['slices']} real slices "
            "of IQ-OTH/NCCD, every path in one process on the same slices (slices/s; higher is "
            "better; ratio to the serving path).",
            "",
            markdown_table(["path", "slices/s", "ratio"], rows),
            "",
            f"The serving path runs {ratios['serving_over_predict_per_image']}× `model.predict` per "
            f"image and {ratios['serving_over_reload_per_request']}× the published app's reload per "
            f"request, at {100 * f['serving_share_of_limit']:.0f}% of the arithmetic limit (the "
            "network's convolution and dense FLOPs against the best rate of a large float32 matrix "
            "product here). Decode is "
            f"{f['decode_ms_per_slice']:.1f} ms per slice, "
            f"{f['decode_ms_per_slice'] * serving / 10:.0f}% of the serving path's time per slice: "
            "all that overlapping it can gain; "
            f"best batch size {f['best_batch_size']}. Serving drift first to last: "
            f"{100 * f['serving_drift']:.0f}% (the noise)."
            + (f" Whole study in one batch skipped: {skipped}." if skipped else "")
            + (
                " Beating the serving path by more than the noise: "
                + ", ".join(f"{name} ({ratio}×)" for name, ratio in winners.items())
                + "."
                if winners
                else " No variant beats the serving path by more than the noise."
            ),
            "",
            f"Thread counts, each in a fresh process on {f['threads_slices']} slices; start-up is a "
            "worker's, from spawning Python to the first batch classified:",
            "",
            markdown_table(["TensorFlow threads", "slices/s", "start-up s"], thread_rows),
            "",
            f"Worker start-up {f['worker_startup_s']:.1f} s: Django set-up "
            f"{parts['django_setup']:.1f} s, importing TensorFlow {parts['import_tensorflow']:.1f} s, "
            f"loading and verifying the weights {parts['load_predictor']:.1f} s, the first batch "
            f"(graph build) {parts['first_batch']:.1f} s.",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.inference --child JSON (run() is called by `make bench`)")
