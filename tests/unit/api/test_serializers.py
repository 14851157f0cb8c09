import pytest
from rest_framework import serializers

from basic.api.serializers import GenerateStudentsSerializer, JobSerializer, StudentSerializer


@pytest.mark.parametrize("name", ["A", "x" * 100, "Ada Lovelace", "Zoë"])
@pytest.mark.parametrize("age", [0, 1, 150, "42"])
def test_valid_students(name, age):
    serializer = StudentSerializer(data={"name": name, "age": age})
    assert serializer.is_valid(), serializer.errors


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "", "age": 10}, "name"),
        ({"name": "   ", "age": 10}, "name"),
        ({"name": "x" * 101, "age": 10}, "name"),
        ({"age": 10}, "name"),
        ({"name": None, "age": 10}, "name"),
        ({"name": "Bob", "age": -1}, "age"),
        ({"name": "Bob", "age": 151}, "age"),
        ({"name": "Bob", "age": 12.5}, "age"),
        ({"name": "Bob", "age": "old"}, "age"),
        ({"name": "Bob", "age": True}, "age"),
        ({"name": "Bob"}, "age"),
    ],
)
def test_invalid_students_name_the_field(data, field):
    serializer = StudentSerializer(data=data)
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]


@pytest.mark.parametrize("count, ok", [(1, True), (100_000, True), (0, False), (100_001, False), ("x", False)])
def test_generate_count_bounds(count, ok):
    assert GenerateStudentsSerializer(data={"count": count}).is_valid() is ok


class _JobSerializerBuiltEachTime(serializers.ModelSerializer):
    """DRF's own way: the same declared fields and Meta, built on every instance."""

    url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()
    result_url = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    seq = serializers.IntegerField(source="last_seq", read_only=True)
    get_url, get_events_url = JobSerializer.get_url, JobSerializer.get_events_url
    get_result_url, get_owner = JobSerializer.get_result_url, JobSerializer.get_owner
    Meta = JobSerializer.Meta


@pytest.mark.django_db
def test_the_job_serializer_built_once_says_what_drf_building_its_fields_each_time_says(alice, rf):
    """basic/api/fields_once.py: the fields are built once per class and copied per instance."""
    from django.utils import timezone

    from basic.models import Job

    now = timezone.now()
    jobs = [Job.objects.create(kind="students_by_age", owner=alice, params={"a": [1, 2]}, message="Queued"),
            Job.objects.create(kind="students_by_age", owner=alice, status=Job.Status.DONE, progress=100,
                               result={"rows": 3}, started=now, finished=now, output_bytes=12, last_seq=7),
            Job.objects.create(kind="students_by_age", owner=None, status=Job.Status.FAILED, error="boom")]
    context = {"request": rf.get("/api/jobs/", HTTP_HOST="localhost")}
    for job in jobs * 2:  # the second time from the fields built the first
        assert JobSerializer(job, context=context).data == _JobSerializerBuiltEachTime(job, context=context).data


def test_instances_of_a_serializer_built_once_never_share_a_bound_field():
    one, two = JobSerializer(), JobSerializer()
    for name, field in one.fields.items():
        assert field is not two.fields[name]
        assert field.parent is one and two.fields[name].parent is two


@pytest.mark.django_db
def test_a_job_says_which_seq_of_its_events_its_row_stands_for(alice, rf):
    """The console keeps a batch member's row from the REST list only if it is not older than the
    last event it heard for it (jobs.js upsertMember)."""
    from basic.models import Job

    job = Job.objects.create(kind="students_by_age", owner=alice, status=Job.Status.RUNNING, last_seq=3)
    data = JobSerializer(job, context={"request": rf.get("/api/jobs/", HTTP_HOST="localhost")}).data
    assert data["seq"] == 3 and "last_seq" not in data
