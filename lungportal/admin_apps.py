from django.contrib.admin.apps import AdminConfig


class PortalAdminConfig(AdminConfig):
    """django.contrib.admin with our site (kept apart: an app config module may not import models)."""

    default_site = "lungportal.admin_site.PortalAdminSite"
