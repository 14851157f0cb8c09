"""What any job trigger accepts beside the kind's parameters (issue 20): `priority`, and a delayed
start with `run_at` or `delay_seconds`. Read from the query string or the body's top level (JSON
or form), so the same names work on `POST /api/jobs/`, each kind's route and the report alias."""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from basic.jobs.registry import PRIORITIES, TRIGGER_OPTION_NAMES

PAST_SLACK_SECONDS = 60  # a `run_at` this little in the past (clocks differ) means "now"


@dataclass(frozen=True)
class TriggerOptions:
    priority: int | None = None
    not_before: datetime | None = None
    given: dict[str, Any] = field(default_factory=dict)  # as the caller gave them (an Idempotency-Key's)


class TriggerOptionsSerializer(serializers.Serializer):
    priority = serializers.IntegerField(
        required=False, min_value=min(PRIORITIES), max_value=max(PRIORITIES),
        help_text="0-9, 9 first; the kind's by default. Above JOB_PRIORITY_MAX_USER only for staff.")
    run_at = serializers.DateTimeField(required=False,
                                       help_text="Start then (ISO 8601), not now: the job is `scheduled`.")
    delay_seconds = serializers.IntegerField(required=False, min_value=0,
                                             help_text="Start this many seconds from now: the job is `scheduled`.")

    def validate_priority(self, value: int) -> int:
        user = self.context["user"]
        if value > settings.JOB_PRIORITY_MAX_USER and not user.is_staff:
            raise serializers.ValidationError(
                f"Your jobs' priority can be at most {settings.JOB_PRIORITY_MAX_USER} (JOB_PRIORITY_MAX_USER).")
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "run_at" in data and "delay_seconds" in data:
            raise serializers.ValidationError({"run_at": "Give run_at or delay_seconds, not both."})
        now = timezone.now()
        latest = now + timezone.timedelta(days=settings.JOB_MAX_DELAY_DAYS)
        if "delay_seconds" in data:
            if data["delay_seconds"] > settings.JOB_MAX_DELAY_DAYS * 86400:
                raise serializers.ValidationError(
                    {"delay_seconds": f"At most {settings.JOB_MAX_DELAY_DAYS} days (JOB_MAX_DELAY_DAYS)."})
            data["not_before"] = now + timezone.timedelta(seconds=data["delay_seconds"])
        if "run_at" in data:
            if data["run_at"] < now - timezone.timedelta(seconds=PAST_SLACK_SECONDS):
                raise serializers.ValidationError({"run_at": "That time has passed: give a time to come."})
            if data["run_at"] > latest:
                raise serializers.ValidationError(
                    {"run_at": f"At most {settings.JOB_MAX_DELAY_DAYS} days ahead (JOB_MAX_DELAY_DAYS)."})
            data["not_before"] = data["run_at"]
        return data


_WHERE = " In the query string or at the body's top level (JSON or form)."
TRIGGER_OPTIONS_PARAMETERS = [
    OpenApiParameter("priority", int, required=False, description=(
        "0-9, 9 first: queued jobs of a higher priority are started first. The kind's by default; above "
        "JOB_PRIORITY_MAX_USER (6) only for staff." + _WHERE)),
    OpenApiParameter("run_at", OpenApiTypes.DATETIME, required=False, description=(
        "Start at this time (ISO 8601), at most JOB_MAX_DELAY_DAYS ahead: the job is `scheduled` until then "
        "and can be cancelled meanwhile." + _WHERE)),
    OpenApiParameter("delay_seconds", int, required=False, description=(
        "Start this many seconds from now (not with run_at)." + _WHERE)),
]


def trigger_options(request: Any) -> TriggerOptions:
    """The options of a start request, or a DRF ValidationError (400) naming the bad one."""
    given: dict[str, Any] = {name: request.query_params[name] for name in TRIGGER_OPTION_NAMES
                             if name in request.query_params}
    body = request.data if hasattr(request.data, "get") else {}
    for name in TRIGGER_OPTION_NAMES:
        if name in body:
            if name in given and str(body.get(name)) != str(given[name]):
                raise serializers.ValidationError({name: "Given twice, with different values."})
            given[name] = body.get(name)
    if not given:
        return TriggerOptions()
    options = TriggerOptionsSerializer(data=given, context={"user": request.user})
    options.is_valid(raise_exception=True)
    valid = options.validated_data
    return TriggerOptions(priority=valid.get("priority"), not_before=valid.get("not_before"),
                          given={name: valid[name] for name in TRIGGER_OPTION_NAMES if name in valid})
