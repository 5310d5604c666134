"""The model card: card.json (the facts about a run) and MODEL_CARD.md (the same facts for
people), reviewers' notes, comparisons with other runs on the same split, and caveats."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifacts import CARD_FILE, CARD_MARKDOWN_FILE
from ..preprocessing import CLASS_NAMES
from .split import SPLITS


def load_card(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / CARD_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {CARD_FILE} in {model_dir}") from None


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    (Path(out_dir) / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    (Path(out_dir) / CARD_MARKDOWN_FILE).write_text(render_card_markdown(card))


def comparison_entry(other: dict[str, Any]) -> dict[str, Any]:
    """What the card shows of another run (same data, same split) for comparison."""
    metrics = other.get("metrics", {})
    training = other.get("training", {})
    return {
        "name": other.get("name"),
        "variant": other.get("architecture", {}).get("variant"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "accuracy": metrics.get("accuracy"),
        "recall": {n: metrics.get("per_class", {}).get(n, {}).get("recall") for n in CLASS_NAMES},
        "roc_auc_ovr_macro": metrics.get("roc_auc_ovr_macro"),
        "validation_balanced_accuracy": (other.get("validation_metrics") or {}).get("balanced_accuracy"),
        "validation_loss": (
            round(min(training["history"]["val_loss"]), 4)
            if training.get("history", {}).get("val_loss")
            else None
        ),
        "epochs_run": training.get("epochs_run"),
        "best_epoch": training.get("best_epoch"),
        "command": other.get("command"),
        "split": {
            label: {s: desc[s]["sequence_range"] for s in SPLITS}
            for label, desc in other.get("split", {}).get("classes", {}).items()
        },
    }


def add_notes(model_dir: Path, notes: Sequence[str]) -> dict[str, Any]:
    """Add a reviewer's notes (what the numbers mean) to a card and re-render MODEL_CARD.md."""
    card = load_card(model_dir)
    card["notes"] = list(notes)
    write_card(model_dir, card)
    return card


def add_comparisons(model_dir: Path, others: Sequence[Path]) -> dict[str, Any]:
    """Add other runs' results to a model directory's card (only runs on the same split) and
    re-render MODEL_CARD.md."""
    card = load_card(model_dir)
    mine = comparison_entry(card)["split"]
    entries = list(card.get("comparisons") or [])
    for other in others:
        entry = comparison_entry(load_card(other))
        if entry["split"] != mine:
            raise ValueError(f"{other} was evaluated on another split; its numbers are not comparable")
        entries = [e for e in entries if e["name"] != entry["name"]] + [entry]
    card["comparisons"] = entries
    write_card(model_dir, card)
    return card


def caveats_for(card: dict[str, Any]) -> list[str]:
    """The card's caveats, from its own figures (a tiny run and a likely shortcut come first)."""
    metrics = card["metrics"]
    counts = card["counts"]["test"]
    caveats = [
        "Single-slice classifier: it sees one 2D slice, not a study; many slices of a patient with "
        "a nodule do not show the nodule, and benign versus normal on one slice is hard.",
        f"The test block is small ({sum(counts.values())} slices: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + ") and comes from only a few patients per class, so every figure here has a wide "
        "uncertainty; the benign figures rest on one or two patients.",
        "Patients are not identified in the dataset: the split assumes consecutive numbers belong "
        "to one patient and cuts at the least-similar neighbouring pair; a patient may still "
        "straddle a cut.",
        "One hospital, one scanner protocol, 8-bit JPEG exports, fall 2019: performance on other "
        "sites, scanners or DICOM windowing is unknown.",
        "Research use only; not a medical device. A clinician reviews every prediction.",
    ]
    shortcut = card["shortcut_check"].get("balanced_accuracy")
    if shortcut is not None and metrics.get("balanced_accuracy") is not None:
        if metrics["balanced_accuracy"] <= shortcut + 0.05:
            caveats.insert(
                0,
                "The CNN is not clearly better than a classifier that sees only the "
                "image size: it may have learned the shortcut.",
            )
    if card["dataset"].get("limit_per_class"):
        caveats.insert(
            0,
            f"Tiny run (--limit {card['dataset']['limit_per_class']} per class): a "
            "placeholder to exercise the pipeline, not a usable classifier.",
        )
    return caveats


# --------------------------------------------------------------------------------------------
# MODEL_CARD.md
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_card_markdown(card: dict[str, Any]) -> str:
    lines = _results_lines(card)
    if card.get("notes"):
        lines += ["## What this means", ""] + [f"- {note}" for note in card["notes"]] + [""]
    lines += _comparison_lines(card)
    lines += _data_lines(card)
    lines += _model_lines(card)
    lines += [f"- {c}" for c in card["caveats"]]
    lines.append("")
    return "\n".join(lines)


