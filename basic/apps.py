from django.apps import AppConfig


class BasicConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "basic"
    verbose_name = "Jobs and students"

    def ready(self) -> None:
        from basic.core import private_files
        from basic.jobs import recovery as worker_recovery  # noqa: F401  (checks registers system checks)
        from basic.jobs.registry import load_kinds
        from basic.ops import checks  # noqa: F401  (checks registers system checks)

        load_kinds()
        worker_recovery.connect_signals()
        private_files.connect_signals()  # a new SQLite file is 0600 from its first connection
