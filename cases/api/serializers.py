from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference.models import ModelVersion
from inference.preprocessing import ACCEPTED_FORMATS_TEXT, CLASS_NAMES

from ..models import (
    Addendum,
    CareTeam,
    Patient,
    Prediction,
    Review,
    Scan,
    Slice,
    SliceResult,
    Study,
)
from ..selectors import teams_for
from ..worklist import READINGS, STATES


def _absolute(context: dict[str, Any], name: str, pk: int) -> str:
    url = reverse(f"api:{name}", args=[pk])
    request = context.get("request")
    return request.build_absolute_uri(url) if request else url


PROBABILITIES_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "Per-class probabilities summing to 1; null until the prediction succeeds.",
    "properties": {name: {"type": "number", "minimum": 0, "maximum": 1} for name in CLASS_NAMES},
    "required": list(CLASS_NAMES),
}


class ProbabilitiesMixin(serializers.Serializer):
    probabilities = serializers.SerializerMethodField()

    @extend_schema_field(PROBABILITIES_SCHEMA)
    def get_probabilities(self, obj: Any) -> dict[str, float] | None:
        return obj.probabilities


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text="Staff, where a second factor is required: the current code from their authenticator app.",
    )


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "sha256", "metrics", "created_at", "is_active"]


class SliceSerializer(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField(help_text="The image; needs the same authentication.")
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Slice
        fields = [
            "id",
            "position",
            "original_name",
            "content_type",
            "width",
            "height",
            "size_bytes",
            "sha256",
            "source_sha256",
            "file_url",
            "thumbnail_url",
        ]
        read_only_fields = ["source_sha256"]

    def get_file_url(self, obj: Slice) -> str:
        return _absolute(self.context, "slice-file", obj.pk)

    def get_thumbnail_url(self, obj: Slice) -> str:
        return _absolute(self.context, "slice-thumbnail", obj.pk)


class SliceResultSerializer(ProbabilitiesMixin, serializers.ModelSerializer):
    heatmap_url = serializers.SerializerMethodField()

    class Meta:
        model = SliceResult
        fields = ["slice", "assessable", "reason", "label", "probabilities", "heatmap_url"]

    def get_heatmap_url(self, obj: SliceResult) -> str | None:
        return _absolute(self.context, "heatmap", obj.pk) if obj.heatmap else None


class AddendumSerializer(serializers.ModelSerializer):
    """Text added to a signed report: who, when, what; never edited."""

    author = serializers.CharField(source="author.get_username", read_only=True)

    class Meta:
        model = Addendum
        fields = ["id", "report", "author", "text", "created_at"]
        read_only_fields = ["report"]


class AddendumInputSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4000, help_text="The addendum: appended to the signed report.")


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.get_username", read_only=True)
    addenda = AddendumSerializer(many=True, read_only=True, help_text="Text added to this report version.")
    supersedes = serializers.IntegerField(
        source="supersedes_id",
        required=False,
        allow_null=True,
        min_value=1,
        help_text="To correct a review: its id. The correction supersedes it; both are kept.",
    )
    superseded_by = serializers.IntegerField(
        source="superseded_by.pk",
        read_only=True,
        allow_null=True,
        help_text="The review correcting this one.",
    )

    class Meta:
        model = Review
        fields = [
            "id",
            "prediction",
            "study",
            "kind",
            "reviewer",
            "verdict",
            "label",
            "comment",
            "created_at",
            "supersedes",
            "superseded_by",
            "addenda",
        ]
        read_only_fields = ["prediction", "study"]
        extra_kwargs = {
            "kind": {
                "required": False,
                "help_text": (
                    "report (the default): the study's signed report, one per study (a second "
                    "signature is answered 409); second_opinion: another reader's reading. A "
                    "correction keeps the kind of the reading it supersedes."
                ),
            },
            "label": {
                "required": False,
                "allow_blank": True,
                "help_text": (
                    "The label you read. Required when disagreeing; agreeing takes the model's label."
                ),
            },
            "verdict": {
                "required": False,
                "help_text": "agree or disagree; left out, it follows from `label`, as in the sign-off form.",
            },
        }
        validators: list[Any] = []  # one review per reviewer is checked by the service

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("verdict") and not attrs.get("label"):
            raise serializers.ValidationError({"label": ["Give the label you read (or a verdict)."]})
        return attrs


