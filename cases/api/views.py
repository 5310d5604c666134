"""REST API for integrations. Thin: validate, call one service or selector, serialise.

Team scoping comes from cases.selectors, exactly as for the HTML pages: outside your teams is 404.
"""

from __future__ import annotations

from typing import Any, cast

import django_filters
from django.contrib.auth import authenticate
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from knox import views as knox_views
from rest_framework import generics, mixins, permissions, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from audit import trail
from core.http import error_body, error_response
from inference.models import ModelVersion
from inference.preprocessing import CLASS_NAMES
from pacs.ingest import study_upload
from twofactor import services as second_factor

from .. import selectors, services
from ..agreement import AI_LABELS, NOT_MALIGNANT, VersionAgreement, agreement_by_model_version
from ..files import (
    heatmap_response,
    slice_hounsfield_response,
    slice_image_response,
    slice_thumbnail_response,
    structured_report_response,
)
from ..models import LABEL_CHOICES, Patient, Study
from ..urls_converters import ID_REGEX
from ..worklist import WorklistFilter, worklist
from . import serializers as s
from .throttles import ScopedRateThrottle


class TokenObtainView(APIView):
    """Exchange a username and password for an API token."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_scope = "login"
    throttle_classes = [ScopedRateThrottle]

    @extend_schema(
        request=s.TokenRequestSerializer,
        responses={
            200: inline_serializer(
                "TokenResponse", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()}
            )
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        form = s.TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        code = form.validated_data.pop("otp", "")
        user = authenticate(request._request, **form.validated_data)
        if user is None or not user.is_active:
            raise serializers.ValidationError(
                {"non_field_errors": ["Unable to log in with these credentials."]}
            )
        try:
            second_factor.token_check(user=user, code=code)
        except second_factor.CodeRefused as refused:
            raise serializers.ValidationError({"otp": [str(refused)]}) from None
        with transaction.atomic():
            instance, token = services.token_issue(user=user)
            trail.record(
                trail.Action.LOGIN,
                object_type="user",
                object_id=user.pk,
                user=user,
                detail=f"API token {instance.token_key}",
            )
        return Response({"token": token, "expiry": instance.expiry})


class PatientFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", help_text="MRN or name contains this text.")
    mrn = django_filters.CharFilter(field_name="mrn", lookup_expr="iexact")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    team = django_filters.ModelChoiceFilter(
        queryset=lambda request: selectors.teams_for(request.user), help_text="One of your care teams' ids."
    )
    latest_label = django_filters.ChoiceFilter(
        field_name="latest_label",
        choices=[(c, c) for c in CLASS_NAMES],
        help_text="The AI's label of the latest study (whatever its reading says).",
    )
    latest_result = django_filters.ChoiceFilter(
        field_name="latest_result",
        choices=selectors.RESULT_CHOICES,
        help_text="The latest study's result that counts: its signed reading's label, else the AI's result.",
    )

    def search(self, queryset: Any, name: str, value: str) -> Any:
        return selectors.patients_search(queryset, value)


class HistoryPagination(PageNumberPagination):
    """A patient's history, a page of studies at a time: as many as the patient page shows."""

    page_size = selectors.HISTORY_STUDIES_PER_PAGE


class AuditedRecordMixin(viewsets.GenericViewSet):
    """Reads of one record go into the audit trail; so does an outsider's 404 on an existing one."""

    def get_object(self) -> Any:
        try:
            return super().get_object()
        except Http404:
            model = self.get_queryset().model
            selectors.refused_if_exists(self.request.user, model, self.kwargs.get(self.lookup_field))
            raise

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        trail.read(instance)
        return Response(self.get_serializer(instance).data)


