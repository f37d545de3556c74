from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Contact sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import driftsync.checks  # noqa: F401  (registers the project's system checks)

        from . import pacing_store, signals  # noqa: F401

        # every worker of an account paces against one bucket (database or Redis)
        pacing_store.install()
        # a connector's helper threads close the database connections they opened
        from django.db import connections

        from connectors import http

        if connections.close_all not in http.THREAD_DONE:
            http.THREAD_DONE.append(connections.close_all)
