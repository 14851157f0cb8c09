"""A query compiled once per database (basic/core/prepared_query.py) must give what Django's own
iterator gives: the same instance, field for field and type for type, its select_related object
loaded (no query on access), None when nothing matches, and parameters never mixed between calls."""
import datetime
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from basic.accounts import tokens
from basic.accounts.models import ApiToken
from basic.core.prepared_query import PreparedQuery

pytestmark = pytest.mark.django_db


def fields_of(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def test_the_token_lookup_gives_what_the_orm_gives_with_its_user_loaded(alice, bob):
    _token, key = tokens.create_token(alice, "laptop")
    ApiToken.objects.filter(user=alice).update(last_used=timezone.now() - datetime.timedelta(days=1))
    query = PreparedQuery(lambda digest: ApiToken.objects.select_related("user").filter(digest=digest), 1)
    for _ in range(2):  # compiled by the first call, reused by the second
        got = query.get(tokens.digest_of(key))
        expected = ApiToken.objects.select_related("user").get(digest=tokens.digest_of(key))
        assert fields_of(got) == fields_of(expected)
        assert type(got.last_used) is datetime.datetime and timezone.is_aware(got.last_used)
        with CaptureQueriesContext(connection) as queries:
            assert fields_of(got.user) == fields_of(expected.user) and got.user.username == "alice"
        assert queries.captured_queries == []  # the user came with the token
        assert not got._state.adding and got._state.db == expected._state.db
    assert query.get(tokens.digest_of(bob.token)).user.username == "bob"  # another value, same SQL
    assert query.get(tokens.digest_of("not a key")) is None


def test_a_marker_that_is_not_a_parameter_is_refused():
    query = PreparedQuery(lambda name: ApiToken.objects.filter(name="fixed"), 1)
    with pytest.raises(ValueError):
        query.get("anything")


def test_authenticate_key_still_finds_the_active_owner_only(alice):
    assert tokens.authenticate_key(alice.token)[0] == alice
    alice.is_active = False
    alice.save()
    assert tokens.authenticate_key(alice.token) is None


def test_a_uuid_parameter_reads_the_job_row_as_the_orm_does(alice):
    """The worker's read of the job it runs (basic/jobs/runner.py): a UUID primary key, given as a
    UUID or as its string (Celery's argument), on SQLite's char(32) and PostgreSQL's uuid alike."""
    from basic.jobs.models import Job
    from basic.jobs.runner import JOB_BY_ID

    jobs = [Job.objects.create(kind="test_steps", owner=alice, params={"steps": n}, message=f"job {n}")
            for n in range(3)]
    Job.objects.filter(id=jobs[1].id).update(started=timezone.now(), progress=40)
    for job in jobs:
        expected = Job.objects.get(id=job.id)
        for value in (job.id, str(job.id), job.id.hex):
            got = JOB_BY_ID.get(value)
            assert fields_of(got) == fields_of(expected)
            assert type(got.id) is uuid.UUID and type(got.params) is dict
            assert not got._state.adding and got._state.db == expected._state.db
    assert JOB_BY_ID.get(uuid.uuid4()) is None
    with pytest.raises(ValueError):
        JOB_BY_ID.get("not a uuid")


def test_a_parameter_of_another_type_is_refused():
    with pytest.raises(TypeError):
        PreparedQuery(lambda n: ApiToken.objects.filter(id=n), (float,))


def test_a_prepared_update_writes_what_the_orms_update_writes(alice):
    """The same columns set by `update()` on one row and by a prepared update on its twin, twice
    with other values (compiled by the first call, reused by the second): the rows end equal,
    datetimes, JSON, NULLs and the computed column included, on SQLite and PostgreSQL alike."""
    from django.db.models import F, Value
    from django.db.models.functions import Greatest

    from basic.core.prepared_query import PreparedUpdate
    from basic.jobs.models import Job

    update = PreparedUpdate(lambda job_id: Job.objects.filter(id=job_id, status__in=("queued", "running")),
                            (uuid.UUID,), computed={"last_seq": lambda n: Greatest(F("last_seq"), Value(n))})
    by_orm, prepared = (Job.objects.create(kind="test_steps", owner=alice, params={}) for _ in range(2))
    Job.objects.filter(id__in=(by_orm.id, prepared.id)).update(last_seq=5)
    for n, seq in ((1, 3), (2, 9)):
        columns = {"status": "running", "started": timezone.now() - datetime.timedelta(seconds=n),
                   "progress": 10 * n, "message": f"step {n}", "result": {"rows": n, "name": "é\u2028"},
                   "finished": None if n == 1 else timezone.now()}
        assert Job.objects.filter(id=by_orm.id).update(
            **columns, last_seq=Greatest(F("last_seq"), Value(seq))) == 1
        assert update.run(str(prepared.id), **columns, last_seq=seq) == 1
        got, expected = fields_of(Job.objects.get(id=prepared.id)), fields_of(Job.objects.get(id=by_orm.id))
        assert got.pop("id") != expected.pop("id") and got.pop("created") and expected.pop("created")
        assert got == expected and got["last_seq"] == max(5, seq)
    assert len(update._compiled) == 2  # finished NULL, then set: two shapes, each compiled once
    Job.objects.filter(id=prepared.id).update(status="done")
    assert update.run(prepared.id, status="failed") == 0  # its filter holds: no longer active
    assert Job.objects.get(id=prepared.id).status == "done"


def test_a_prepared_update_inside_a_transaction_rolls_back_with_it(alice):
    from django.db import transaction

    from basic.core.prepared_query import PreparedUpdate
    from basic.jobs.models import Job

    update = PreparedUpdate(lambda job_id: Job.objects.filter(id=job_id), (uuid.UUID,))
    job = Job.objects.create(kind="test_steps", owner=alice, params={}, message="before")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert update.run(job.id, message="inside") == 1
        raise RuntimeError
    assert Job.objects.get(id=job.id).message == "before"


def test_a_prepared_insert_stores_what_the_orms_create_stores(alice):
    from basic.core.prepared_query import PreparedInsert
    from basic.models import Batch, Job

    insert = PreparedInsert(Job)
    batch = Batch.objects.create(owner=alice, total=2)
    values = dict(kind="students_by_age", owner=alice, params={"n": [1, "två", None]}, output_bytes=7, batch=batch,
                  priority=8, status="scheduled", not_before=timezone.now() + datetime.timedelta(hours=1),
                  message="Scheduled for later")
    by_orm = Job.objects.create(**values)
    for _ in range(2):  # written once, then reused with other values
        prepared = insert.insert(Job(**values))
        assert not prepared._state.adding and prepared._state.db == "default"
        stored, expected = fields_of(Job.objects.get(id=prepared.id)), fields_of(Job.objects.get(id=by_orm.id))
        assert stored.pop("id") == prepared.id and stored.pop("created") >= expected.pop("created")
        expected.pop("id")
        assert stored == expected
    bare = insert.insert(Job(kind="students_by_age"))  # defaults and NULLs as the ORM's
    assert fields_of(Job.objects.get(id=bare.id)) == fields_of(bare)


def test_a_prepared_insert_inside_a_transaction_rolls_back_with_it(alice):
    from django.db import IntegrityError, transaction

    from basic.core.prepared_query import PreparedInsert
    from basic.models import Job

    insert = PreparedInsert(Job)
    job = insert.insert(Job(kind="students_by_age", owner=alice))
    with pytest.raises(IntegrityError), transaction.atomic():
        insert.insert(Job(kind="students_by_age", owner=alice))
        insert.insert(Job(id=job.id, kind="students_by_age", owner=alice))  # the same key
    assert list(Job.objects.values_list("id", flat=True)) == [job.id]


def test_a_model_whose_key_the_database_assigns_is_refused():
    from basic.core.prepared_query import PreparedInsert
    from basic.models import Student

    with pytest.raises(ValueError, match="primary key"):
        PreparedInsert(Student).insert(Student(name="x", age=1))
