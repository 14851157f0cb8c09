"""REST endpoints: thin viewsets over basic/jobs/services.py."""
import mimetypes
from functools import partial

from django.http import FileResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from basic.api.batches import BatchSerializer, member_requests, start_batch
from basic.api.errors import Conflict
from basic.api.serializers import (
    GeneratedStudentsSerializer,
    GenerateStudentsSerializer,
    JobSerializer,
    JobStartSerializer,
    StudentSerializer,
    validate_params,
)
from basic.api.start_refusals import idempotency_key, refusals_answered
from basic.api.throttles import SharedScopedRateThrottle
from basic.api.trigger_options import TRIGGER_OPTIONS_PARAMETERS, trigger_options
from basic.jobs import files, idempotency, services
from basic.jobs.registry import JobKind, get_kind, kind_choices, kinds
from basic.jobs.schedules import needs_upload
from basic.models import Job
from basic.students import generate as students

# The kind `POST /api/students/by-age-report/` starts. The API knows kinds only by name, through the
# registry, so it works with whatever JOB_KIND_MODULES loads.
BY_AGE_REPORT_KIND = "students_by_age"

UUID_PATTERN = r"[0-9a-fA-F-]{32,36}"
# Outputs are served as attachments in a sandbox, whatever they hold (a fetched page is someone
# else's HTML); only images are shown inline (thumbnail previews).
SANDBOX = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def job_accepted(request: Request, job: Job) -> Response:
    """202 with the job and a Location header pointing at it."""
    body = JobSerializer(job, context={"request": request}).data
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


def start(request: Request, kind: JobKind, data: dict) -> Response:
    """Start `kind` with validated `data`: 202. With an `Idempotency-Key` the caller used before (same
    request, within JOB_IDEMPOTENCY_HOURS), that request's job as it is now: 200 (basic/jobs/idempotency.py)."""
    key = idempotency_key(request)
    options = trigger_options(request)  # priority, run_at, delay_seconds: a 400 naming a bad one
    start_job = partial(services.job_start, kind=kind, owner=request.user, data=data, priority=options.priority,
                        not_before=options.not_before)
    with refusals_answered():
        if key is None:
            return job_accepted(request, start_job())
        started = idempotency.start_once(owner=request.user, key=key,
                                         fingerprint=idempotency.fingerprint(kind.name, data, options.given),
                                         start=start_job)
    response = job_accepted(request, started.job)
    if started.replayed:
        response.status_code = status.HTTP_200_OK
        response[idempotency.REPLAYED_HEADER] = "true"
    return response


START_ERRORS = {
    400: OpenApiResponse(description="An unknown kind or bad parameters, named by field; or a bad Idempotency-Key."),
    409: OpenApiResponse(description=(
        "Your jobs' stored output is at your quota (JOB_OUTPUT_QUOTA_MB); or a request with the same "
        "Idempotency-Key is still being processed (retry).")),
    422: OpenApiResponse(description=(
        "This Idempotency-Key was used with a different request within JOB_IDEMPOTENCY_HOURS: "
        '`{"detail", "code": "idempotency_key_reused"}`.')),
    429: OpenApiResponse(description="Too many job starts; retry after the time given."),
    503: OpenApiResponse(description="The job queue is unreachable; the job is marked failed."),
}
# What every start answers (the view's, the by-age alias's and each kind route's).
START_RESPONSES = {
    202: JobSerializer,
    200: OpenApiResponse(JobSerializer, description=(
        "The job an earlier request with the same Idempotency-Key and body started, as it is now "
        "(with `Location` and `Idempotent-Replayed: true`); nothing new is started.")),
    **START_ERRORS,
}
IDEMPOTENCY_KEY = OpenApiParameter(
    idempotency.HEADER, str, location=OpenApiParameter.HEADER, required=False,
    pattern=r"^[ -~]{1,255}$",
    description=("Optional, 1-255 printable ASCII characters (e.g. a UUID per start, reused on its retries). "
                 "The same key and body from you within JOB_IDEMPOTENCY_HOURS (default 24) answer 200 with the first "
                 "job instead of starting another; the same key with another body is a 422."),
)


