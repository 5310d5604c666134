from django.urls import path

from cases.urls_converters import IdConverter  # noqa: F401  (registers <id:...>)

from . import views

app_name = "pacs"

urlpatterns = [
    path("dicom/unmatched/", views.unmatched_list, name="unmatched_list"),
    path("dicom/unmatched/<id:pk>/", views.unmatched_resolve, name="unmatched_resolve"),
]
