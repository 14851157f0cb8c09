"""`GET /api/kinds/`: every registered job kind and its parameters, for clients that start jobs
(the `jobs` terminal client finds a kind's file field here)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from basic.api.console import start_form
from basic.jobs.registry import CELERY_QUEUES, JobKind, kinds, policy
from basic.jobs.schedules import needs_upload


class KindFieldSerializer(serializers.Serializer):
    """One parameter of a kind, as the console draws it (basic/api/console.py, form_field)."""

    name = serializers.CharField()
    label = serializers.CharField()
    help = serializers.CharField(allow_blank=True)
    required = serializers.BooleanField()
    type = serializers.ChoiceField(choices=["file", "checkbox", "number", "select", "url", "text"])
    min = serializers.IntegerField(required=False, allow_null=True, help_text="number: the least value.")
    max = serializers.IntegerField(required=False, allow_null=True, help_text="number: the greatest value.")
    choices = serializers.ListField(child=serializers.ListField(child=serializers.CharField(), min_length=2,
                                                                max_length=2),
                                    required=False, help_text="select: [value, label] pairs.")
    default = serializers.JSONField(required=False, help_text="The value used when it is left out.")


class PolicySerializer(serializers.Serializer):
    """How this deployment runs the kind (basic/jobs/registry.py; JOB_KIND_POLICIES overrides)."""

    queue = serializers.ChoiceField(choices=list(CELERY_QUEUES),
                                    help_text="io: the gevent pool (jobs that wait); cpu: the prefork pool.")
    time_limit = serializers.IntegerField(help_text="Seconds a run may take before it fails as timed out.")
    retries = serializers.IntegerField(help_text="Further attempts after a transient failure.")
    retry_backoff = serializers.FloatField(help_text="Seconds before the first retry, doubled each time (jittered).")
    concurrency = serializers.IntegerField(allow_null=True,
                                           help_text="At most this many of its jobs run at once; null: no cap.")
    per_user_concurrency = serializers.IntegerField(allow_null=True,
                                                    help_text="At most this many of one user's run at once; null: "
                                                              "no cap.")


class KindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    fields = KindFieldSerializer(many=True)
    multipart = serializers.BooleanField(help_text="Its parameters include a file: start it with a multipart form.")
    schedulable = serializers.BooleanField(help_text="It can be started by a schedule (no upload).")
    batch_url = serializers.CharField(allow_null=True, help_text=(
        "Its own route, where a form with several files starts a batch (one job per file); null: none."))
    policy = PolicySerializer()


class KindListView(APIView):
    @extend_schema(responses={200: KindSerializer(many=True)}, summary="Job kinds and their parameters")
    def get(self, request: Request) -> Response:
        """Each kind: `kind`, `label`, `description`, `fields` (name, type, required, help, …),
        `multipart` (it takes an upload), `schedulable`, `batch_url` (several uploads at once) and
        `policy` (its queue and time limit)."""
        return Response([{**start_form(kind), "schedulable": not needs_upload(kind), "policy": policy_view(kind)}
                         for kind in kinds()])


def policy_view(kind: JobKind) -> dict[str, object]:
    run_policy = policy(kind)
    return {"queue": run_policy.queue, "time_limit": run_policy.time_limit, "retries": run_policy.retries,
            "retry_backoff": run_policy.retry_backoff, "concurrency": run_policy.concurrency,
            "per_user_concurrency": run_policy.per_user_concurrency}
