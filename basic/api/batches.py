"""`/api/batches/`: several jobs started by one request and watched as one (basic/jobs/batches.py
does the work): start (all or nothing), list, read, cancel, and a zip of every member's output."""
from typing import Any

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from basic.api.errors import Conflict
from basic.api.serializers import JobStartSerializer, absolute_url, socket_url
from basic.api.start_refusals import idempotency_key, refusals_answered
from basic.api.throttles import SharedScopedRateThrottle
from basic.api.trigger_options import (
    TRIGGER_OPTIONS_PARAMETERS,
    TriggerOptions,
    TriggerOptionsSerializer,
    trigger_options,
)
from basic.core.reverse_by_id import reverse_by_id
from basic.jobs import batch_events, batch_zip, batches, idempotency
from basic.jobs.registry import TRIGGER_OPTION_NAMES, JobKind, validate_params
from basic.models import Batch, Job

SANDBOX = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


class BatchMemberSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "kind", "status", "progress", "message", "error", "created", "started", "finished", "url"]
        read_only_fields = fields

    def get_url(self, job: Job) -> str:
        return absolute_url(self.context, reverse_by_id("job-detail", job.id))


class BatchCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Scheduled or queued (a retry waits queued).")
    running = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class BatchSerializer(serializers.ModelSerializer):
    """A batch as it is now: its status, the mean of its members' progress (an ended member counts
    100), the counts and every member."""

    progress = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    members = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = ["id", "status", "progress", "total", "counts", "cancel_requested", "owner", "created", "finished",
                  "url", "events_url", "download_url", "members"]
        read_only_fields = fields

    def _members(self, batch: Batch) -> list[Job]:
        cache = getattr(batch, "_members_cache", None)
        if cache is None:
            cache = batch._members_cache = sorted(batch.jobs.all(), key=lambda job: (job.created, str(job.id)))
        return cache

    def get_progress(self, batch: Batch) -> int:
        return batch_events.batch_percent(batch, self._members(batch))

    @extend_schema_field(BatchCountsSerializer)
    def get_counts(self, batch: Batch) -> dict[str, int]:
        counts = dict.fromkeys(("queued", "running", "done", "failed", "cancelled"), 0)
        for job in self._members(batch):
            counts["queued" if job.status == Job.Status.SCHEDULED else job.status] += 1
        return counts

    def get_owner(self, batch: Batch) -> str:
        return batch.owner.get_username()

    @extend_schema_field(BatchMemberSerializer(many=True))
    def get_members(self, batch: Batch) -> list[dict[str, Any]]:
        return BatchMemberSerializer(self._members(batch), many=True, context=self.context).data

    def get_url(self, batch: Batch) -> str:
        return absolute_url(self.context, reverse_by_id("batch-detail", batch.id))

    def get_events_url(self, batch: Batch) -> str:
        return socket_url(self.context, f"/ws/batches/{batch.id}/")

    def get_download_url(self, batch: Batch) -> str:
        return absolute_url(self.context, reverse_by_id("batch-download", batch.id))


class BatchJobRequestSerializer(serializers.Serializer):
    """One member, as `POST /api/jobs/` takes it, with its own trigger options if it likes."""

    kind = serializers.CharField(help_text="A kind without uploads (see GET /api/kinds/); for images, "
                                           "send several to POST /api/thumbnails/.")
    params = serializers.DictField(required=False, help_text="The kind's parameters.")
    priority = serializers.IntegerField(required=False, min_value=0, max_value=9)
    run_at = serializers.DateTimeField(required=False)
    delay_seconds = serializers.IntegerField(required=False, min_value=0)


class BatchStartSerializer(serializers.Serializer):
    """`{"jobs": [{"kind", "params", …}, …]}`: the batch-wide options (query string or top level)
    apply to every member that gives none of its own."""

    jobs = serializers.ListField(child=serializers.DictField(), allow_empty=True,
                                 help_text="1 to BATCH_MAX_JOBS job requests.")


