"""API tokens stored hashed (issue 22, item 5): the ApiToken table, and every plain DRF token
(`authtoken_token`, whose keys sat in the database as they are) moved into it as a digest, so
existing keys (a user's `jobs` CLI, scripts) keep working; the plain rows are deleted."""
import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def hash_plain_tokens(apps, schema_editor):
    """Each authtoken.Token becomes an ApiToken named "migrated" with the digest of its key."""
    Token = apps.get_model("authtoken", "Token")
    ApiToken = apps.get_model("basic", "ApiToken")
    for plain in Token.objects.all().iterator():
        token = ApiToken.objects.create(
            user_id=plain.user_id, name="migrated", prefix=plain.key[:8],
            digest=hashlib.sha256(plain.key.encode("utf-8", "surrogatepass")).hexdigest())
        ApiToken.objects.filter(pk=token.pk).update(created=plain.created)  # auto_now_add ignores a given value
    Token.objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("basic", "0004_job_output_bytes"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(blank=True, help_text='What it is for, e.g. "jobs CLI on laptop".',
                                          max_length=100)),
                ("prefix", models.CharField(help_text="The key's first characters, to tell tokens apart.",
                                            max_length=8)),
                ("digest", models.CharField(editable=False, help_text="SHA-256 (hex) of the key.", max_length=64,
                                            unique=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("last_used", models.DateTimeField(blank=True, null=True)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="api_tokens",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "verbose_name": "API token",
                "ordering": ["-created", "-id"],
            },
        ),
        # Not reversible into plain keys (only digests are kept): going back drops the table, and
        # users sign in again for a new token.
        migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop),
    ]
