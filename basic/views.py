"""REST endpoints: thin viewsets over basic/services.py."""
from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from . import services, students
from .errors import Conflict, ServiceUnavailable
from .models import Job, Student
from .reports import report_path
from .serializers import GenerateStudentsSerializer, JobSerializer, StudentSerializer

UUID_PATTERN = r"[0-9a-fA-F-]{32,36}"


def job_accepted(request: Request, job: Job) -> Response:
    """202 with the job and a Location header pointing at it."""
    body = JobSerializer(job, context={"request": request}).data
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class StudentViewSet(viewsets.ModelViewSet):
    queryset = Student.objects.all()
    serializer_class = StudentSerializer
    throttle_scope = "job_trigger"  # used only by the actions that opt into ScopedRateThrottle

    @extend_schema(request=None, responses={202: JobSerializer, 503: None})
    @action(detail=False, methods=["post"], url_path="by-age-report",
            throttle_classes=[ScopedRateThrottle], throttle_scope="job_trigger")
    def by_age_report(self, request: Request) -> Response:
        try:
            job = services.job_start(kind=Job.Kind.STUDENTS_BY_AGE, owner=request.user)
        except services.BrokerUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from exc
        return job_accepted(request, job)

    @extend_schema(request=GenerateStudentsSerializer, responses={201: None})
    @action(detail=False, methods=["post"])
    def generate(self, request: Request) -> Response:
        """Add N students with random names and ages, so a report has something to chew on."""
        params = GenerateStudentsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        created = students.create_random_students(count=params.validated_data["count"])
        return Response({"created": created, "total": Student.objects.count()}, status=status.HTTP_201_CREATED)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self):
        return services.jobs_visible_to(user=self.request.user).select_related("owner")

    @extend_schema(request=None, responses={202: JobSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        if not services.job_cancel(job=job):
            raise Conflict(f"The job is already {job.status}.")
        job.refresh_from_db()
        return job_accepted(request, job)

    @extend_schema(responses={(200, "text/csv"): bytes, 409: None})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        job = self.get_object()
        if job.status != Job.Status.DONE:
            raise Conflict(f"The report is not ready: the job is {job.status}.")
        path = report_path(job.id)
        if not path.exists():
            raise Conflict("The report file is gone; start a new report.")
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type="text/csv")