class StudyReportSerializer(serializers.Serializer):
    """A study's reading: its signed report as it stands, with its addenda and earlier versions,
    and second opinions."""

    study = serializers.IntegerField(source="study.pk")
    state = serializers.ChoiceField(choices=READINGS, help_text="unread, final, addended or amended.")
    report = ReviewSerializer(allow_null=True, help_text="The current version of the signed report.")
    earlier_versions = ReviewSerializer(many=True, help_text="Versions it replaced, the newest first.")
    second_opinions = ReviewSerializer(many=True, help_text="Other readers' readings, the newest first.")
    disagreement = serializers.BooleanField(
        help_text="A current second opinion's label differs from the report's."
    )


class PredictionSerializer(ProbabilitiesMixin, serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Poll this URL until status is succeeded or failed.")
    model_version = serializers.CharField(source="model_version.name", read_only=True)
    wait_seconds = serializers.FloatField(read_only=True, allow_null=True)
    run_seconds = serializers.FloatField(read_only=True, allow_null=True)
    slice_results = SliceResultSerializer(many=True, read_only=True)
    reviews = ReviewSerializer(many=True, read_only=True)
    aggregation = serializers.SerializerMethodField()
    most_suspicious_slices = serializers.SerializerMethodField(
        help_text="Ids of the assessable slices, the most suspicious for malignancy first."
    )
    model_performance = serializers.JSONField(
        source="model_version.metrics",
        read_only=True,
        help_text="The model version's measured figures (cross-validated), to read beside the result.",
    )

    class Meta:
        model = Prediction
        fields = [
            "id",
            "url",
            "scan",
            "status",
            "label",
            "finding",
            "suspicion",
            "suspicious_slices",
            "not_assessable_slices",
            "most_suspicious_slices",
            "probabilities",
            "aggregation",
            "model_version",
            "model_performance",
            "weights_sha256",
            "error",
            "attempts",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "wait_seconds",
            "run_seconds",
            "inference_seconds",
            "slice_results",
            "reviews",
        ]

    def get_url(self, obj: Prediction) -> str:
        return _absolute(self.context, "prediction-detail", obj.pk)

    def get_aggregation(self, obj: Prediction) -> str:
        return Prediction.AGGREGATION_RULE

    def get_most_suspicious_slices(self, obj: Prediction) -> list[int]:
        return [result.slice_id for result in obj.most_suspicious_first]


class PredictionSummarySerializer(ProbabilitiesMixin, serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model_version = serializers.CharField(source="model_version.name", read_only=True)

    class Meta:
        model = Prediction
        fields = [
            "id",
            "url",
            "status",
            "label",
            "finding",
            "suspicion",
            "probabilities",
            "model_version",
            "error",
            "created_at",
        ]

    def get_url(self, obj: Prediction) -> str:
        return _absolute(self.context, "prediction-detail", obj.pk)


DICOM_FIELDS = [
    "received_via",
    "modality",
    "study_instance_uid",
    "series_instance_uid",
    "series_number",
    "series_description",
    "accession_number",
    "slice_thickness",
    "dicom_patient_id",
    "dicom_patient_name",
    "dicom_birth_date",
    "dicom_sex",
    "window_center",
    "window_width",
    "window_source",
]


DICOM_NUMBERS = {
    "series_number": "integer",
    "slice_thickness": "number",
    "window_center": "number",
    "window_width": "number",
}


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


class ScanSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    dicom = serializers.SerializerMethodField()
    slices = SliceSerializer(many=True, read_only=True)
    predictions = PredictionSerializer(many=True, read_only=True)

    class Meta:
        model = Scan
        fields = [
            "id",
            "url",
            "patient",
            "study",
            "study_date",
            "note",
            "created_at",
            "dicom",
            "slices",
            "predictions",
        ]

    def get_url(self, obj: Scan) -> str:
        return _absolute(self.context, "scan-detail", obj.pk)

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "description": "The DICOM series' header and the window the model's input was made with; "
            "null for JPEG/PNG studies.",
            "properties": {
                name: {"type": DICOM_NUMBERS.get(name, "string"), "nullable": True} for name in DICOM_FIELDS
            },
        }
    )
    def get_dicom(self, obj: Scan) -> dict[str, Any] | None:
        if not obj.is_dicom:
            return None
        return {name: _plain(getattr(obj, name)) for name in DICOM_FIELDS}


