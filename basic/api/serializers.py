"""Input validation and output shapes for the REST API."""
from rest_framework import serializers

from basic.api.fields_once import FieldsBuiltOnce
from basic.core.reverse_by_id import reverse_by_id
from basic.jobs.registry import get_kind, kind_choices, validate_params
from basic.models import Job, Student


def absolute_url(context: dict, path: str) -> str:
    """`path` on the host the request came to (as it is, without a request)."""
    request = context.get("request")
    return request.build_absolute_uri(path) if request else path


def socket_url(context: dict, path: str) -> str:
    """`absolute_url` for a socket path: ws:// (wss:// behind TLS)."""
    http_url = absolute_url(context, path)
    return "ws" + http_url[4:] if http_url.startswith("http") else http_url


class StudentSerializer(serializers.ModelSerializer):
    name = serializers.CharField(min_length=1, max_length=100)
    age = serializers.IntegerField(min_value=0, max_value=150)

    class Meta:
        model = Student
        fields = ["id", "name", "age", "created"]
        read_only_fields = ["id", "created"]


class GenerateStudentsSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=100_000)


class GeneratedStudentsSerializer(serializers.Serializer):
    """The answer to `POST /api/students/generate/` (for the OpenAPI schema)."""

    created = serializers.IntegerField(help_text="Students added by this call.")
    total = serializers.IntegerField(help_text="Your students now (STUDENTS_MAX at most).")


class JobSerializer(FieldsBuiltOnce):
    url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()
    result_url = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    # The seq of the job's event stream this row is at least as new as: a page that also hears the
    # job's events (a batch member's, on /ws/events/) keeps whichever of the two is newer.
    seq = serializers.IntegerField(source="last_seq", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "progress", "message", "error", "owner", "params", "result",
            "created", "started", "finished", "url", "events_url", "result_url", "output_bytes",
            "attempt", "not_before", "batch", "seq",
        ]
        read_only_fields = fields

    def get_url(self, job: Job) -> str:
        return absolute_url(self.context, reverse_by_id("job-detail", job.id))

    def get_events_url(self, job: Job) -> str:
        return socket_url(self.context, f"/ws/jobs/{job.id}/")

    def get_result_url(self, job: Job) -> str | None:
        if job.status != Job.Status.DONE:
            return None
        return absolute_url(self.context, reverse_by_id("job-download", job.id))

    def get_owner(self, job: Job) -> str | None:
        return job.owner.get_username() if job.owner_id else None


class JobStartSerializer(serializers.Serializer):
    """`{"kind": …, "params": {…}}`: the kind's own serializer validates `params`."""

    kind = serializers.ChoiceField(choices=[])
    params = serializers.DictField(required=False, default=dict)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = kind_choices()

    def validate(self, data: dict) -> dict:
        kind = get_kind(data["kind"])
        return {"kind": kind, "params": validate_params(kind, data.get("params") or {}, self.context, nest="params")}
