from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

# the admin's login goes through allauth, so its rate limits apply
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("webhooks/", include("connections.webhook_urls")),
]