class SeriesSummarySerializer(serializers.ModelSerializer):
    """A series of a study, in brief: the scan it is, and where to read it whole."""

    url = serializers.SerializerMethodField()
    slices = serializers.IntegerField(source="slice_count", read_only=True)

    class Meta:
        model = Scan
        fields = [
            "id",
            "url",
            "series_instance_uid",
            "series_number",
            "series_description",
            "modality",
            "received_via",
            "created_at",
            "slices",
        ]

    def get_url(self, obj: Scan) -> str:
        return _absolute(self.context, "scan-detail", obj.pk)


class StudySerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    series = SeriesSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "url",
            "patient",
            "study_instance_uid",
            "accession_number",
            "study_date",
            "study_time",
            "description",
            "priority",
            "indication",
            "created_at",
            "series",
        ]

    def get_url(self, obj: Study) -> str:
        return _absolute(self.context, "study-detail", obj.pk)


class ScanUploadSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text=(
            f"One or many {ACCEPTED_FORMATS_TEXT} CT slices of one study, or DICOM files (.dcm, or a "
            ".zip of them; each series becomes a scan) — multipart field `files`, repeated."
        ),
    )
    study_date = serializers.DateField(required=False, help_text="Ignored for DICOM: its StudyDate counts.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    confirm_patient = serializers.BooleanField(
        required=False,
        default=False,
        help_text="DICOM: store series whose PatientID differs from this patient's MRN (else refused).",
    )
    priority = serializers.ChoiceField(
        choices=Study.Priority.choices,
        required=False,
        help_text="routine, urgent or stat; DICOM without it: RequestedProcedurePriority, else routine.",
    )
    indication = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="Why the study was requested."
    )


class ScanAcceptedSerializer(serializers.Serializer):
    scan = ScanSerializer(help_text="The first scan stored.")
    prediction = PredictionSummarySerializer(help_text="Its queued prediction.")
    scans = ScanSerializer(many=True, help_text="Every scan stored: one per DICOM series.")


class PatientSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    team = serializers.PrimaryKeyRelatedField(
        queryset=CareTeam.objects.none(),  # the caller's own teams, set in __init__
        required=False,
        help_text="Care team id; optional when you belong to exactly one team.",
    )
    team_name = serializers.CharField(source="team.name", read_only=True)
    latest_status = serializers.CharField(
        read_only=True, allow_null=True, default=None, help_text="The state of the latest study's AI result."
    )
    latest_label = serializers.CharField(
        read_only=True, allow_null=True, default=None, help_text="The AI's label of the latest study."
    )
    latest_result = serializers.CharField(
        read_only=True,
        allow_null=True,
        default=None,
        help_text="What counts: the latest study's signed reading's label, else the AI's result "
        "(a label, not_malignant, not_assessable, or its state).",
    )
    latest_reading = serializers.SerializerMethodField(
        help_text="The latest study's reading: final, amended, or unread (null: no study)."
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "url",
            "mrn",
            "name",
            "birth_date",
            "sex",
            "team",
            "team_name",
            "created_at",
            "latest_status",
            "latest_label",
            "latest_result",
            "latest_reading",
        ]
        # Uniqueness of (team, MRN) is checked by the service, with the team resolved first.
        validators: list[Any] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        self._teams: QuerySet[CareTeam] = teams_for(user) if user is not None else CareTeam.objects.none()
        cast(serializers.PrimaryKeyRelatedField, self.fields["team"]).queryset = self._teams

    def get_url(self, obj: Patient) -> str:
        return _absolute(self.context, "patient-detail", obj.pk)

    def get_latest_reading(self, obj: Patient) -> str | None:
        if getattr(obj, "latest_study_id", None) is None:
            return None
        if getattr(obj, "latest_reading_label", None) is None:
            return "unread"
        return "amended" if getattr(obj, "latest_reading_amended", False) else "final"

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and "team" not in attrs:
            teams = list(self._teams[:2])
            if len(teams) != 1:
                raise serializers.ValidationError(
                    {
                        "team": ["Give a team: you belong to several care teams."]
                        if teams
                        else ["You are not in a care team; ask an administrator to add you to one."]
                    }
                )
            attrs["team"] = teams[0]
        return attrs


