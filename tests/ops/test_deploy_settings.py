"""Deployment settings: the built-in SECRET_KEY refused off loopback, `check --deploy` clean with the
documented production environment, and https/wss behind a TLS proxy."""
import pytest
from rest_framework.test import APIClient

from basic.models import Job

from .conftest import PRODUCTION_ENV, manage


def test_builtin_secret_key_is_refused_without_debug_or_loopback_flag():
    done = manage("check", DEBUG="0")
    assert done.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY" in done.stderr


@pytest.mark.parametrize("env", [{"LISTEN_LOOPBACK_ONLY": "1"}, {"DEBUG": "1"}, {"SECRET_KEY": "k" * 60}])
def test_builtin_key_allowed_on_loopback_or_in_debug_or_replaced(env):
    done = manage("check", **env)
    assert done.returncode == 0, done.stderr


def test_check_deploy_is_clean_with_the_documented_production_environment():
    """Every deployment check (Django's security.W0xx, ours) passes with docs/deploy.md's environment."""
    done = manage("check", "--deploy", "--tag", "security", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    everything = manage("check", "--deploy", **PRODUCTION_ENV)
    assert everything.returncode == 0, everything.stderr
    assert "(security." not in everything.stdout + everything.stderr
    assert "(basic." not in everything.stdout + everything.stderr


@pytest.mark.parametrize(("env", "says"), [
    ({"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}, "SECURE_PROXY_SSL_HEADER"),
    ({"WS_ALLOWED_ORIGINS": "*"}, "WS_ALLOWED_ORIGINS"),
    ({"WS_ALLOWED_ORIGINS": "jobs.example.com"}, "WS_ALLOWED_ORIGINS"),
    ({"READYZ_TIMEOUT": "5"}, "READYZ_TIMEOUT"),
])
def test_malformed_settings_stop_start_up(env, says):
    done = manage("check", **{**PRODUCTION_ENV, **env})
    assert done.returncode != 0
    assert says in done.stderr


@pytest.mark.django_db
def test_behind_a_tls_proxy_urls_are_https_and_the_socket_wss(settings, alice):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["jobs.example.com"]
    job = Job.objects.create(kind=Job._meta.get_field("kind").choices[0][0], owner=alice)
    client = APIClient()
    client.force_authenticate(alice)
    body = client.get(f"/api/jobs/{job.id}/", HTTP_HOST="jobs.example.com", HTTP_X_FORWARDED_PROTO="https").json()
    assert body["url"] == f"https://jobs.example.com/api/jobs/{job.id}/"
    assert body["events_url"] == f"wss://jobs.example.com/ws/jobs/{job.id}/"
    plain = client.get(f"/api/jobs/{job.id}/", HTTP_HOST="jobs.example.com").json()
    assert plain["events_url"] == f"ws://jobs.example.com/ws/jobs/{job.id}/"


def test_allowed_hosts_star_without_socket_origins_is_warned_about():
    done = manage("check", LISTEN_LOOPBACK_ONLY="1", ALLOWED_HOSTS="*")
    assert done.returncode == 0
    assert "basic.W001" in done.stdout + done.stderr
    assert "basic.W001" not in (lambda d: d.stdout + d.stderr)(
        manage("check", LISTEN_LOOPBACK_ONLY="1", ALLOWED_HOSTS="*", WS_ALLOWED_ORIGINS="https://jobs.example.com"))
