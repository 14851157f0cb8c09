"""A batch's Idempotency-Key without HTTP (basic/jobs/idempotency.py, basic/jobs/batches.py): what a
batch's fingerprint is bound to, and `batch_start_once` (one batch per key with all its members, a
replay, a refused member rolling the key back with the batch)."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from basic.jobs import batches, idempotency
from basic.jobs.registry import get_kind
from basic.models import Batch, IdempotencyKey, Job
from tests import job_kinds

pytestmark = pytest.mark.django_db(transaction=True)  # the key and the batch commit together


def request(*steps, **options):
    return [(job_kinds.NAME, {"steps": n, "delay": 0.0}, options) for n in steps]


def test_a_batch_fingerprint_is_its_members_in_order_with_their_options():
    digest = idempotency.batch_fingerprint(request(1, 2))
    assert digest == idempotency.batch_fingerprint(
        [(job_kinds.NAME, {"delay": 0.0, "steps": n}, {}) for n in (1, 2)]), "field order does not count"
    assert digest != idempotency.batch_fingerprint(request(2, 1)), "member order does"
    assert digest != idempotency.batch_fingerprint(request(1, 2, priority=3))
    assert digest != idempotency.batch_fingerprint(request(1, 2, 2))
    one = idempotency.batch_fingerprint(request(1))
    assert one != idempotency.fingerprint(job_kinds.NAME, {"steps": 1, "delay": 0.0}), "never a job's"


def test_images_are_fingerprinted_by_their_bytes():
    def images(*contents):
        return [("thumbnails", {"image": SimpleUploadedFile("p.png", content), "sizes": [(64, 64)]}, {})
                for content in contents]

    digest = idempotency.batch_fingerprint(images(b"one", b"two"))
    assert digest == idempotency.batch_fingerprint(images(b"one", b"two"))
    assert digest != idempotency.batch_fingerprint(images(b"one", b"three"))


@pytest.fixture
def members():
    kind = get_kind(job_kinds.NAME)

    def make(*steps):
        validated = []
        for n in steps:
            params = kind.params(data={"steps": n})
            params.is_valid(raise_exception=True)
            validated.append(batches.MemberRequest(kind=kind, data=params.validated_data))
        return validated
    return make


def test_one_batch_per_key_and_its_replay(alice, members, queued):
    first = batches.batch_start_once(owner=alice, key="k", members=members(1, 2))
    assert not first.replayed and Job.objects.filter(batch=first.batch).count() == 2
    again = batches.batch_start_once(owner=alice, key="k", members=members(1, 2))
    assert again.replayed and again.batch == first.batch
    assert Batch.objects.count() == 1 and len(queued) == 2
    with pytest.raises(idempotency.KeyReused):
        batches.batch_start_once(owner=alice, key="k", members=members(1, 3))
    assert IdempotencyKey.objects.get().batch == first.batch


def test_a_member_refused_inside_the_transaction_rolls_back_the_key_and_the_batch(alice, members, queued,
                                                                                 monkeypatch):
    real_start = batches.services.job_start
    calls = []

    def refuse_the_second(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise batches.services.QuotaExceeded("full")
        return real_start(**kwargs)
    monkeypatch.setattr(batches.services, "job_start", refuse_the_second)
    with pytest.raises(batches.services.QuotaExceeded):
        batches.batch_start_once(owner=alice, key="k", members=members(1, 2))
    assert not IdempotencyKey.objects.exists() and not Batch.objects.exists() and not Job.objects.exists()
    assert not queued
    monkeypatch.setattr(batches.services, "job_start", real_start)
    assert not batches.batch_start_once(owner=alice, key="k", members=members(1, 2)).replayed
