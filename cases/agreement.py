"""Agreement between the AI's labels and the clinicians' reviewed labels, per model version.

What the figures mean:
- Each study counts once, by its signed report as it stands (a correction replaces the version it
  supersedes; second opinions are not the study's reading and are not counted here), against the
  AI result it was signed on. Only succeeded predictions are counted.
- The confusion matrix has a row per AI label and a column per reviewed label. A study the rule
  called "not malignant" without telling benign from normal has its own row (`not_malignant`);
  it agrees overall when the reviewer said normal or benign, and in the per-class figures it
  counts as the AI saying neither of those classes.
- Per class X: of the reviews where the AI said X, the share the reviewer confirmed
  (`confirmed_rate`), and of the reviews where the reviewer said X, the share the AI found
  (`found_rate`); None where nothing was counted.

These are not figures from a random sample: only the cases clinicians chose to review are counted,
so they describe the reviewed cases, not the model's accuracy on every scan.

Readers' agreement (`reader_agreement`): of the studies with a signed report and a current second
opinion, those where a second opinion's label differs from the report's; each study counts once,
however many second opinions it has.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from inference.preprocessing import CLASS_NAMES

from .models import Prediction, Review, Study, current_report, disagreement

NOT_MALIGNANT = "not_malignant"  # the key for an AI label of "" (benign and normal not told apart)
AI_LABELS: tuple[str, ...] = (*CLASS_NAMES, NOT_MALIGNANT)
NEGATIVE_CLASSES = frozenset(CLASS_NAMES) - {"malignant"}  # what "not malignant" agrees with


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class MatrixRow:
    """How reviewers labelled the studies the AI gave one label; counts in CLASS_NAMES order."""

    ai_label: str
    counts: tuple[int, ...]

    @property
    def display(self) -> str:
        return self.ai_label.replace("_", " ")

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def cells(self) -> list[tuple[str, int]]:
        return list(zip(CLASS_NAMES, self.counts, strict=True))


@dataclass(frozen=True)
class ClassAgreement:
    label: str
    ai: int  # reviews where the AI said this class
    reviewed: int  # reviews where the reviewer said it
    both: int

    @property
    def confirmed_rate(self) -> float | None:
        """Of the AI's calls of this class, the share reviewers confirmed."""
        return _rate(self.both, self.ai)

    @property
    def found_rate(self) -> float | None:
        """Of the reviewers' calls of this class, the share the AI had made."""
        return _rate(self.both, self.reviewed)


@dataclass(frozen=True)
class VersionAgreement:
    model_version_id: int
    model_version: str
    predictions: int  # predictions a current report was signed on
    reviews: int  # current reports: one per study
    agreed: int
    rows: tuple[MatrixRow, ...]  # in AI_LABELS order
    classes: tuple[ClassAgreement, ...]  # in CLASS_NAMES order

    @property
    def agreement_rate(self) -> float | None:
        return _rate(self.agreed, self.reviews)

    @property
    def matrix(self) -> dict[str, dict[str, int]]:
        """AI label -> reviewed label -> count."""
        return {row.ai_label: dict(row.cells) for row in self.rows}


def _agrees(ai_label: str, reviewed: str) -> bool:
    return ai_label == reviewed or (ai_label == NOT_MALIGNANT and reviewed in NEGATIVE_CLASSES)


def _version(pk: int, name: str, predictions: int, cells: dict[tuple[str, str], int]) -> VersionAgreement:
    rows = tuple(MatrixRow(a, tuple(cells.get((a, r), 0) for r in CLASS_NAMES)) for a in AI_LABELS)
    classes = tuple(
        ClassAgreement(
            label=c,
            ai=sum(n for (a, _), n in cells.items() if a == c),
            reviewed=sum(n for (_, r), n in cells.items() if r == c),
            both=cells.get((c, c), 0),
        )
        for c in CLASS_NAMES
    )
    return VersionAgreement(
        model_version_id=pk,
        model_version=name,
        predictions=predictions,
        reviews=sum(cells.values()),
        agreed=sum(n for (a, r), n in cells.items() if _agrees(a, r)),
        rows=rows,
        classes=classes,
    )


def _current_reviews() -> QuerySet[Review]:
    """Each study's current report (one per study), on a succeeded prediction."""
    return (
        Review.objects.reports().current().filter(prediction__status=Prediction.Status.SUCCEEDED).order_by()
    )


@dataclass(frozen=True)
class ReaderAgreement:
    """Studies with a signed report and a current second opinion, and those of them where a
    second opinion's label differs from the report's: each study once."""

    studies: int
    disagreed: int

    @property
    def agreed(self) -> int:
        return self.studies - self.disagreed

    @property
    def agreement_rate(self) -> float | None:
        return _rate(self.agreed, self.studies)


def reader_agreement() -> ReaderAgreement:
    """One aggregate query over studies: each study counts once, whatever its second opinions."""
    opinions = Review.objects.second_opinions().current().filter(study=OuterRef("pk"))
    counts = (
        Study.objects.filter(Exists(current_report(OuterRef("pk"))), Exists(opinions))
        .order_by()
        .aggregate(studies=Count("pk"), disagreed=Count("pk", filter=Q(disagreement(OuterRef("pk")))))
    )
    return ReaderAgreement(studies=counts["studies"], disagreed=counts["disagreed"])


def agreement_by_model_version() -> list[VersionAgreement]:
    """Agreement figures for every model version with reported predictions, newest version first.

    Two aggregate queries, whatever the number of reports: counts per (version, AI label, reported
    label), and reported predictions per version."""
    version = "prediction__model_version_id"
    grouped = (
        _current_reviews()
        .values(
            version,
            "prediction__model_version__name",
            "prediction__model_version__created_at",
            "prediction__label",
            "label",
        )
        .annotate(n=Count("id"))
        .order_by("-prediction__model_version__created_at", f"-{version}")
    )
    predictions = dict(
        _current_reviews()
        .values(version)
        .annotate(n=Count("prediction_id", distinct=True))
        .values_list(version, "n")
    )
    names: dict[int, str] = {}
    cells: defaultdict[int, dict[tuple[str, str], int]] = defaultdict(dict)
    for g in grouped:
        pk = g[version]
        names[pk] = g["prediction__model_version__name"]
        cells[pk][(g["prediction__label"] or NOT_MALIGNANT, g["label"])] = g["n"]
    return [_version(pk, name, predictions.get(pk, 0), cells[pk]) for pk, name in names.items()]
