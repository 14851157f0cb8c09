"""`/api/schedules/`: a user's periodic jobs (basic/jobs/schedules.py does the work)."""
from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from basic.api.errors import Conflict
from basic.jobs import schedules
from basic.jobs.registry import kind_choices
from basic.models import Job, Schedule


class ScheduledJobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "status", "created", "url"]
        read_only_fields = fields

    def get_url(self, job: Job) -> str:
        path = reverse("job-detail", kwargs={"pk": job.id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ScheduleSerializer(serializers.Serializer):
    """Exactly one of `crontab` (5 fields, e.g. "*/5 * * * *", in TIME_ZONE) and `every` (seconds)."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=[])
    params = serializers.JSONField(required=False, default=dict, help_text="The kind's parameters.")
    crontab = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=200,
                                    help_text='minute hour day-of-month month day-of-week, e.g. "*/5 * * * *".')
    every = serializers.IntegerField(required=False, allow_null=True, max_value=366 * 24 * 3600,
                                     help_text="Seconds between runs (at least 10).")
    enabled = serializers.BooleanField(required=False, default=True)
    next_run = serializers.SerializerMethodField()
    last_job = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    created = serializers.DateTimeField(read_only=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = kind_choices()

    def to_representation(self, schedule: Schedule) -> dict[str, Any]:
        data = super().to_representation(schedule)
        data["crontab"], data["every"] = schedules.timing(schedule)
        return data

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_next_run(self, schedule: Schedule) -> str | None:
        when = schedules.next_run(schedule)
        return serializers.DateTimeField().to_representation(when) if when else None

    @extend_schema_field(ScheduledJobSerializer(allow_null=True))
    def get_last_job(self, schedule: Schedule) -> dict[str, Any] | None:
        if schedule.last_job is None:
            return None
        return ScheduledJobSerializer(schedule.last_job, context=self.context).data

    def get_owner(self, schedule: Schedule) -> str:
        return schedule.owner.get_username()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        schedule: Schedule | None = self.instance
        try:
            kind = schedules.check_kind(attrs.get("kind", schedule.kind if schedule else ""))
            if schedule is None or "params" in attrs or "kind" in attrs:
                params = attrs.get("params", schedule.params if schedule else {})
                attrs["params"] = schedules.check_params(kind, params, self.context)
            every, crontab = schedules.resolve_timing(schedule, attrs.get("every", schedules.UNSET),
                                                      attrs.get("crontab", schedules.UNSET))
            schedules.check_timing(every, crontab)
        except schedules.ScheduleInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc
        attrs["kind"] = kind
        return attrs

    def create(self, validated: dict[str, Any]) -> Schedule:
        try:
            return schedules.schedule_create(
                owner=self.context["request"].user, kind=validated["kind"], params=validated["params"],
                every=validated.get("every"), crontab=validated.get("crontab") or None,
                enabled=validated.get("enabled", True), limit=settings.SCHEDULES_MAX_PER_USER)
        except schedules.TooManySchedules as exc:
            raise Conflict(str(exc)) from exc

    def update(self, schedule: Schedule, validated: dict[str, Any]) -> Schedule:
        kind = validated.get("kind")
        return schedules.schedule_update(
            schedule=schedule, kind=kind if kind is not None and kind.name != schedule.kind else None,
            params=validated.get("params"), enabled=validated.get("enabled"),
            every=validated.get("every", schedules.UNSET), crontab=validated.get("crontab", schedules.UNSET))


@extend_schema_view(create=extend_schema(responses={201: ScheduleSerializer, 409: None}))
class ScheduleViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin,
                      mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Periodic jobs: each run is an ordinary job of the schedule's owner. Users see and change
    their own schedules; staff see every schedule."""

    serializer_class = ScheduleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return schedules.schedules_visible_to(user=self.request.user)

    def perform_destroy(self, schedule: Schedule) -> None:
        schedules.schedule_delete(schedule=schedule)
