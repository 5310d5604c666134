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
    sections = [
        _what_it_is,
        _cannot,
        _slices,
        _studies,
        _calibration,
        _assessable,
        _intervals,
        _lung_fields,
        _heat,
        _runs,
        _rest,
    ]
    rendered = [lines for section in sections if (lines := section(card))]
    return "\n".join(line for lines in rendered for line in [*lines, ""])


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


_INTERVAL_NAMES = {
    "balanced_accuracy": "slices: balanced accuracy",
    "recall_normal": "slices: recall normal",
    "recall_benign": "slices: recall benign",
    "recall_malignant": "slices: recall malignant",
    "malignant_vs_rest_auc": "slices: malignant vs rest, ranking AUC",
    "benign_vs_normal_auc": "slices: benign vs normal, ranking AUC",
    "study_sensitivity": "studies: malignant sensitivity",
    "study_specificity": "studies: specificity",
    "ece_before": "calibration error before (pooled)",
    "ece_after": "calibration error after (pooled)",
    "false_flag_rate": "not assessable: false flags",
    "catch_rate": "not assessable: non-CT images caught",
}


def _intervals(card: dict[str, Any]) -> list[str]:
    intervals = card.get("intervals")
    if not intervals:
        return []
    lines = [
        "## 95% intervals",
        f"Pooled figures with 95% intervals: {intervals['method']} (studies stand for patients: the "
        "dataset names none); rates with no per-slice record by the Wilson score interval. n is what "
        "each figure is measured on. One public dataset, no external test. "
        "`python manage.py card_intervals --data ../shared/datasets/iqothnccd` recomputes them.",
        "",
        "| figure | pooled | 95% interval | n |",
        "| --- | --- | --- | --- |",
    ]
    for key, entry in intervals["figures"].items():
        lines.append(
            f"| {_INTERVAL_NAMES.get(key, key)} | {_fmt(entry['value'])} | {_fmt(entry['low'])} – "
            f"{_fmt(entry['high'])} | {entry['n']} {entry['unit']} |"
        )
    return lines


def _lung_fields(card: dict[str, Any]) -> list[str]:
    lung = card.get("lung_fields")
    if not lung:
        return []
    rules = ", ".join(f"{rule} {count}" for rule, count in lung["by_rule"].items()) or "none"
    return [
        "## Lung fields",
        "A classical segmentation (scikit-image: threshold, connected components, hole filling, "
        "morphology; no downloaded weights), `inference/lung_fields.py`. On these windowed slices only "
        "soft tissue and bone show, so it finds the lung fields inside the ribs (each lung's dark region, "
        "filled and made convex: lesions at its edge stay in), without the air outside, the chest wall, "
        "the axillae or the scanner table; from DICOM Hounsfield units it can find the lungs by density "
        "(`lung_fields_hu`), but served heatmaps use the windowed path for every study today.",
        f"Checked on the dataset's {lung['slices']} distinct slices at {lung['size']} px: "
        f"{lung['flagged']} masks look wrong by the rules (empty, touching the border, area outside "
        f"{lung['area_range'][0]}–{lung['area_range'][1]} of the image, one-sided): {rules}. Median "
        f"area {_fmt(lung['area_median'])} of the image. `{lung['command']}`",
        "",
        f"![lung field outlines]({lung['outlines']})",
        "",
        "The sheet shows mask outlines (red) on each slice's silhouette, flagged masks first (yellow "
        "band); the dataset's images stay out of the repository (`--sheet` writes one with the slices "
        "under var/). The rules miss masks that spill over the chest wall behind or beside the lungs "
        "(where the window leaves it black, and the hull of the bones takes in the shoulder blades): "
        "some on the sheet do. Where a mask breaks the rules no heat is shown.",
    ]


def _heat(card: dict[str, Any]) -> list[str]:
    heat = card.get("heat_in_lungs")
    if not heat:
        return []
    return [
        "## Where the heat is",
        f"Share of Grad-CAM mass inside the lung fields on the dataset's {heat['slices']} malignant "
        f"slices, raw (before masking: where the network looks), each slice explained by "
        f"{heat['explainer']}: mean {_fmt(heat['mean'])}, median {_fmt(heat['median'])}; "
        f"{_fmt(heat['share_at_target'])} of slices at or above {heat['target']} (the target for what "
        f"ships is {heat['target']}: {'met' if (heat['mean'] or 0) >= heat['target'] else 'not met'}). "
        f"{heat['implausible_masks']} of these slices have masks the rules flag; on the others the mean "
        f"is {_fmt(heat['mean_plausible_masks'])}.{_chance(card)} Heatmaps are shown only inside the "
        "lung fields, so what a reader sees is 1.0 inside by construction; the raw share above is the "
        "measure of where the model looks, and most of its heat is outside the lungs: the masked "
        f"heatmap hides it rather than fixes it. `{heat['command']}`",
    ]


def _chance(card: dict[str, Any]) -> str:
    lung = card.get("lung_fields") or {}
    if lung.get("area_median") is None:
        return ""
    return (
        f" For scale: the lung fields cover a median {_fmt(lung['area_median'])} of the input, the share "
        "a heat spread evenly would put inside."
    )


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
