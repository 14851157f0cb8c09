"""Who may see a job or batch: the queryset rule (`owned_visible_to`, REST) and the one-row rule
(`may_see_owned`, sockets, from the row's owner id) must agree for every kind of caller."""
import pytest
from django.contrib.auth.models import AnonymousUser

from basic.jobs import services
from basic.models import Job

pytestmark = pytest.mark.django_db


def test_the_row_rule_agrees_with_the_queryset_rule(alice, bob, charlie):
    jobs = [Job.objects.create(kind="students_by_age", owner=owner) for owner in (alice, bob, None)]
    for user in (alice, bob, charlie, AnonymousUser()):
        seen = set(services.owned_visible_to(Job.objects.filter(id__in=[job.id for job in jobs]), user=user)
                   .values_list("id", flat=True))
        for job in jobs:
            assert services.may_see_owned(user, job.owner_id) == (job.id in seen), (user, job.owner_id)
