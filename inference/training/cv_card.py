"""The card of a cross-validated ensemble, as JSON and as Markdown a reader can check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import CARD_FILE, CARD_MARKDOWN_FILE
from ..preprocessing import CLASS_NAMES
from .card import _fmt


def write_cv_card(out_dir: Path, card: dict[str, Any]) -> None:
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / CARD_MARKDOWN_FILE).write_text(render_cv_card_markdown(card))


def _spread(entry: dict[str, Any]) -> str:
    pooled = f" (pooled {_fmt(entry['pooled'])})" if "pooled" in entry else ""
    return f"{_fmt(entry.get('mean'))} ± {_fmt(entry.get('sd'))}{pooled}"


def render_cv_card_markdown(card: dict[str, Any]) -> str:
    sections = [_what_it_is, _cannot, _slices, _studies, _calibration, _assessable, _runs, _rest]
    return "\n".join(line for section in sections for line in [*section(card), ""])


def _what_it_is(card: dict[str, Any]) -> list[str]:
    cv, training = card["cross_validation"], card.get("training") or {}
    environment = training.get("environment") or {}
    trained = (
        f"- Trained with Keras {environment.get('keras', '?')} on {environment.get('backend', '?')} "
        f"({', '.join(environment.get('devices') or ['CPU'])}) in {training.get('seconds')} s for all "
        f"folds: learning rate {training.get('learning_rate')}, batch {training.get('batch_size')}, "
        f"{training.get('optimizer', 'Adam')}, {training.get('loss', '')}."
    )
    return [
        f"# Model card: {card.get('name', '')}",
        "",
        "Research software: supports, never replaces, a radiologist's reading.",
        "",
        "## What it is",
        f"- An ensemble of {len(card.get('members', []))} networks ({card['architecture']['variant']}, "
        f"{card['image_size']} px input), one per cross-validation fold; probabilities are averaged, then "
        "calibrated.",
        f"- Data: {card['dataset']['citation']} ({card['dataset']['slices']} distinct slices).",
        f"- Selection: {cv['folds']}-fold patient-grouped cross-validation: {cv['grouping']}. "
        f"Epochs: {cv['epoch_choice']}: {cv['chosen_epoch']} of {cv['epochs_trained']}.",
        trained,
        "- Every figure below is out-of-fold (each slice scored by the member that never saw its "
        "patient), as a mean ± sd over folds and pooled over all folds.",
    ]


def _cannot(card: dict[str, Any]) -> list[str]:
    rule = card["study_rule"]
    auc = card["slice_metrics"]["pairwise_auc"]["benign_vs_normal"]
    lines = ["## What it cannot do"]
    if (rule["benign_normal_auc"] or 0) < rule["separable_auc"]:
        lines.append(
            f"- It cannot reliably tell **benign from normal**: ranking AUC {_spread(auc)}, below the "
            f"{rule['separable_auc']} the rule asks for. Results say 'no sign of malignancy' and name "
            "neither."
        )
    else:
        lines.append(f"- Benign and normal are told apart with ranking AUC {_spread(auc)}.")
    lines.append(
        "- The not-assessable check knows photos, documents, blank and noise images; it cannot tell a "
        "CT slice of another body region from a lung slice."
    )
    return lines


def _slices(card: dict[str, Any]) -> list[str]:
    slices = card["slice_metrics"]
    pairwise = slices["pairwise_auc"]
    return [
        "## Slices (calibrated)",
        "| figure | folds mean ± sd (pooled) |",
        "| --- | --- |",
        f"| balanced accuracy | {_spread(slices['balanced_accuracy'])} |",
        *[f"| recall {name} | {_spread(slices['recall'][name])} |" for name in CLASS_NAMES],
        f"| malignant vs rest, ranking AUC | {_spread(pairwise['malignant_vs_rest'])} |",
        f"| benign vs normal, ranking AUC | {_spread(pairwise['benign_vs_normal'])} |",
        "",
        f"![confusion matrix]({card['plots']['confusion']})",
    ]


def _studies(card: dict[str, Any]) -> list[str]:
    rule, study = card["study_rule"], card["study_metrics"]
    return [
        "## Studies",
        "Rule: suspicion is the calibrated probability of malignancy led by the most suspicious slice; "
        f"malignant from suspicion {_fmt(rule['malignant_threshold'])} (chosen for malignant sensitivity "
        f">= {rule['target_sensitivity']}).",
        "",
        f"| figure ({study['studies']} studies, {study['malignant_studies']} malignant) | folds mean ± sd "
        "(pooled) |",
        "| --- | --- |",
        f"| malignant sensitivity | {_spread(study['sensitivity'])} |",
        f"| specificity | {_spread(study['specificity'])} |",
        "",
        f"Studies here are {study['approximation']}.",
    ]


def _calibration(card: dict[str, Any]) -> list[str]:
    calibration = card["calibration"]
    return [
        "## Calibration",
        f"{calibration['method']}: temperature {_fmt(calibration['temperature'])}. Expected calibration "
        f"error (top label, 10 bins): before {_spread(calibration['ece_before_folds'])} per fold, "
        f"{_fmt(calibration['ece_before'])} pooled; after {_spread(calibration['ece_after_folds'])} per "
        f"fold, {_fmt(calibration['ece_after'])} pooled.",
        "",
        f"![reliability]({card['plots']['reliability']})",
    ]


def _assessable(card: dict[str, Any]) -> list[str]:
    assess = card["assessability"]
    return [
        "## Not assessable",
        f"{assess['method']}. False flags on held-out real slices (limits fitted on the other folds): "
        f"{_fmt(assess['false_flag_rate'])}; caught {_fmt(assess['catch_rate'])} of "
        f"{len(assess['non_ct_images'])} generated non-CT images.",
    ]


def _runs(card: dict[str, Any]) -> list[str]:
    runs = card.get("comparisons") or []
    lines = [
        "## Runs compared (same folds)",
        "| run | px | learning rate | epoch | held-out loss | balanced accuracy | recall normal / benign / "
        "malignant | study sensitivity / specificity | ECE after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        recall = " / ".join(_fmt(run["recall"][name]) for name in CLASS_NAMES)
        lines.append(
            f"| {run['run']}{' (shipped)' if run['shipped'] else ''} | {run['image_size']} | "
            f"{run['learning_rate']} | {run['chosen_epoch']} | {_fmt(run['held_out_loss'])} | "
            f"{_spread(run['balanced_accuracy'])} | {recall} | {_fmt(run['sensitivity'])} / "
            f"{_fmt(run['specificity'])} | {_fmt(run['ece_after'])} |"
        )
    return lines + ["", f"![held-out loss by epoch]({card['plots']['cv_curves']})"]


def _rest(card: dict[str, Any]) -> list[str]:
    return [
        "## Reproduce",
        "```",
        *card.get("reproduce", []),
        "```",
        "The card's figures are recomputed from the saved out-of-fold predictions (`cv_predictions.npz`) "
        "by `inference.training.ensemble.card_from_predictions`; a test checks they match.",
        "",
        "## Notes",
        *[f"- {note}" for note in card.get("notes", [])],
    ]
