from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated

from health.views import healthz

from .login import LoginView

handler400 = "lungportal.errors.bad_request"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Only these account views: password reset needs an email service the portal does not have.
    # Django's login page with the API's per-address limit on attempts.
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/2fa/", include("twofactor.urls")),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("cases.api.urls")),
    # The contract and its docs are for logged-in users (token or session) only.
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    # Swagger UI sets inline styles; only its page may.
    path(
        "api/docs/",
        login_required(
            csp_update({"style-src": ["'unsafe-inline'"]})(
                SpectacularSwaggerSplitView.as_view(url_name="schema", permission_classes=[IsAuthenticated])
            )
        ),
        name="api-docs",
    ),
    path("dicomweb/", include("pacs.dicomweb_urls")),
    path("fhir/", include("fhir_api.urls")),
    path("", include("pacs.urls")),
    path("", include("cases.urls")),
]
