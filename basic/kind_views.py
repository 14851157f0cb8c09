"""`GET /api/kinds/`: every registered job kind and its parameters, for clients that start jobs
(the `jobs` terminal client finds a kind's file field here)."""
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .lifecycle.registry import kinds
from .pages import start_form
from .schedules import needs_upload


class KindListView(APIView):
    @extend_schema(responses={200: dict}, summary="Job kinds and their parameters")
    def get(self, request: Request) -> Response:
        """Each kind: `kind`, `label`, `description`, `fields` (name, type, required, help, …),
        `multipart` (it takes an upload) and `schedulable`."""
        return Response([{**start_form(kind), "schedulable": not needs_upload(kind)} for kind in kinds()])
