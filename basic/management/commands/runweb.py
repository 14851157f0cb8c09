"""`manage.py runweb`: WEB_PROCESSES Daphne processes serving one port (basic/ops/web_pool.py), each
started again if it dies; SIGTERM or Ctrl-C stops them. docker-compose.yml's `web` runs it, so a
container uses every core it is given; `make run` gets the same pool from runstack."""
import os
import signal
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from basic.ops.web_pool import WebPool


class Command(BaseCommand):
    help = "Serve the web port with WEB_PROCESSES Daphne processes, restarting any that dies."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (compose: 0.0.0.0).")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--processes", type=int, default=settings.WEB_PROCESSES)
        parser.add_argument("--proxy-headers", action="store_true",
                            help="Daphne's: trust X-Forwarded-For (only behind a proxy that sets it).")

    def handle(self, *args, host: str, port: int, processes: int, proxy_headers: bool,
               **options) -> None:  # type: ignore[no-untyped-def]
        stopping = False

        def request_stop(signum, frame):  # type: ignore[no-untyped-def]
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        pool = WebPool(port, processes, {}, host=host, daphne_args=["--proxy-headers"] if proxy_headers else [])
        failed = False
        try:
            pool.start()
            self.stdout.write(f"{processes} web process{'es' if processes > 1 else ''} on {host}:{port}")
            while not stopping and not failed:
                failed = not pool.keep_running(self.stderr.write)
                time.sleep(0.5)
        finally:
            pool.stop()
        if failed:
            sys.exit(1)
