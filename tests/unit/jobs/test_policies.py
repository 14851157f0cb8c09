"""A kind's policies: declared on the kind, overridden per deployment, refused when wrong; and how
the queue and time limits reach Celery."""
import contextlib

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers

from basic.jobs import registry
from basic.jobs.registry import CPU, IO, JobKind, check_policy_overrides, get_kind, policy
from basic.jobs.time_limits import Deadline, JobTimedOut


class NoParams(serializers.Serializer):
    pass


def kind(**fields) -> JobKind:
    return JobKind(name="policy_probe", label="Probe", params=NoParams, run=lambda ctx: {}, **fields)


def test_defaults_are_the_io_queue_and_the_deployment_time_limit(settings):
    settings.JOB_TIME_LIMIT_SECONDS = 1234
    assert policy(kind()) == registry.Policy(queue=IO, time_limit=1234)
    assert policy(kind()).celery_queue == "default"


def test_a_kind_declares_its_own_and_a_deployment_overrides_them(settings):
    declared = kind(queue=CPU, time_limit=60)
    assert policy(declared).celery_queue == "cpu" and policy(declared).time_limit == 60
    settings.JOB_KIND_POLICIES = {"policy_probe": {"queue": "io"}}
    assert policy(declared) == registry.Policy(queue=IO, time_limit=60)


def test_concurrency_caps_are_declared_or_overridden_and_null_removes_one(settings):
    assert (policy(kind()).concurrency, policy(kind()).per_user_concurrency) == (None, None)
    capped = kind(concurrency=4, per_user_concurrency=2)
    assert (policy(capped).concurrency, policy(capped).per_user_concurrency) == (4, 2)
    settings.JOB_KIND_POLICIES = {"policy_probe": {"concurrency": None, "per_user_concurrency": 1}}
    assert (policy(capped).concurrency, policy(capped).per_user_concurrency) == (None, 1)
    settings.JOB_KIND_POLICIES = {"thumbnails": {"concurrency": 2, "per_user_concurrency": None}}
    check_policy_overrides()  # valid: no error


def test_the_built_in_thumbnails_compute_on_the_cpu_queue():
    assert policy(get_kind("thumbnails")).queue == CPU
    assert policy(get_kind("page_fetch")).queue == IO


