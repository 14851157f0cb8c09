"""Migration basic/0005 turns every plain DRF token into a hashed ApiToken, so a key a user already
has (their `jobs` CLI's, a script's) keeps working, and deletes the plain rows."""
import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

BEFORE = [("basic", "0004_job_output_bytes"), ("authtoken", "0004_alter_tokenproxy_options")]
OLD_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 hex characters


@pytest.mark.django_db(transaction=True)
def test_existing_plain_tokens_become_hashed_and_keep_working():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        user = old.get_model("auth", "User").objects.create(username="old-cli", is_active=True)
        old.get_model("authtoken", "Token").objects.create(key=OLD_KEY, user=user)
    finally:
        executor = MigrationExecutor(connection)  # a fresh graph, as `migrate` would load it
        executor.migrate(executor.loader.graph.leaf_nodes())

    from basic.models import ApiToken

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT * FROM basic_apitoken")
        rows = cursor.fetchall()
    assert len(rows) == 1 and not any(OLD_KEY in str(value) for value in rows[0])
    token = ApiToken.objects.get()
    assert (token.user_id, token.name, token.prefix) == (user.pk, "migrated", OLD_KEY[:8])
    assert token.digest == hashlib.sha256(OLD_KEY.encode()).hexdigest()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {OLD_KEY}")
    assert client.get("/api/jobs/").status_code == 200
