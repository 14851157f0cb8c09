"""The browser console at `/`: one page that drives the REST API and watches every socket."""
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from rest_framework import serializers

from basic.jobs.registry import JobKind, kinds

DEFAULT_CHAT_ROOM = "lobby"


def form_field(name: str, field: serializers.Field) -> dict[str, Any]:
    """How the console draws one parameter of a kind's serializer."""
    described: dict[str, Any] = {
        "name": name,
        "label": str(field.label or name.replace("_", " ").capitalize()),
        "help": str(field.help_text or ""),
        "required": field.required,
    }
    if isinstance(field, serializers.FileField):
        described["type"] = "file"
    elif isinstance(field, serializers.BooleanField):
        described["type"] = "checkbox"
    elif isinstance(field, serializers.IntegerField):
        described.update(type="number", min=field.min_value, max=field.max_value)
    elif isinstance(field, serializers.ChoiceField):
        described.update(type="select", choices=[[str(k), str(v)] for k, v in field.choices.items()])
    else:
        described["type"] = "url" if name == "url" else "text"
    default = field.default
    if default is not serializers.empty and not callable(default):
        described["default"] = default
    return described


def start_form(kind: JobKind) -> dict[str, Any]:
    """A kind's start control, generated from its registry entry."""
    fields = [form_field(name, field) for name, field in kind.params().fields.items() if not field.read_only]
    multipart = any(field["type"] == "file" for field in fields)
    # A kind with an upload and a route of its own takes several files at once there: one batch.
    return {"kind": kind.name, "label": kind.label, "description": kind.description, "fields": fields,
            "multipart": multipart, "batch_url": f"/api/{kind.route}/" if multipart and kind.route else None}


@login_required
@ensure_csrf_cookie  # the page's REST writes send the cookie back as X-CSRFToken
def console(request: HttpRequest) -> HttpResponse:
    forms = [start_form(kind) for kind in kinds()]
    config = {
        "username": request.user.get_username(),
        "kinds": forms,
        "urls": {
            "students": reverse("student-list"),
            "generate": reverse("student-generate"),
            "jobs": reverse("job-list"),
            "batches": reverse("batch-list"),
        },
        "chat": {"room": DEFAULT_CHAT_ROOM, "maxBytes": settings.CHAT_MAX_MESSAGE_BYTES},
    }
    return render(request, "basic/console.html", {"job_kinds": forms, "config": config})
