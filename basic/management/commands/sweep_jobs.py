"""`manage.py sweep_jobs [--batch N]`: delete expired jobs, orphan job folders and stale temp files
now, batch after batch until none are left (basic/jobs/retention.py). Workers do the same on their own
every JOB_RETENTION_SWEEP_SECONDS; this is for cron, ops, or deployments without workers running."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from basic.jobs import retention


class Command(BaseCommand):
    help = (f"Delete finished jobs older than JOB_RETENTION_DAYS with their files and events, orphan job "
            f"folders and stale temp files, in batches of {retention.BATCH}.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=retention.BATCH, help="jobs (and folders) per batch")

    def handle(self, *args: object, batch: int, **options: object) -> None:
        jobs = folders = temp_files = 0
        while True:
            result = retention.sweep(batch=max(1, batch))
            jobs, folders, temp_files = jobs + result.jobs, folders + result.folders, temp_files + result.temp_files
            if not result.full:
                break
        retention_days = settings.JOB_RETENTION_DAYS
        kept = f"older than {retention_days} days" if retention_days > 0 else "none: JOB_RETENTION_DAYS is 0"
        self.stdout.write(f"Deleted {jobs} expired jobs ({kept}), {folders} orphan job folders "
                          f"and {temp_files} stale temp files.")