class HistoryPredictionSerializer(PredictionSummarySerializer):
    """A prediction of a series in the history, with its readings (newest first)."""

    reviews = ReviewSerializer(many=True, read_only=True)

    class Meta(PredictionSummarySerializer.Meta):
        fields = [*PredictionSummarySerializer.Meta.fields, "reviews"]


class HistorySeriesSerializer(SeriesSummarySerializer):
    """A series of a study in the history, with its predictions (newest first)."""

    predictions = HistoryPredictionSerializer(many=True, read_only=True)

    class Meta(SeriesSummarySerializer.Meta):
        fields = [*SeriesSummarySerializer.Meta.fields, "note", "predictions"]


class HistoryStudySerializer(StudySerializer):
    """A study in a patient's history: its series (newest first), their predictions and readings."""

    series = HistorySeriesSerializer(many=True, read_only=True)


class WorklistItemSerializer(serializers.Serializer):
    """One study on the worklist: who, when, what the AI said and whether a clinician has read it."""

    scan = serializers.IntegerField(source="pk")
    url = serializers.SerializerMethodField()
    report_url = serializers.SerializerMethodField()
    patient = serializers.SerializerMethodField()
    team = serializers.CharField(source="patient.team.name")
    study_date = serializers.DateField()
    slices = serializers.IntegerField(source="slice_count")
    prediction = serializers.IntegerField(source="prediction_id", allow_null=True)
    prediction_url = serializers.SerializerMethodField()
    state = serializers.ChoiceField(
        choices=STATES,
        allow_null=True,
        help_text="The latest prediction's state (not_assessable: finished, but no slice could be assessed).",
    )
    suspicion = serializers.FloatField(allow_null=True, help_text="Calibrated probability of malignancy.")
    ai_label = serializers.CharField(allow_null=True)
    finding = serializers.CharField(allow_null=True)
    not_assessable_slices = serializers.IntegerField(allow_null=True)
    reading = serializers.ChoiceField(
        choices=READINGS, help_text="The study's signed report: unread, final, addended or amended."
    )
    read_label = serializers.CharField(allow_null=True, help_text="The signed report's label.")
    read_by = serializers.CharField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    disagreement = serializers.BooleanField(
        help_text="A second opinion on the study differs from its signed report's label."
    )

    def get_url(self, obj: Scan) -> str:
        return _absolute(self.context, "scan-detail", obj.pk)

    def get_report_url(self, obj: Scan) -> str:
        url = reverse("cases:scan_report", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_prediction_url(self, obj: Any) -> str | None:
        return _absolute(self.context, "prediction-detail", obj.prediction_id) if obj.prediction_id else None

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "mrn": {"type": "string"}, "name": {"type": "string"}},
        }
    )
    def get_patient(self, obj: Scan) -> dict[str, Any]:
        return {"id": obj.patient_id, "mrn": obj.patient.mrn, "name": obj.patient.name}
