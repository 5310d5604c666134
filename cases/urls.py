from django.urls import path

from . import views
from .urls_converters import IdConverter  # noqa: F401  (registers <id:...>)

app_name = "cases"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/new/", views.patient_create, name="patient_create"),
    path("patients/<id:pk>/", views.patient_detail, name="patient_detail"),
    path("patients/<id:pk>/compare/", views.patient_compare, name="patient_compare"),
    path("patients/<id:pk>/edit/", views.patient_edit, name="patient_edit"),
    path("patients/<id:pk>/scans/new/", views.scan_upload, name="scan_upload"),
    path("scans/<id:pk>/", views.scan_detail, name="scan_detail"),
    path("scans/<id:pk>/report/", views.scan_report, name="scan_report"),
    path("scans/<id:pk>/predict/", views.scan_predict, name="scan_predict"),
    path("predictions/status/", views.prediction_status, name="prediction_status"),
    path("predictions/<id:pk>/", views.prediction_detail, name="prediction_detail"),
    path("predictions/<id:pk>/rerun/", views.prediction_rerun, name="prediction_rerun"),
    path("predictions/<id:pk>/reviews/", views.review_submit, name="review_submit"),
    path("studies/<id:pk>/addendum/", views.addendum_add, name="addendum_add"),
    path("files/slices/<id:pk>/", views.slice_image, name="slice_image"),
    path("files/slices/<id:pk>/hounsfield/", views.slice_hounsfield, name="slice_hounsfield"),
    path("predictions/<id:pk>/sr/", views.prediction_sr, name="prediction_sr"),
    path("files/slices/<id:pk>/thumbnail/", views.slice_thumbnail, name="slice_thumbnail"),
    path("files/heatmaps/<id:pk>/", views.slice_result_heatmap, name="slice_result_heatmap"),
    path("agreement/", views.agreement, name="agreement"),
]
