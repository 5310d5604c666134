from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from audit.api import AuditEntryList

from ..urls_converters import IdConverter  # noqa: F401  (registers <id:...>)
from . import views

app_name = "api"

router = DefaultRouter()
router.register("patients", views.PatientViewSet, basename="patient")
router.register("studies", views.StudyViewSet, basename="study")
router.register("scans", views.ScanViewSet, basename="scan")
router.register("predictions", views.PredictionViewSet, basename="prediction")
router.register("models", views.ModelVersionViewSet, basename="modelversion")

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="token"),
    path("auth/logout/", views.TokenLogoutView.as_view(), name="logout"),
    path("auth/logout-all/", views.TokenLogoutAllView.as_view(), name="logout-all"),
    path("slices/<id:pk>/file/", views.SliceFileView.as_view(), name="slice-file"),
    path("slices/<id:pk>/thumbnail/", views.SliceThumbnailView.as_view(), name="slice-thumbnail"),
    path("slices/<id:pk>/hounsfield/", views.SliceHounsfieldView.as_view(), name="slice-hounsfield"),
    path("predictions/<id:pk>/sr/", views.StructuredReportView.as_view(), name="prediction-sr"),
    path("heatmaps/<id:pk>/", views.HeatmapView.as_view(), name="heatmap"),
    path("worklist/", views.WorklistView.as_view(), name="worklist"),
    path("audit/", AuditEntryList.as_view(), name="audit"),
    path("agreement/", views.AgreementView.as_view(), name="agreement"),
    path("webhooks/", include("webhooks.api_urls")),
    path("", include(router.urls)),
    re_path(r"^(?P<path>[\s\S]*)$", views.api_not_found),  # [\s\S]: a newline is no escape to HTML
]