def member_requests(request: Request, items: list[Any], defaults: TriggerOptions, *,
                    kind: JobKind | None = None) -> list[batches.MemberRequest]:
    """Every member validated as a single start would be; a 400 naming each bad member by its index
    and field (`{"jobs": {"2": {"params": {"url": [...]}}}}`) if any is bad, so nothing starts.
    Items are `{"kind", "params", options…}`, or with `kind` given, that kind's parameters (a form's
    fields, one item per upload) under the batch-wide options."""
    try:
        batches.check_size(len(items))
    except batches.BatchTooBig as exc:
        raise serializers.ValidationError({"jobs": [str(exc)]}) from exc
    members, errors = [], {}
    for index, item in enumerate(items):
        try:
            members.append(_member(request, item, defaults) if kind is None else batches.MemberRequest(
                kind=kind, data=validate_params(kind, item, {"request": request}),
                priority=defaults.priority, not_before=defaults.not_before, options=defaults.given))
        except serializers.ValidationError as exc:
            errors[str(index)] = exc.detail
    if errors:
        raise serializers.ValidationError({"jobs": errors})
    return members


def _member(request: Request, item: Any, defaults: TriggerOptions) -> batches.MemberRequest:
    if not isinstance(item, dict):
        raise serializers.ValidationError({"non_field_errors": ["Each job is an object: {\"kind\", \"params\"}."]})
    start = JobStartSerializer(data={"kind": item.get("kind"), "params": item.get("params") or {}},
                               context={"request": request})
    start.is_valid(raise_exception=True)
    unknown = set(item) - {"kind", "params", *TRIGGER_OPTION_NAMES}
    if unknown:
        raise serializers.ValidationError({name: ["Not a field of a batch's job."] for name in sorted(unknown)})
    given = {name: item[name] for name in TRIGGER_OPTION_NAMES if name in item}
    options = defaults
    if given:
        checked = TriggerOptionsSerializer(data=given, context={"user": request.user})
        checked.is_valid(raise_exception=True)
        own = {name: checked.validated_data[name] for name in TRIGGER_OPTION_NAMES if name in checked.validated_data}
        # The member's own priority, or its own start time (run_at or delay_seconds), replaces the
        # batch's; what it does not give is the batch's.
        timing = {"run_at", "delay_seconds"}
        replaced = (own.keys() & {"priority"}) | (timing if own.keys() & timing else set())
        options = TriggerOptions(priority=checked.validated_data.get("priority", defaults.priority),
                                 not_before=checked.validated_data.get("not_before", defaults.not_before),
                                 given={**{name: value for name, value in defaults.given.items()
                                           if name not in replaced}, **own})
    return batches.MemberRequest(kind=start.validated_data["kind"], data=start.validated_data["params"],
                                 priority=options.priority, not_before=options.not_before, options=options.given)


def start_batch(request: Request, members: list[batches.MemberRequest]) -> Response:
    """Start the validated members as one batch: 202 with it and a Location header. With an
    `Idempotency-Key` the caller used before (the same members, within JOB_IDEMPOTENCY_HOURS), that
    request's batch as it is now: 200 with `Idempotent-Replayed: true` (basic/jobs/idempotency.py)."""
    key = idempotency_key(request)
    replayed = False
    with refusals_answered():
        if key is None:
            batch = batches.batch_start(owner=request.user, members=members)
        else:
            started = batches.batch_start_once(owner=request.user, key=key, members=members)
            batch, replayed = started.batch, started.replayed
    batch = Batch.objects.select_related("owner").prefetch_related("jobs").get(id=batch.id)
    body = BatchSerializer(batch, context={"request": request}).data
    response = Response(body, status=status.HTTP_200_OK if replayed else status.HTTP_202_ACCEPTED,
                        headers={"Location": body["url"]})
    if replayed:
        response[idempotency.REPLAYED_HEADER] = "true"
    return response


