"""The card of a cross-validated ensemble, as JSON and as Markdown a reader can check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import CARD_FILE, CARD_MARKDOWN_FILE
from ..preprocessing import CLASS_NAMES


def write_cv_card(out_dir: Path, card: dict[str, Any]) -> None:
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / CARD_MARKDOWN_FILE).write_text(render_cv_card_markdown(card))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _mean_sd(entry: dict[str, Any]) -> str:
    return f"{_fmt(entry.get('mean'))} ± {_fmt(entry.get('sd'))} (pooled {_fmt(entry.get('pooled'))})"


def render_cv_card_markdown(card: dict[str, Any]) -> str:
    cv, calibration, rule = card["cross_validation"], card["calibration"], card["study_rule"]
    slices, study, assess = card["slice_metrics"], card["study_metrics"], card["assessability"]
    separable = (rule["benign_normal_auc"] or 0) >= rule["separable_auc"]
    named = "named" if separable else "not named; the result says so"
    study_header = f"figure ({study['studies']} studies, {study['malignant_studies']} malignant)"
    lines = [
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
        "- Every figure below is out-of-fold: each slice scored by the model that never saw its patient.",
        "",
        "## Slices (calibrated)",
        "| figure | folds mean ± sd (pooled) |",
        "| --- | --- |",
        f"| balanced accuracy | {_mean_sd(slices['balanced_accuracy'])} |",
        *[f"| recall {name} | {_mean_sd(slices['recall'][name])} |" for name in CLASS_NAMES],
        f"| malignant vs rest, ranking AUC | {_fmt(slices['pairwise_auc']['malignant_vs_rest'])} |",
        f"| benign vs normal, ranking AUC | {_fmt(slices['pairwise_auc']['benign_vs_normal'])} |",
        "",
        "## Studies",
        f"Rule: suspicion is the calibrated probability of malignancy led by the most suspicious slice; "
        f"malignant from suspicion {_fmt(rule['malignant_threshold'])} (chosen for malignant sensitivity "
        f">= {rule['target_sensitivity']}). Benign and normal are named only where their cross-validated "
        f"AUC reaches {rule['separable_auc']} (it is {_fmt(rule['benign_normal_auc'])}: "
        f"{named}).",
        "",
        f"| {study_header} | folds mean ± sd (pooled) |",
        "| --- | --- |",
        f"| malignant sensitivity | {_mean_sd(study['sensitivity'])} |",
        f"| specificity | {_mean_sd(study['specificity'])} |",
        "",
        f"Studies here are {study['approximation']}.",
        "",
        "## Calibration",
        f"{calibration['method']}: temperature {_fmt(calibration['temperature'])}; expected calibration "
        f"error (top label, 10 bins) {_fmt(calibration['ece_before'])} before, "
        f"{_fmt(calibration['ece_after'])} after.",
        "The temperature was fitted on single fold models; the ensemble averages them (see the note below).",
        "",
        f"![reliability]({card['plots']['reliability']})",
        "",
        "## Not assessable",
        f"{assess['method']}. False flags on held-out real slices: {_fmt(assess['false_flag_rate'])}; "
        f"caught {_fmt(assess['catch_rate'])} of {len(assess['non_ct_images'])} generated non-CT images.",
        "",
        "## Plots",
        f"![held-out loss by epoch]({card['plots']['cv_curves']})",
        f"![confusion matrix]({card['plots']['confusion']})",
        "",
        "## Reproduce",
        "```",
        *card.get("reproduce", []),
        "```",
        "The card's figures are recomputed from the saved out-of-fold predictions (`cv_predictions.npz`) "
        "by `inference.training.ensemble.card_from_predictions`; a test checks they match.",
        "",
        "## Notes",
        *[f"- {note}" for note in card.get("notes", [])],
        "",
    ]
    return "\n".join(lines)
