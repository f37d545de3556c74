from django.contrib.admin.apps import AdminConfig


class DriftsyncAdminConfig(AdminConfig):
    default_site = "driftsync.admin_site.DriftsyncAdminSite"
