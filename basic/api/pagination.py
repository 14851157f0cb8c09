"""Limit/offset pagination that refuses out-of-range values instead of guessing.

DRF's stock class silently falls back to the default on a bad `limit`, to 0 on a bad `offset`, and
passes a huge `limit` straight to the database (SQLite overflowed, and the API answered 503). Here
every list endpoint caps `limit` at API_MAX_PAGE_SIZE, and a value that is not a whole number in
range is a 400 naming the parameter. An empty value counts as absent.
"""
from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 10**9  # far past any real table; keeps `offset + limit` inside a 64-bit integer


def _whole_number(request: Request, name: str, low: int, high: int) -> int | None:
    """The parameter as an int in low..high; None when absent or empty; else a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    # ASCII digits only: int() would also take "+5", "1_000" and non-ASCII digits such as "٣".
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 20 else None
    if value is None or not low <= value <= high:
        raise ValidationError({name: [f"Must be a whole number from {low} to {high}."]})
    return value


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return settings.API_MAX_PAGE_SIZE

    def get_limit(self, request: Request) -> int:
        limit = _whole_number(request, self.limit_query_param, 1, self.max_limit)
        return min(self.default_limit, self.max_limit) if limit is None else limit

    def get_offset(self, request: Request) -> int:
        offset = _whole_number(request, self.offset_query_param, 0, MAX_OFFSET)
        return 0 if offset is None else offset
