"""`reverse(name, kwargs={"pk": id})` for the routes named by a row's UUID, resolved once per route
and script prefix, then formatted.

Django's `reverse` walks the URL patterns on every call: the download URL of every job a worker
ended was 3% of its CPU per trivial job, and the two URLs of the job a `POST /api/jobs/` answers
with 3% of the web process's (py-spy, issue 19). Only a UUID (or its string) is formatted in, and it
is checked to be one, so nothing a pattern would have refused gets through.
"""
import functools
import uuid

from django.urls import get_script_prefix, reverse

# A placeholder no row id equals, replaced by the id.
_PLACEHOLDER = "00000000-0000-0000-0000-00000000f00d"


def reverse_by_id(name: str, row_id: uuid.UUID | str) -> str:
    """What `reverse(name, kwargs={"pk": row_id})` gives, for a UUID `row_id`."""
    text = str(row_id) if isinstance(row_id, uuid.UUID) else str(uuid.UUID(str(row_id)))
    return _form(name, get_script_prefix()).format(text)


@functools.cache
def _form(name: str, script_prefix: str) -> str:
    """`reverse`'s answer for `name` under `script_prefix`, with `{}` where the id goes (per prefix:
    `reverse` puts the request's script prefix, or FORCE_SCRIPT_NAME, in front)."""
    url = reverse(name, kwargs={"pk": _PLACEHOLDER})
    return url.replace("{", "{{").replace("}", "}}").replace(_PLACEHOLDER, "{}")