class PatientViewSet(
    AuditedRecordMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
):
    lookup_value_regex = ID_REGEX
    serializer_class = s.PatientSerializer
    filterset_class = PatientFilter

    def get_queryset(self) -> Any:
        return selectors.patients_with_latest_result(self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        trail.read_list("patient_list", detail="searched" if request.query_params else "")
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer: BaseSerializer[Patient]) -> None:
        serializer.instance = services.patient_create(
            created_by=selectors.signed_in(self.request.user), **serializer.validated_data
        )

    def perform_update(self, serializer: BaseSerializer[Patient]) -> None:
        patient = cast(Patient, serializer.instance)  # an update always has its instance
        serializer.instance = services.patient_update(
            patient=patient, updated_by=selectors.signed_in(self.request.user), **serializer.validated_data
        )

    @extend_schema(responses=s.HistoryStudySerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=HistoryPagination)
    def history(self, request: Request, pk: str, format: str | None = None) -> Response:
        """The patient's studies, the latest study date first, paged (`?page=`): each with its
        series, their predictions and readings, newest first."""
        patient = selectors.patient_get(request.user, int(pk))
        studies = self.paginate_queryset(selectors.patient_history(request.user, patient))
        trail.read(patient, object_type="history")
        data = s.HistoryStudySerializer(studies, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)

    @extend_schema(
        request={"multipart/form-data": s.ScanUploadSerializer},
        responses={202: s.ScanAcceptedSerializer},
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        parser_classes=[MultiPartParser, FormParser],
        filterset_class=None,
        pagination_class=None,
    )
    def scans(self, request: Request, pk: str, format: str | None = None) -> Response:
        """Upload one or many slices as a scan; its prediction is queued. Poll `prediction.url`."""
        patient = selectors.patient_get(request.user, int(pk))
        upload = s.ScanUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        stored = study_upload(
            patient=patient, uploaded_by=selectors.signed_in(request.user), **upload.validated_data
        )
        scans = [selectors.scan_get(request.user, scan.pk) for scan in stored]
        body = {"scan": scans[0], "prediction": scans[0].predictions.all()[0], "scans": scans}
        return Response(
            s.ScanAcceptedSerializer(body, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class StudyFilter(django_filters.FilterSet):
    patient = django_filters.NumberFilter(
        field_name="patient_id", min_value=1, max_value=2**63 - 1, help_text="A patient's id."
    )
    study_instance_uid = django_filters.CharFilter(help_text="The DICOM Study Instance UID.")
    accession_number = django_filters.CharFilter(help_text="The accession number.")
    priority = django_filters.ChoiceFilter(choices=Study.Priority.choices)
    study_from = django_filters.DateFilter(field_name="study_date", lookup_expr="gte")
    study_to = django_filters.DateFilter(field_name="study_date", lookup_expr="lte")


class StudyViewSet(AuditedRecordMixin, mixins.ListModelMixin):
    """Imaging studies, the unit of care: each with its series (the scans that hold the slices)."""

    lookup_value_regex = ID_REGEX
    serializer_class = s.StudySerializer
    filterset_class = StudyFilter

    def get_queryset(self) -> Any:
        return selectors.studies_for(self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        trail.read_list("study_list", detail="searched" if request.query_params else "")
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: s.StudyReportSerializer}, filters=False)
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def report(self, request: Request, pk: str, format: str | None = None) -> Response:
        """The study's reading: its signed report as it stands (with addenda), the versions it
        replaced, and second opinions."""
        study = self.get_object()
        trail.read(study, object_type="study_report")
        readings = selectors.study_readings(study)
        report = selectors.report_of(readings)
        body = {
            "study": study,
            "state": report.reading_state if report else "unread",
            "report": report,
            "earlier_versions": [r for r in readings if r.is_report and not r.is_current],
            "second_opinions": [r for r in readings if not r.is_report],
            "disagreement": any(r.disagrees_with_report for r in readings),
        }
        return Response(s.StudyReportSerializer(body, context={"request": request}).data)

    @extend_schema(request=s.AddendumInputSerializer, responses={201: s.AddendumSerializer}, filters=False)
    @action(detail=True, methods=["post"], filterset_class=None, pagination_class=None)
    def addendum(self, request: Request, pk: str, format: str | None = None) -> Response:
        """Add an addendum to the study's signed report: appended with your name and the time, never
        edited. A study without a signed report has nothing to add to (400)."""
        study = self.get_object()
        form = s.AddendumInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        addendum = services.addendum_add(
            study=study, author=selectors.signed_in(request.user), text=form.validated_data["text"]
        )
        return Response(
            s.AddendumSerializer(addendum, context={"request": request}).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(responses={200: s.SeriesSummarySerializer(many=True)})
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def series(self, request: Request, pk: str, format: str | None = None) -> Response:
        """The study's series, in series-number order."""
        study = self.get_object()
        trail.read(study)
        return Response(
            s.SeriesSummarySerializer(study.series.all(), many=True, context={"request": request}).data
        )


class ScanViewSet(AuditedRecordMixin):
    lookup_value_regex = ID_REGEX
    serializer_class = s.ScanSerializer

    def get_queryset(self) -> Any:
        return selectors.scans_detailed(self.request.user)

    @extend_schema(request=None, responses={202: s.PredictionSerializer})
    @action(detail=True, methods=["post"])
    def predictions(self, request: Request, pk: str, format: str | None = None) -> Response:
        """Classify the scan with the active model version, keeping earlier results."""
        scan = self.get_object()
        prediction = services.prediction_request(scan=scan, requested_by=selectors.signed_in(request.user))
        return Response(
            s.PredictionSerializer(prediction, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )


class PredictionViewSet(AuditedRecordMixin):
    lookup_value_regex = ID_REGEX
    serializer_class = s.PredictionSerializer

    def get_queryset(self) -> Any:
        return selectors.predictions_detailed(self.request.user)

    @extend_schema(request=None, responses={202: s.PredictionSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str, format: str | None = None) -> Response:
        """Queue a failed or stale prediction again."""
        prediction = services.prediction_rerun(
            prediction=self.get_object(), requested_by=selectors.signed_in(request.user)
        )
        return Response(
            s.PredictionSerializer(prediction, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        request=s.ReviewSerializer,
        responses={
            201: s.ReviewSerializer,
            409: OpenApiResponse(
                description="The study's report is already signed by someone else (the detail names "
                "who and when): add an addendum or record a second opinion."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def reviews(self, request: Request, pk: str, format: str | None = None) -> Response:
        """Sign the study's report on a succeeded prediction (agreeing with or correcting the AI),
        record a second opinion (`kind`), or correct a reading (`supersedes`)."""
        prediction = self.get_object()
        form = s.ReviewSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        fields = dict(form.validated_data)
        fields.setdefault("verdict", services.verdict_for(prediction, fields.get("label", "")))
        try:
            review = services.review_submit(
                prediction=prediction,
                reviewer=selectors.signed_in(request.user),
                supersedes=fields.pop("supersedes_id", None),
                **fields,
            )
        except services.ReportConflict as conflict:
            return Response(error_body(" ".join(conflict.messages)), status=status.HTTP_409_CONFLICT)
        return Response(
            s.ReviewSerializer(review, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions with their held-out metrics; `is_active` marks the one new scans get."""

    lookup_value_regex = ID_REGEX
    serializer_class = s.ModelVersionSerializer
    queryset = ModelVersion.objects.order_by("-created_at", "-id")


class ImageRenderer(renderers.BaseRenderer):
    """Lets clients ask for images; the views return the file itself."""

    media_type = "image/*"
    format = "image"
    charset = None
    render_style = "binary"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        return data


class OctetRenderer(ImageRenderer):
    media_type = "application/octet-stream"
    format = "octet"


class _FileView(APIView):
    renderer_classes = [renderers.JSONRenderer, ImageRenderer]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(response, FileResponse):  # errors are always JSON, whatever was asked for
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class SliceFileView(_FileView):
    @extend_schema(
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The slice"),
            409: OpenApiResponse(description="The stored file no longer matches its SHA-256; not served."),
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse | JsonResponse:
        return slice_image_response(selectors.slice_get(request.user, pk))


class DicomRenderer(ImageRenderer):
    media_type = "application/dicom"
    format = "dicom"


class StructuredReportView(_FileView):
    renderer_classes = [renderers.JSONRenderer, DicomRenderer]

    @extend_schema(
        responses={
            (200, "application/dicom"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The prediction's DICOM Structured Report (Part 10)"
            ),
            409: OpenApiResponse(description="The prediction has no result yet."),
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse | JsonResponse:
        """The AI result as a DICOM SR referencing the source series (DICOM studies only; else 404)."""
        return structured_report_response(selectors.prediction_get(request.user, pk))


class SliceHounsfieldView(_FileView):
    renderer_classes = [renderers.JSONRenderer, OctetRenderer]

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="Hounsfield units, little-endian int16, row by row"
            ),
            409: OpenApiResponse(description="The stored file no longer matches its SHA-256; not served."),
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse | JsonResponse:
        """A DICOM slice's Hounsfield units (width × height values, as in the slice's record)."""
        return slice_hounsfield_response(selectors.slice_get(request.user, pk))


class SliceThumbnailView(_FileView):
    @extend_schema(
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="Thumbnail")}
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        return slice_thumbnail_response(selectors.slice_get(request.user, pk))


class HeatmapView(_FileView):
    @extend_schema(
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="Grad-CAM")}
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        return heatmap_response(selectors.slice_result_get(request.user, pk))


class WorklistView(generics.ListAPIView):
    """Studies to read: unread first, the most suspicious on top (the clinician's home page)."""

    serializer_class = s.WorklistItemSerializer
    filterset_class = WorklistFilter

    def get_queryset(self) -> Any:
        return worklist(self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        trail.read_list("worklist", detail="filtered" if request.query_params else "")
        return super().list(request, *args, **kwargs)


# knox signals user_logged_out after revoking: the audit trail records a token revocation.
@extend_schema(request=None, responses={204: None})
class TokenLogoutView(knox_views.LogoutView):
    """Revoke the token this request was made with."""


@extend_schema(request=None, responses={204: None})
class TokenLogoutAllView(knox_views.LogoutAllView):
    """Revoke every token of the calling user."""


@csrf_exempt  # it changes nothing; a POST must get the JSON 404, not a CSRF page
def api_not_found(request: Any, path: str = "") -> JsonResponse:
    """Unmatched API paths (e.g. a non-numeric id) answer in the API's error format, not HTML."""
    return error_response("Not found.", status=404)


# Built with inline_serializer: a declared field called `label` clashes with Field.label in the stubs.
CLASS_AGREEMENT_FIELDS: dict[str, serializers.Field] = {
    "label": serializers.ChoiceField(choices=LABEL_CHOICES),
    "ai": serializers.IntegerField(help_text="Reviews where the AI said this class."),
    "reviewed": serializers.IntegerField(help_text="Reviews where the reviewer said this class."),
    "both": serializers.IntegerField(),
    "confirmed_rate": serializers.FloatField(
        allow_null=True, help_text="both / ai: of the AI's calls, the share reviewers confirmed."
    ),
    "found_rate": serializers.FloatField(
        allow_null=True, help_text="both / reviewed: of the reviewers' calls, the share the AI made."
    ),
}


MATRIX_SCHEMA = {
    "type": "object",
    "description": "AI label -> reviewed label -> number of current reviews. "
    f"`{NOT_MALIGNANT}` is a study the rule called not malignant without telling benign from normal.",
    "properties": {
        ai: {
            "type": "object",
            "properties": {name: {"type": "integer", "minimum": 0} for name in CLASS_NAMES},
            "required": list(CLASS_NAMES),
        }
        for ai in AI_LABELS
    },
    "required": list(AI_LABELS),
}


class VersionAgreementSerializer(serializers.Serializer):
    model_version_id = serializers.IntegerField()
    model_version = serializers.CharField(help_text="The model version's name.")
    predictions = serializers.IntegerField(help_text="Succeeded predictions with a current review.")
    reviews = serializers.IntegerField(help_text="Current reviews: each counts once.")
    agreed = serializers.IntegerField()
    agreement_rate = serializers.FloatField(allow_null=True, help_text="agreed / reviews.")
    matrix = serializers.SerializerMethodField()
    classes = inline_serializer("ClassAgreement", CLASS_AGREEMENT_FIELDS, many=True)

    @extend_schema_field(MATRIX_SCHEMA)
    def get_matrix(self, obj: VersionAgreement) -> dict[str, dict[str, int]]:
        return obj.matrix


class AgreementView(APIView):
    """Agreement of the AI's labels with the reviewed labels, per model version. Administrators only.

    Reviewed cases only: not a random sample of scans."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(responses=VersionAgreementSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(VersionAgreementSerializer(agreement_by_model_version(), many=True).data)
