"""DICOMweb for PACS and routers (token auth, like the API)."""

from django.urls import path, re_path

from .dicomweb import StowRsView

app_name = "dicomweb"

urlpatterns = [
    path("studies", StowRsView.as_view(), name="stow"),
    re_path(r"^studies/(?P<study>[0-9.]{1,64})$", StowRsView.as_view(), name="stow-study"),
]
