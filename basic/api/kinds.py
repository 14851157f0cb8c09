"""`GET /api/kinds/`: every registered job kind and its parameters, for clients that start jobs
(the `jobs` terminal client finds a kind's file field here)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from basic.api.console import start_form
from basic.jobs.registry import kinds
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


class KindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    fields = KindFieldSerializer(many=True)
    multipart = serializers.BooleanField(help_text="Its parameters include a file: start it with a multipart form.")
    schedulable = serializers.BooleanField(help_text="It can be started by a schedule (no upload).")


class KindListView(APIView):
    @extend_schema(responses={200: KindSerializer(many=True)}, summary="Job kinds and their parameters")
    def get(self, request: Request) -> Response:
        """Each kind: `kind`, `label`, `description`, `fields` (name, type, required, help, …),
        `multipart` (it takes an upload) and `schedulable`."""
        return Response([{**start_form(kind), "schedulable": not needs_upload(kind)} for kind in kinds()])
