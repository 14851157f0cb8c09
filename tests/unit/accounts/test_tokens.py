"""basic/accounts/tokens.py: the one key lookup REST and sockets share, and how often it writes."""
from datetime import timedelta

import pytest
from django.utils import timezone

from basic.accounts import tokens
from basic.models import ApiToken

pytestmark = pytest.mark.django_db


def test_a_key_finds_its_user_and_nothing_else_does(alice, bob):
    assert tokens.user_for_key(alice.token) == alice
    assert tokens.user_for_key(bob.token) == bob
    for not_a_key in ["", None, 123, alice.token[:-1], alice.token + "x", alice.token.upper(), "x" * 10_000,
                      "\ud800", "\x00", ApiToken.objects.get(user=alice).digest]:
        assert tokens.user_for_key(not_a_key) is None, not_a_key


def test_user_with_token_returns_a_new_working_key_each_time(db):
    user, first = tokens.user_with_token(username="dora")
    same_user, second = tokens.user_with_token(username="dora", staff=True)
    assert same_user.pk == user.pk and first != second
    assert tokens.user_for_key(first) == user and tokens.user_for_key(second) == user


def test_last_used_is_written_at_most_once_a_minute(alice, monkeypatch, django_assert_num_queries):
    start = timezone.now()
    monkeypatch.setattr(tokens.timezone, "now", lambda: start)
    assert tokens.user_for_key(alice.token) == alice
    assert ApiToken.objects.get(user=alice).last_used == start
    monkeypatch.setattr(tokens.timezone, "now", lambda: start + timedelta(seconds=59))
    with django_assert_num_queries(1):  # the lookup only: no write
        tokens.user_for_key(alice.token)
    assert ApiToken.objects.get(user=alice).last_used == start
    monkeypatch.setattr(tokens.timezone, "now", lambda: start + timedelta(seconds=61))
    tokens.user_for_key(alice.token)
    assert ApiToken.objects.get(user=alice).last_used == start + timedelta(seconds=61)
