from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from .provider import DriftProvider

urlpatterns = default_urlpatterns(DriftProvider)
