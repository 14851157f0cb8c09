"""The browser console at `/`: one page that drives the REST API and watches every socket."""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from .models import Job

# The REST action (URL name) that starts each kind of job: a new kind adds one line here and
# gets its own button on the page.
TRIGGER_URL_NAMES = {Job.Kind.STUDENTS_BY_AGE: "student-by-age-report"}

DEFAULT_CHAT_ROOM = "lobby"


def job_kinds() -> list[dict[str, str]]:
    """Every job kind that can be started from the page, with its label and trigger URL."""
    return [
        {"kind": kind, "label": label, "url": reverse(TRIGGER_URL_NAMES[kind])}
        for kind, label in Job.Kind.choices
        if kind in TRIGGER_URL_NAMES
    ]


@login_required
@ensure_csrf_cookie  # the page's REST writes send the cookie back as X-CSRFToken
def console(request: HttpRequest) -> HttpResponse:
    kinds = job_kinds()
    config = {
        "username": request.user.get_username(),
        "kinds": kinds,
        "urls": {
            "students": reverse("student-list"),
            "generate": reverse("student-generate"),
            "jobs": reverse("job-list"),
        },
        "chat": {"room": DEFAULT_CHAT_ROOM, "maxBytes": settings.CHAT_MAX_MESSAGE_BYTES},
    }
    return render(request, "basic/console.html", {"job_kinds": kinds, "config": config})
