"""The floor of any Django REST trigger (bench/bench_jobs.py, `bare.http`): a Django app with one
plain sync view that calls `apply_async` on bare Celery's task and answers 202, on stock Daphne.

No middleware, no database, no authentication, no serializer, no events: the least a job platform
built on Django, Daphne and Celery pays per REST-started job. `/incr` sends `bare.incr`; `/job`
first INSERTs the sender's row and sends `bare.job` (bench/bare_celery.py), the least a recorded
job costs; `/drf` is `/incr` through DRF's APIView. Issue 19 measures the project against
`bare.incr` called in-process; the gap between that and this floor is what HTTP, Daphne and
Django's request cycle cost before any of our code.

With FLOOR_PLUMBING=ours the same view goes through this project's request plumbing instead:
its server (`python -m basic.realtime.server`, Daphne with its bounds) and its handler
(basic/core/one_hop_handler.py: the middleware chain and the view in one hop, on kept threads).
That is the least a REST call can cost here before any of the platform's own work.

Run: `python -m daphne -b 127.0.0.1 -p PORT bench.floor_web:application` (or `basic.realtime.server`)
with REDIS_URL and FLOOR_ROWS (the bare.job SQLite file) in the environment.
"""
import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-floor-only",  # no sessions, no signing: nothing uses it
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    LOGGING_CONFIG=None,
    # Read by the project's own server and handler when the floor runs on them (FLOOR_PLUMBING).
    WEB_REQUEST_THREADS=32, WS_MAX_UNSENT_BYTES=1 << 20, REQUEST_MAX_BODY_BYTES=1 << 20,
    WS_HANDSHAKES_AT_ONCE=64, WS_HANDSHAKE_MAX_WAIT_SECONDS=5,
    REST_FRAMEWORK={"UNAUTHENTICATED_USER": None, "DEFAULT_AUTHENTICATION_CLASSES": [],
                    "DEFAULT_PERMISSION_CLASSES": [], "DEFAULT_THROTTLE_CLASSES": [],
                    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
                    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"]},
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from bench import bare_celery  # noqa: E402

KEY = os.environ.get("FLOOR_KEY", "bench:floor")
ROWS = os.environ.get("FLOOR_ROWS", "")
bare_celery.app.conf.broker_url = os.environ.get("REDIS_URL", bare_celery.REDIS_URL)


@csrf_exempt
def incr(request: HttpRequest) -> JsonResponse:
    result = bare_celery.incr.apply_async(args=[KEY])
    return JsonResponse({"id": result.id}, status=202)


@csrf_exempt
def job(request: HttpRequest) -> JsonResponse:
    row = bare_celery.insert_row(ROWS)
    result = bare_celery.job.apply_async(args=[KEY, row, ROWS])
    return JsonResponse({"id": result.id, "row": row}, status=202)


class DrfIncr(APIView):
    """`/drf`: the same as `/incr` through DRF's dispatch, parser and renderer (no authentication,
    permission or throttle: each of those is a choice, DRF's request cycle is not)."""

    def post(self, request: Request) -> Response:
        result = bare_celery.incr.apply_async(args=[KEY])
        return Response({"id": result.id, "params": request.data.get("params")}, status=202)


urlpatterns = [path("incr", incr), path("drf", DrfIncr.as_view()), path("job", job)]
if os.environ.get("FLOOR_PLUMBING") == "ours":
    from basic.core.one_hop_handler import OneHopASGIHandler

    application = OneHopASGIHandler()
else:
    application = get_asgi_application()
