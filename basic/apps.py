from django.apps import AppConfig


class BasicConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "basic"
    verbose_name = "Jobs and students"

    def ready(self) -> None:
        from . import worker_recovery
        from .lifecycle.registry import load_kinds

        load_kinds()
        worker_recovery.connect_signals()