def _results_lines(card: dict[str, Any]) -> list[str]:
    """Headline, per-class table, confusion matrix, validation figures and the plots."""
    m = card["metrics"]
    shortcut = card["shortcut_check"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        "A CNN that classifies one lung CT slice as "
        + ", ".join(f"**{n}**" for n in card["class_names"])
        + ". Research use only: it supports, never replaces, a clinician's reading.",
        "",
        "## Headline",
        "",
        f"On the held-out, patient-disjoint **test block** ({m['n']} slices): "
        f"**balanced accuracy {_fmt(m['balanced_accuracy'])}**, accuracy {_fmt(m['accuracy'])}, "
        f"macro one-vs-rest ROC AUC {_fmt(m['roc_auc_ovr_macro'])}.",
        "",
        f"A classifier that sees only the image's width and height reaches balanced accuracy "
        f"**{_fmt(shortcut.get('balanced_accuracy'))}** on the same split (shortcut check).",
        "",
        "| class | precision | recall | F1 | ROC AUC (one vs rest) | test slices |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in card["class_names"]:
        pc = m["per_class"][name]
        lines.append(
            f"| {name} | {_fmt(pc['precision'])} | {_fmt(pc['recall'])} | {_fmt(pc['f1'])} "
            f"| {_fmt(pc['roc_auc'])} | {pc['support']} |"
        )
    lines += [
        "",
        "Confusion matrix on the test block (rows: true, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(card["class_names"]) + " |",
        "| --- |" + " --- |" * len(card["class_names"]),
    ]
    for name, row in zip(card["class_names"], m["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    vm = card.get("validation_metrics") or {}
    lines += [
        "",
        f"Validation block (used for early stopping, so optimistic): balanced accuracy "
        f"{_fmt(vm.get('balanced_accuracy'))}, accuracy {_fmt(vm.get('accuracy'))}.",
        "",
        f"![training curves]({card['plots']['training_curves']})",
        f"![confusion matrix]({card['plots']['confusion_matrix']})",
        "",
    ]
    return lines


def _comparison_lines(card: dict[str, Any]) -> list[str]:
    """This run beside the other runs on the same split (nothing where there are none)."""
    comparisons = card.get("comparisons") or []
    if not comparisons:
        return []
    this = comparison_entry(card)
    lines = [
        "## Compared with other runs on the same split",
        "",
        "Runs are compared on the validation block by class-weighted validation loss, the "
        "criterion early stopping uses; test-block figures are shown for information and were "
        "not used to train or stop any run.",
        "",
        "| model | variant | validation loss | validation balanced acc. | test balanced acc. | "
        "test accuracy | recall normal | recall benign | recall malignant | epochs (kept) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, entry in [("**this model**", this)] + [(e["name"], e) for e in comparisons]:
        lines.append(
            f"| {label} | {entry['variant']} | {_fmt(entry.get('validation_loss'))} | "
            f"{_fmt(entry.get('validation_balanced_accuracy'))} | "
            f"{_fmt(entry['balanced_accuracy'])} | {_fmt(entry['accuracy'])} | "
            + " | ".join(_fmt(entry["recall"].get(n)) for n in card["class_names"])
            + f" | {entry.get('epochs_run')} ({entry.get('best_epoch')}) |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"- `{entry['name']}`: `{entry.get('command')}`" for entry in comparisons]
    lines.append("")
    return lines


def _data_lines(card: dict[str, Any]) -> list[str]:
    """The dataset, the split per class and the leakage check."""
    split = card["split"]
    lines = [
        "## Data and split",
        "",
        f"Dataset: {card['dataset']['citation']}.",
        "",
        f"{card['dataset']['images_listed']} images in the development copy; "
        f"{card['dataset']['duplicates_dropped']} byte-identical duplicates counted once; "
        f"{card['dataset']['images_used']} used.",
        "",
        f"Split: {split['method']}.",
        "",
        "| class | train | validation | test |",
        "| --- | --- | --- | --- |",
    ]
    for name, desc in split["classes"].items():
        cells = []
        for s in SPLITS:
            rng = desc[s]["sequence_range"]
            cells.append(f"{desc[s]['count']} (seq {rng[0]}–{rng[1]})" if rng else "0")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    leak = split.get("leakage_check")
    if leak:
        lines += [
            "",
            "Leakage check: each test slice's correlation with its most similar training slice "
            f"(64×64 thumbnails): median {leak['test_to_nearest_train_correlation_median']}, "
            f"max {leak['test_to_nearest_train_correlation_max']}; "
            f"{leak['test_slices_with_nearest_train_correlation_over_0.95']} test slices above 0.95.",
        ]
    return lines


def _model_lines(card: dict[str, Any]) -> list[str]:
    """Architecture, training, weights, how to reproduce, and the caveats heading."""
    arch = card["architecture"]
    training = card["training"]
    return [
        "",
        "## Model and training",
        "",
        f"- Variant `{arch['variant']}`: six 3×3 convolutions ({', '.join(map(str, arch['conv_filters']))} "
        f"filters, 'valid' padding) each followed by 2×2 max-pooling, flatten, dense {arch['dense_units']}, "
        f"dropout {arch['dropout']}, softmax over 3 classes; ReLU. {arch['parameters']:,} parameters "
        f"(the published design: {arch['published_parameters_without_dropout']:,}). "
        + arch.get("description", ""),
        f"- Preprocessing (training and serving alike): {card['preprocessing']}.",
        f"- Adam (learning rate {training['learning_rate']}), batch {training['batch_size']}, "
        "class-weighted cross-entropy ("
        + ", ".join(f"{k} {v}" for k, v in training["class_weights"].items())
        + "), "
        f"early stopping on {training['early_stopping']['monitor']} (patience "
        f"{training['early_stopping']['patience']}, best weights restored)"
        + (", learning rate halved on plateau" if training.get("reduce_lr_on_plateau") else "")
        + f", seed {training['seed']}.",
        f"- Ran {training['epochs_run']} of at most {training['max_epochs']} epochs; kept epoch "
        f"{training['best_epoch']}; {training['seconds']:.0f} s of training on "
        f"{card['environment']['cpu_count']} CPU cores (TensorFlow {card['environment']['tensorflow']}).",
        "",
        "## Weights",
        "",
        f"`{card['weights']['file']}`, {card['weights']['size_bytes']:,} bytes, SHA-256 "
        f"`{card['weights']['sha256']}`.",
        "",
        "## Reproduce",
        "",
        "```",
        card["command"] or "(command not recorded)",
        "```",
        "",
        "Seeds are fixed and TensorFlow's op determinism is on; figures may still differ in the last "
        "digits on another CPU or TensorFlow build.",
        "",
        "## Caveats",
        "",
    ]
