from django.apps import AppConfig


class BasicConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "basic"
    verbose_name = "Jobs and students"

    def ready(self) -> None:
        from . import checks, worker_recovery  # noqa: F401  (checks registers system checks)
        from .lifecycle.registry import load_kinds

        load_kinds()
        worker_recovery.connect_signals()
