"""basic/jobs/idempotency.py without HTTP: which keys are valid, what a fingerprint is bound to, and
`start_once` (one start per key, replay, a different body refused, failures free the key, expiry)."""
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from basic.jobs import idempotency
from basic.models import IdempotencyKey, Job
from tests import job_kinds

pytestmark = pytest.mark.django_db


class Refused(Exception):
    pass


@pytest.fixture
def starts(alice):
    """A `start` for start_once that makes a job and counts its calls."""
    made = []

    def start():
        made.append(Job.objects.create(kind=job_kinds.NAME, owner=alice, params={"steps": 1}))
        return made[-1]
    start.made = made
    return start


def once(owner, start, key="k-1", digest="a" * 64):
    return idempotency.start_once(owner=owner, key=key, fingerprint=digest, start=start)


# --- the setting -----------------------------------------------------------------------------------

def load_settings(hours: str) -> subprocess.CompletedProcess:
    code = "from app import settings; print(settings.JOB_IDEMPOTENCY_HOURS)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "JOB_IDEMPOTENCY_HOURS": hours})


def test_the_hours_are_read_from_the_environment():
    assert load_settings(" 48 ").stdout.strip() == "48"
    assert load_settings("").stdout.strip() == "24"


@pytest.mark.parametrize("hours", ["0", "-1", "1.5", "24h", "\u0663"])
def test_hours_that_are_not_a_whole_number_above_0_stop_start_up(hours):
    done = load_settings(hours)
    assert done.returncode != 0
    assert "JOB_IDEMPOTENCY_HOURS" in done.stderr and "whole number above 0" in done.stderr


# --- the header ------------------------------------------------------------------------------------

def test_no_header_is_no_key():
    assert idempotency.key_from_header(None) is None


@pytest.mark.parametrize("value", ["a", "9b2c5a4e-0f3d-4c1e-8a7b-6d5e4f3a2b1c", " x ~", "k" * 255])
def test_printable_ascii_up_to_255_is_a_key(value):
    assert idempotency.key_from_header(value) == value


@pytest.mark.parametrize("value", ["", "k" * 256, "\u00e9t\u00e9", "a\nb", "a\x00", "\x7f", "\u2603"])
def test_anything_else_is_refused_saying_what_a_key_is(value):
    with pytest.raises(idempotency.InvalidKey, match="1 to 255 printable ASCII characters"):
        idempotency.key_from_header(value)


# --- the fingerprint -------------------------------------------------------------------------------

def test_a_fingerprint_ignores_field_order_and_tuple_or_list():
    one = idempotency.fingerprint("thumbnails", {"sizes": [(64, 64)], "format": "PNG"})
    other = idempotency.fingerprint("thumbnails", {"format": "PNG", "sizes": [[64, 64]]})
    assert one == other and len(one) == 64


@pytest.mark.parametrize("kind, params", [
    ("students_by_age", {"steps": 1}),
    (job_kinds.NAME, {"steps": 2}),
    (job_kinds.NAME, {"steps": 1, "delay": 0.0}),
])
def test_another_kind_or_other_params_give_another_fingerprint(kind, params):
    assert idempotency.fingerprint(kind, params) != idempotency.fingerprint(job_kinds.NAME, {"steps": 1})


def test_an_upload_is_fingerprinted_by_its_bytes_and_can_still_be_stored():
    def image(content: bytes, name="p.png"):
        return {"image": SimpleUploadedFile(name, content), "sizes": [(64, 64)]}

    first = image(b"\x89PNG pixels")
    digest = idempotency.fingerprint("thumbnails", first)
    assert digest == idempotency.fingerprint("thumbnails", image(b"\x89PNG pixels"))
    assert digest != idempotency.fingerprint("thumbnails", image(b"\x89PNG other pixels"))
    assert digest != idempotency.fingerprint("thumbnails", image(b"\x89PNG pixels", name="q.png"))
    assert b"".join(first["image"].chunks()) == b"\x89PNG pixels", "the upload was rewound"


# --- start_once ------------------------------------------------------------------------------------

def test_the_first_start_runs_and_the_same_request_replays_its_job(alice, starts):
    started = once(alice, starts)
    assert not started.replayed and started.job == starts.made[0]
    again = once(alice, starts)
    assert again.replayed and again.job == started.job
    assert len(starts.made) == 1
    assert IdempotencyKey.objects.get().job == started.job


def test_another_fingerprint_is_refused_and_starts_nothing(alice, starts):
    once(alice, starts)
    with pytest.raises(idempotency.KeyReused, match="used with a different request .* last 24 hours"):
        once(alice, starts, digest="b" * 64)
    assert len(starts.made) == 1


def test_keys_belong_to_their_owner(alice, bob, starts):
    once(alice, starts)
    assert not once(bob, starts).replayed
    assert len(starts.made) == 2


def test_a_start_that_raises_leaves_no_key(alice, starts):
    def refused():
        starts()
        raise Refused
    with pytest.raises(Refused):
        once(alice, refused)
    assert not IdempotencyKey.objects.exists() and not Job.objects.exists(), "rolled back together"
    assert not once(alice, starts).replayed


def test_a_key_held_without_its_job_asks_to_retry(alice, starts):
    IdempotencyKey.objects.create(owner=alice, key="k-1", fingerprint="a" * 64)
    with pytest.raises(idempotency.KeyInFlight, match="still being processed; retry"):
        once(alice, starts)
    assert not starts.made


def test_an_expired_key_is_taken_over_whatever_its_body(alice, starts, settings):
    settings.JOB_IDEMPOTENCY_HOURS = 1
    first = once(alice, starts).job
    IdempotencyKey.objects.update(created=timezone.now() - timedelta(minutes=61))
    second = once(alice, starts, digest="b" * 64)
    assert not second.replayed and second.job != first
    assert IdempotencyKey.objects.get().fingerprint == "b" * 64


def test_a_key_just_inside_its_hours_still_replays(alice, starts, settings):
    settings.JOB_IDEMPOTENCY_HOURS = 1
    once(alice, starts)
    IdempotencyKey.objects.update(created=timezone.now() - timedelta(minutes=59))
    assert once(alice, starts).replayed


def test_the_purge_deletes_only_expired_keys(alice, starts, settings):
    settings.JOB_IDEMPOTENCY_HOURS = 24
    once(alice, starts, key="fresh")
    once(alice, starts, key="old")
    IdempotencyKey.objects.filter(key="old").update(created=timezone.now() - timedelta(hours=25))
    assert idempotency.purge_expired_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert Job.objects.count() == 2, "jobs are the retention sweep's, not the purge's"


@pytest.mark.django_db(transaction=True)
def test_a_job_committed_but_not_queued_frees_its_key(alice, starts):
    """As services.job_start does when the broker is down at the commit: the hook raises after it."""
    def broker_down():
        raise Refused

    def not_queued():
        job = starts()
        transaction.on_commit(broker_down, robust=False)
        return job
    with pytest.raises(Refused):
        once(alice, not_queued)
    assert Job.objects.count() == 1 and not IdempotencyKey.objects.exists()
    assert not once(alice, starts).replayed
