"""URLs named by a row's UUID, formatted from `reverse`'s answer resolved once (basic/core/reverse_by_id.py):
the same as `reverse` gives, for every route they are used for and under any script prefix, and
nothing but a UUID formatted in."""
import uuid

import pytest
from django.urls import reverse, set_script_prefix

from basic.core.reverse_by_id import reverse_by_id

ROUTES = ("job-detail", "job-download", "batch-detail", "batch-download")


@pytest.mark.parametrize("prefix", ["/", "/jobs-app/", "/odd{braces}/"])
def test_the_url_is_reverses_for_every_route_under_any_script_prefix(prefix):
    row_id = uuid.uuid4()
    try:
        set_script_prefix(prefix)
        for name in ROUTES:
            assert reverse_by_id(name, row_id) == reverse(name, kwargs={"pk": row_id})
            assert reverse_by_id(name, str(row_id).upper()) == reverse(name, kwargs={"pk": row_id})
    finally:
        set_script_prefix("/")


def test_only_a_uuid_is_formatted_in():
    for bad in ("../admin", "x", "00000000-0000-0000-0000-00000000f00d/../x"):
        with pytest.raises(ValueError):
            reverse_by_id("job-detail", bad)