@pytest.mark.parametrize("declared, message", [
    ({"queue": "gpu"}, "queue must be one of io, cpu"),
    ({"time_limit": 0}, "time_limit must be a whole number"),
    ({"time_limit": 1.5}, "time_limit must be a whole number"),
    ({"concurrency": True}, "concurrency must be null or a whole number"),
    ({"per_user_concurrency": -1}, "per_user_concurrency must be null or a whole number"),
])
def test_a_kind_with_a_bad_policy_is_refused_when_registered(declared, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        registry.register(kind(**declared))


@pytest.mark.parametrize("overrides, message", [
    ({"no_such_kind": {"queue": "cpu"}}, "no job kind 'no_such_kind' is loaded"),
    ({"thumbnails": {"parallelism": 3}}, "must be an object with some of: queue, time_limit"),
    ({"thumbnails": {"concurrency": 0}}, "concurrency must be null or a whole number from 1 to 10000"),
    ({"thumbnails": {"per_user_concurrency": "2"}}, "per_user_concurrency must be null or a whole number"),
    ({"thumbnails": {"concurrency": 10001}}, "concurrency must be null or a whole number from 1 to 10000"),
    ({"thumbnails": {"priority": 10}}, "priority must be a whole number from 0 to 9"),
    ({"thumbnails": ["cpu"]}, "must be an object"),
    ({"thumbnails": {"queue": "CPU"}}, "queue must be one of"),
    ({"thumbnails": {"time_limit": "60"}}, "time_limit must be a whole number"),
])
def test_a_typo_in_the_deployments_overrides_stops_start_up(settings, overrides, message):
    settings.JOB_KIND_POLICIES = overrides
    with pytest.raises(ImproperlyConfigured, match=message):
        check_policy_overrides()


def test_the_settings_refuse_overrides_that_are_not_a_json_object(monkeypatch):
    from app.settings import env_json_object

    monkeypatch.setenv("JOB_KIND_POLICIES", "[1]")
    with pytest.raises(ImproperlyConfigured, match="must be a JSON object"):
        env_json_object("JOB_KIND_POLICIES")
    monkeypatch.setenv("JOB_KIND_POLICIES", "{oops")
    with pytest.raises(ImproperlyConfigured, match="not valid JSON"):
        env_json_object("JOB_KIND_POLICIES")


def test_a_job_is_sent_to_its_kinds_queue_with_its_time_limits(monkeypatch, settings, db, django_user_model):
    from basic.jobs import services
    from basic.jobs.models import Job

    settings.JOB_TIME_LIMIT_GRACE_SECONDS = 7
    sent = {}
    monkeypatch.setattr(services.current_app, "send_task", lambda name, **options: sent.update(options))
    monkeypatch.setattr(services.queue_markers, "sending", lambda job_id: contextlib.nullcontext())
    owner = django_user_model.objects.create(username="policy-owner")
    services.enqueue(Job(kind="thumbnails", owner=owner))
    assert (sent["queue"], sent["soft_time_limit"], sent["time_limit"]) == ("cpu", 600, 607)
    services.enqueue(Job(kind="gone_kind", owner=owner))  # the run fails it, wherever it lands
    assert (sent["queue"], sent["soft_time_limit"], sent["time_limit"]) == ("default", None, None)


def test_a_deadline_stops_a_body_that_reports_past_it(monkeypatch):
    deadline = Deadline(5)
    deadline.check()
    monkeypatch.setattr("basic.jobs.time_limits.time.monotonic", lambda: deadline.at + 0.01)
    with pytest.raises(JobTimedOut, match="timed out after 5 s"):
        deadline.check()
    assert not isinstance(JobTimedOut(1), Exception)  # a body's `except Exception` can't swallow it


def test_retry_delays_double_with_jitter_and_are_capped():
    run_policy = registry.Policy(queue=IO, time_limit=60, retries=30, retry_backoff=2.0)
    assert [run_policy.retry_delay(n, 1.0) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert [run_policy.retry_delay(n, 0.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]  # jitter: half to all
    assert run_policy.retry_delay(30, 1.0) == registry.RETRY_DELAY_MAX


@pytest.mark.parametrize("overrides, message", [
    ({"page_fetch": {"retries": -1}}, "retries must be a whole number from 0 to 100"),
    ({"page_fetch": {"retries": True}}, "retries must be a whole number"),
    ({"page_fetch": {"retry_backoff": 0}}, "retry_backoff must be seconds above 0"),
])
def test_bad_retry_overrides_stop_start_up(settings, overrides, message):
    settings.JOB_KIND_POLICIES = overrides
    with pytest.raises(ImproperlyConfigured, match=message):
        check_policy_overrides()


def test_a_retry_waits_its_turn_before_the_recovery_sweep_counts_it_lost(db, django_user_model, settings, monkeypatch):
    """A retry's message sits in a worker until its countdown ends; a sweep in between must not
    send it again at once (that would skip the backoff)."""
    from django.utils import timezone

    from basic.jobs import services
    from basic.jobs.models import Job

    settings.JOB_REQUEUE_AFTER_SECONDS = 30
    owner = django_user_model.objects.create(username="retry-owner")
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    soon = timezone.now() + timezone.timedelta(minutes=5)
    waiting = Job.objects.create(kind="page_fetch", owner=owner, not_before=soon)
    overdue = Job.objects.create(kind="page_fetch", owner=owner, not_before=long_ago)
    Job.objects.filter(id__in=[waiting.id, overdue.id]).update(created=long_ago)
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda job, countdown=None: sent.append(job.id))
    monkeypatch.setattr(services.queue_markers, "unmarked", lambda ids: list(ids))
    assert services.recover_lost_jobs() == [overdue.id] and sent == [overdue.id]


def test_a_held_retry_keeps_its_reserved_marker_until_its_time_has_come(settings):
    """The worker holding a retry's message marks it reserved for its countdown and then some, so
    the sweep does not take it for lost meanwhile."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from basic.core.keys import queued_key
    from basic.core.redis_clients import sync_redis
    from basic.jobs import queue_markers, recovery

    settings.JOB_RESERVED_SECONDS = 30
    eta = (datetime.now(UTC) + timedelta(seconds=100)).isoformat()
    assert 98 < recovery._seconds_until(eta) <= 100
    assert recovery._seconds_until(None) == 0 and recovery._seconds_until("not a time") == 0
    job_id = uuid.uuid4()
    queue_markers.mark_reserved(job_id, wait=recovery._seconds_until(eta))
    assert 125 < sync_redis().ttl(queued_key(job_id)) <= 130
    queue_markers.clear(job_id)


def test_a_kind_may_not_name_a_parameter_after_a_trigger_option():
    class Clashing(serializers.Serializer):
        priority = serializers.IntegerField()

    with pytest.raises(ImproperlyConfigured, match="priority is a trigger option"):
        registry.register(JobKind(name="clashing", label="Clash", params=Clashing, run=lambda ctx: {}))