BATCH_START_RESPONSES = {
    202: BatchSerializer,
    200: OpenApiResponse(BatchSerializer, description=(
        "The batch an earlier request with the same Idempotency-Key and the same jobs started, as it is "
        "now (with `Location` and `Idempotent-Replayed: true`); nothing new is started.")),
    400: OpenApiResponse(description=(
        "A bad member (named by its index and field: nothing is started), no members, or more than "
        "BATCH_MAX_JOBS; or a bad Idempotency-Key.")),
    409: OpenApiResponse(description=(
        "Your jobs' stored output is at your quota (JOB_OUTPUT_QUOTA_MB); or a request with the same "
        "Idempotency-Key is still being processed (retry).")),
    422: OpenApiResponse(description=(
        "This Idempotency-Key was used with a different request (other jobs, or a single job) within "
        'JOB_IDEMPOTENCY_HOURS: `{"detail", "code": "idempotency_key_reused"}`.')),
    429: OpenApiResponse(description="Too many starts (a batch counts as one); retry after the time given."),
    503: OpenApiResponse(description="The job queue is unreachable; the members are marked failed."),
}
BATCH_IDEMPOTENCY_KEY = OpenApiParameter(
    idempotency.HEADER, str, location=OpenApiParameter.HEADER, required=False, pattern=r"^[ -~]{1,255}$",
    description=("Optional, 1-255 printable ASCII characters (e.g. a UUID per batch, reused on its retries). "
                 "The same key and jobs (kinds, parameters, options, in the same order) from you within "
                 "JOB_IDEMPOTENCY_HOURS (default 24) answer 200 with the first batch instead of starting "
                 "another; the same key with other jobs is a 422. A refused batch leaves the key free."),
)


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your batches (staff: everyone's); another user's is a 404, as if it did not exist."""

    serializer_class = BatchSerializer
    lookup_value_regex = r"[0-9A-Za-z{}:-]{1,64}"
    throttle_scope = "job_trigger"

    def get_queryset(self):
        return batches.batches_visible_to(user=self.request.user).select_related("owner").prefetch_related("jobs")

    def get_object(self) -> Batch:
        batch = batches.batch_visible_to(user=self.request.user, batch_id=self.kwargs["pk"])
        if batch is None:
            raise NotFound("No such batch.")
        return self.get_queryset().get(id=batch.id)

    def get_throttles(self):
        return [SharedScopedRateThrottle()] if self.action == "create" else super().get_throttles()

    @extend_schema(request=BatchStartSerializer, responses=BATCH_START_RESPONSES,
                   parameters=[BATCH_IDEMPOTENCY_KEY, *TRIGGER_OPTIONS_PARAMETERS])
    def create(self, request: Request) -> Response:
        """Start several jobs as one batch: one aggregate progress and end on `/ws/batches/{id}/`,
        one cancel, one zip. All or nothing: a bad member is a 400 and nothing starts. With an
        `Idempotency-Key`, a retry of the same batch answers 200 with the first one."""
        body = BatchStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        defaults = trigger_options(request)
        return start_batch(request, member_requests(request, body.validated_data["jobs"], defaults))

    @extend_schema(request=None, responses={202: BatchSerializer, 404: None, 409: None})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel every member still active; the batch ends `cancelled` once they have stopped."""
        batch = self.get_object()
        if not batches.batch_cancel(batch=batch):
            raise Conflict(f"The batch is already {batch.status}.")
        batch = self.get_queryset().get(id=batch.id)
        return Response(BatchSerializer(batch, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY, 404: None, 409: None})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        """A zip of every member's output there is (done members), each named `<number>-<name>`;
        409 while no member has one."""
        batch = self.get_object()
        try:
            zipped = batch_zip.open_batch_zip(batch)
        except batch_zip.NothingToZip as exc:
            raise Conflict(str(exc)) from exc
        response = FileResponse(zipped, as_attachment=True, filename=f"batch-{batch.id}.zip",
                                content_type="application/zip")
        for header, value in SANDBOX.items():
            response[header] = value
        return response
