"""Django's ASGI handler for a process whose views are all sync (issue 19): app/asgi.py serves
REST through it, and bench/floor_web.py measures the floor of a REST call with it."""
from typing import Any

from django.core.handlers.asgi import ASGIHandler, ASGIRequest

from basic.core import collector


class HostOnceRequest(ASGIRequest):
    """Django's ASGI request, its host checked against ALLOWED_HOSTS once: Django checks it again
    for each call, and a job start made three (CommonMiddleware, the 202's two absolute URLs), 1.5%
    of the web process's CPU per start (py-spy, issue 19). A refused host is refused every time."""

    def get_host(self) -> str:
        host = self.__dict__.get("_checked_host")
        if host is None:
            host = self._checked_host = super().get_host()
        return host


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain and the view run as one sync call, in the
    request's own thread (issue 19).

    Every view here is sync, and WhiteNoise is sync-only, so Django's async chain went back and
    forth between the event loop and the request's thread for each middleware's process_request,
    process_view and process_response and for the view: about 15 hops a request, each a wake-up of
    the loop and of the thread, most of the web process's CPU per `POST /api/jobs/`. Here the chain
    is built sync, as under WSGI, and entered once. (An async view would still work, adapted by
    Django, at the cost of a hop.)

    The chain runs on one of WEB_REQUEST_THREADS threads the process keeps, each with its SQLite
    connection kept open, while one is free; otherwise on a thread of the request's own, as Django
    does (basic/core/kept_threads.py)."""

    request_class = HostOnceRequest

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Django's, less the ThreadSensitiveContext it opens around each request. That context
        gives the request's thread-sensitive calls a thread of their own, started and joined per
        request (4-5% of the web process's CPU per job start, py-spy). Here the chain and the view
        run on a kept thread (or, past those, on a thread of their own: KeptThreadsFirst), so all
        it still carried were Django's request_started and response.close() hops, whose receivers
        tidy that thread's database connections: it has none. They now go to asgiref's one
        long-lived thread for thread-sensitive calls, which nothing here blocks on."""
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        collector.request_began()  # the collector's batches follow the requests in flight
        try:
            await self.handle(scope, receive, send)
        finally:
            collector.request_ended()

    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        from basic.core.kept_threads import KeptThreadsFirst

        super().load_middleware(is_async=False)
        self._middleware_chain = KeptThreadsFirst(self._middleware_chain, settings.WEB_REQUEST_THREADS, "request")