def _start_request_schema() -> dict[str, serializers.Serializer]:
    """`POST /api/jobs/` as it is accepted, for the OpenAPI schema: JSON `{kind, params}`, one shape
    per kind that takes no upload (a file can't travel in JSON), told apart by `kind`; or a
    multipart form with `kind` and the kind's parameters as fields (every kind's fields, none
    required by the form itself: which ones a kind needs is in its own shape and GET /api/kinds/)."""
    as_json = {
        kind.name: type(f"{kind.name.title().replace('_', '')}JobStart", (serializers.Serializer,), {
            "kind": serializers.ChoiceField(choices=[kind.name]),
            "params": kind.params(required=False),
        })
        for kind in kinds() if not needs_upload(kind)
    }
    form_fields: dict[str, serializers.Field] = {"kind": serializers.ChoiceField(choices=kind_choices())}
    for kind in kinds():
        for name, field in kind.params._declared_fields.items():
            form_fields.setdefault(name, type(field)(*field._args, **{**field._kwargs, "required": False}))
    as_form = type("JobStartForm", (serializers.Serializer,), form_fields)
    return {
        "application/json": PolymorphicProxySerializer(
            component_name="JobStart", serializers=as_json, resource_type_field_name="kind"),
        "multipart/form-data": as_form,
    }


def _output_media_types() -> list[str]:
    """What a download can be: each kind's media type; any type when a kind's results name their own."""
    return sorted({kind.media_type or "*/*" for kind in kinds()})


