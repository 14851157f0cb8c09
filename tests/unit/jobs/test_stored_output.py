"""The quota reads one row per owner (StoredOutput), which database triggers keep equal to the sum
of the owner's `Job.output_bytes` whatever writes the jobs: creates, updates of the bytes or the
owner, single and bulk deletes, a user's deletion. Runs on SQLite and PostgreSQL (make test)."""
import random

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum

from basic.jobs import retention
from basic.models import Job, StoredOutput
from tests import job_kinds

pytestmark = pytest.mark.django_db


def summed() -> dict[int, int]:
    """What the quota would read if it summed every job, per owner (owners at 0 left out)."""
    rows = Job.objects.filter(owner__isnull=False).values("owner").annotate(total=Sum("output_bytes"))
    return {row["owner"]: row["total"] for row in rows if row["total"]}


def kept() -> dict[int, int]:
    return {row.owner_id: row.bytes for row in StoredOutput.objects.all() if row.bytes}


def test_every_kind_of_write_keeps_the_total_equal_to_the_sum(alice, bob):
    rng = random.Random(20261205)
    owners = [alice, bob, None]
    jobs: list[Job] = []
    for step in range(300):
        action = rng.choice(["create", "create", "update", "save", "move", "delete", "bulk_delete"])
        if action == "create" or not jobs:
            jobs.append(Job.objects.create(kind=job_kinds.NAME, owner=rng.choice(owners), status="done",
                                           output_bytes=rng.choice([0, 0, rng.randrange(1, 10**9)])))
        elif action == "update":  # what a run's end does: .update() with the bytes it keeps
            job = rng.choice(jobs)
            Job.objects.filter(id=job.id).update(output_bytes=rng.randrange(0, 10**9), progress=100)
        elif action == "save":  # what the admin does
            job = rng.choice(jobs)
            job.refresh_from_db()
            job.output_bytes = rng.randrange(0, 10**6)
            job.save()
        elif action == "move":
            job = rng.choice(jobs)
            Job.objects.filter(id=job.id).update(owner=rng.choice(owners))
        elif action == "delete":
            jobs.pop(rng.randrange(len(jobs))).delete()
        else:  # what retention does: one DELETE of many rows
            doomed = rng.sample(jobs, k=min(len(jobs), rng.randrange(1, 6)))
            Job.objects.filter(id__in=[job.id for job in doomed]).delete()
            jobs = [job for job in jobs if job not in doomed]
        assert kept() == summed(), f"step {step}: {action}"
    for owner in (alice, bob):
        assert retention.stored_output_bytes(owner) == summed().get(owner.pk, 0)


def test_a_deleted_user_leaves_no_total_behind(alice, bob):
    for size in (5, 7):
        Job.objects.create(kind=job_kinds.NAME, owner=alice, status="done", output_bytes=size)
    Job.objects.create(kind=job_kinds.NAME, owner=bob, status="done", output_bytes=3)
    assert kept() == {alice.pk: 12, bob.pk: 3}
    get_user_model().objects.filter(pk=alice.pk).delete()
    assert not StoredOutput.objects.filter(owner_id=alice.pk).exists()
    assert kept() == summed() == {bob.pk: 3}


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_jobs_already_kept():
    before = [("basic", "0010_batch_idempotency_and_progress_floor")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        user = old.get_model("auth", "User").objects.create(username="kept-a-lot")
        for size in (100, 0, 23):
            old.get_model("basic", "Job").objects.create(kind=job_kinds.NAME, owner=user, output_bytes=size)
        old.get_model("basic", "Job").objects.create(kind=job_kinds.NAME, owner=None, output_bytes=9)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert kept() == {user.pk: 123}
    Job.objects.filter(owner_id=user.pk, output_bytes=0).update(output_bytes=1)  # and keeps counting
    assert kept() == summed() == {user.pk: 124}