@extend_schema_view(create=extend_schema(responses={201: StudentSerializer, 409: None}))
class StudentViewSet(viewsets.ModelViewSet):
    """A user's own students: another user's id is a 404, as if it did not exist (staff included:
    the Django admin shows every student). Adding is capped at STUDENTS_MAX per owner (409)."""

    serializer_class = StudentSerializer
    throttle_scope = "job_trigger"  # used only by the actions that opt into the throttle

    def get_queryset(self):
        return students.students_of(self.request.user)

    def perform_create(self, serializer: StudentSerializer) -> None:
        try:
            serializer.instance = students.add_student(owner=self.request.user, **serializer.validated_data)
        except students.StudentsFull as exc:
            raise Conflict(str(exc)) from exc

    @extend_schema(request=None, responses=START_RESPONSES, parameters=[IDEMPOTENCY_KEY, *TRIGGER_OPTIONS_PARAMETERS])
    @action(detail=False, methods=["post"], url_path="by-age-report",
            throttle_classes=[SharedScopedRateThrottle], throttle_scope="job_trigger")
    def by_age_report(self, request: Request) -> Response:
        """Start the students-by-age report of your students (the same as POST /api/jobs/ with kind
        students_by_age)."""
        kind = get_kind(BY_AGE_REPORT_KIND)
        if kind is None:
            raise NotFound("The students-by-age report is not installed here (JOB_KIND_MODULES).")
        return start(request, kind, {})

    @extend_schema(request=GenerateStudentsSerializer, responses={201: GeneratedStudentsSerializer, 409: None})
    @action(detail=False, methods=["post"], throttle_classes=[SharedScopedRateThrottle],
            throttle_scope="student_generate")
    def generate(self, request: Request) -> Response:
        """Add N students with random names and ages to yours, so a report has something to chew on.
        Throttled per user (429) and capped at STUDENTS_MAX students per user (409)."""
        params = GenerateStudentsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        count = params.validated_data["count"]
        try:
            total = students.add_random_students(owner=request.user, count=count)
        except students.StudentsFull as exc:
            raise Conflict(str(exc)) from exc
        return Response({"created": count, "total": total}, status=status.HTTP_201_CREATED)


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("status", str, enum=Job.Status.values, description="Only jobs in this state."),
    OpenApiParameter("kind", str, description="Only jobs of this kind (see GET /api/kinds/)."),
]))
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    lookup_value_regex = r"[0-9A-Za-z{}:-]{1,64}"  # any UUID spelling: braces, urn:uuid:, no dashes, upper case
    throttle_scope = "job_trigger"

    def get_queryset(self):
        jobs = services.jobs_visible_to(user=self.request.user).select_related("owner")
        if self.action == "list":  # ?status=…&kind=… (the `jobs list` client filters with these)
            for name in ("status", "kind"):
                if self.request.query_params.get(name):
                    jobs = jobs.filter(**{name: self.request.query_params[name]})
        return jobs

    def get_throttles(self):
        return [SharedScopedRateThrottle()] if self.action == "create" else super().get_throttles()

    @extend_schema(request=_start_request_schema(), responses=START_RESPONSES,
                   parameters=[IDEMPOTENCY_KEY, *TRIGGER_OPTIONS_PARAMETERS])
    def create(self, request: Request) -> Response:
        """Start a job of any registered kind: `{"kind": …, "params": {…}}` as JSON, or as a
        multipart form with `kind` and the parameters as fields (for uploads)."""
        if request.content_type.startswith("multipart/"):
            fields = {key: request.data.get(key) for key in request.data if key != "kind"}
            body = {"kind": request.data.get("kind"), "params": fields}
        else:
            body = request.data
        start_request = JobStartSerializer(data=body, context={"request": request})
        start_request.is_valid(raise_exception=True)
        return start(request, start_request.validated_data["kind"], start_request.validated_data["params"])

    @extend_schema(request=None, responses={202: JobSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        if not services.job_cancel(job=job):
            raise Conflict(f"The job is already {job.status}.")
        job.refresh_from_db()
        return job_accepted(request, job)

    @extend_schema(request=None, responses={204: None, 404: None, 409: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Delete a finished job with its files and events, freeing its space in your quota; 409
        while it is queued or running (cancel it first)."""
        job = self.get_object()
        if not services.job_delete(job=job):
            now = Job.objects.filter(id=job.id).values_list("status", flat=True).first()
            if now is not None:  # (None: deleted meanwhile, e.g. by the retention sweep)
                raise Conflict(f"The job is {now}; cancel it first, then delete it once it has stopped.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={**{(200, media_type): bytes for media_type in _output_media_types()}, 409: None})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        """The job's result file, with its kind's media type (a CSV, a zip, a fetched page)."""
        job = self.get_object()
        if job.status != Job.Status.DONE:
            raise Conflict(f"The result is not ready: the job is {job.status}.")
        if not job.output_name:
            raise Conflict("This job has no file to download; its result is in the job's `result`.")
        kind = get_kind(job.kind)
        media_type = (kind.media_type if kind else None) or (job.result or {}).get("content_type")
        return self._serve(job, job.output_name, media_type or "application/octet-stream", attachment=True)

    @extend_schema(responses={(200, "*/*"): bytes, 404: None, 409: None})
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,199})")
    def files(self, request: Request, pk: str | None = None, name: str = "") -> FileResponse:
        """One output file of a finished job by name (e.g. a thumbnail, for previews)."""
        job = self.get_object()
        if job.status != Job.Status.DONE:
            raise Conflict(f"The result is not ready: the job is {job.status}.")
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._serve(job, name, media_type, attachment=not media_type.startswith("image/"))

    def _serve(self, job: Job, name: str, media_type: str, attachment: bool) -> FileResponse:
        try:
            path = files.output_path(job.id, name)
        except ValueError:
            path = None
        if path is None or not path.is_file():
            raise Conflict("That file is gone (outputs are deleted after a while); start the job again.")
        response = FileResponse(path.open("rb"), as_attachment=attachment, filename=name, content_type=media_type)
        for header, value in SANDBOX.items():
            response[header] = value
        return response


def upload_field(kind: JobKind) -> str | None:
    """The name of the kind's file field, if it takes an upload."""
    return next((name for name, field in kind.params._declared_fields.items()
                 if isinstance(field, serializers.FileField)), None)


def kind_start_view(kind: JobKind) -> type[APIView]:
    """`POST /api/<route>/`: start `kind` with its parameters as the request body (JSON or form)."""

    # An upload can only come as a multipart form; other kinds' parameters also as JSON or a plain form.
    body_types = ["multipart/form-data"] if needs_upload(kind) else [
        "application/json", "application/x-www-form-urlencoded", "multipart/form-data"]

    upload = upload_field(kind)
    job_or_batch = PolymorphicProxySerializer(
        component_name=f"{kind.name.title().replace('_', '')}Started", serializers=[JobSerializer, BatchSerializer],
        resource_type_field_name=None)
    responses = START_RESPONSES if upload is None else {
        **START_RESPONSES,
        202: OpenApiResponse(job_or_batch, description=(
            f"The job; or, with several `{upload}` files in one form, a batch of one job per file "
            "(see /api/batches/).")),
        200: OpenApiResponse(job_or_batch, description=(
            "The job (or batch) an earlier request with the same Idempotency-Key and body started, as it is now "
            "(with `Location` and `Idempotent-Replayed: true`); nothing new is started.")),
    }

    @extend_schema(request={body_type: kind.params for body_type in body_types},
                   responses=responses, parameters=[IDEMPOTENCY_KEY, *TRIGGER_OPTIONS_PARAMETERS],
                   operation_id=f"{kind.name}_start",
                   summary=f"Start: {kind.label}", description=kind.description + (
                       f" Several `{upload}` files in one form start a batch, one job per file." if upload else ""),
                   tags=["jobs"])
    def post(self: APIView, request: Request) -> Response:
        data = request.data.dict() if hasattr(request.data, "dict") else request.data
        uploads = request.FILES.getlist(upload) if upload else []
        if len(uploads) > 1:  # one job per file, started as one batch
            items = [{**data, upload: one} for one in uploads]
            members = member_requests(request, items, trigger_options(request), kind=kind)
            return start_batch(request, members)
        return start(request, kind, validate_params(kind, data, {"request": request}))

    return type(f"{kind.name.title().replace('_', '')}StartView", (APIView,), {
        "post": post, "throttle_classes": [SharedScopedRateThrottle], "throttle_scope": "job_trigger",
        "serializer_class": kind.params,
    })
