"""What each owner's jobs keep, summed by the database (basic/jobs/models.py, StoredOutput).

Triggers on basic_job keep basic_storedoutput equal to SUM(output_bytes) per owner, in the writing
transaction, on SQLite and PostgreSQL. They are created before the backfill, in the same
transaction: on PostgreSQL CREATE TRIGGER locks basic_job against writes until the commit, so no
job written meanwhile is counted twice or missed.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SQLITE = [
    """CREATE TRIGGER basic_job_output_insert AFTER INSERT ON basic_job
    WHEN NEW.owner_id IS NOT NULL AND NEW.output_bytes <> 0
    BEGIN
      INSERT INTO basic_storedoutput (owner_id, bytes) VALUES (NEW.owner_id, NEW.output_bytes)
      ON CONFLICT (owner_id) DO UPDATE SET bytes = bytes + excluded.bytes;
    END""",
    """CREATE TRIGGER basic_job_output_update AFTER UPDATE OF output_bytes, owner_id ON basic_job
    WHEN OLD.output_bytes <> NEW.output_bytes OR OLD.owner_id IS NOT NEW.owner_id
    BEGIN
      UPDATE basic_storedoutput SET bytes = bytes - OLD.output_bytes WHERE owner_id = OLD.owner_id;
      INSERT INTO basic_storedoutput (owner_id, bytes)
        SELECT NEW.owner_id, NEW.output_bytes WHERE NEW.owner_id IS NOT NULL
      ON CONFLICT (owner_id) DO UPDATE SET bytes = bytes + excluded.bytes;
    END""",
    """CREATE TRIGGER basic_job_output_delete AFTER DELETE ON basic_job
    WHEN OLD.owner_id IS NOT NULL AND OLD.output_bytes <> 0
    BEGIN
      UPDATE basic_storedoutput SET bytes = bytes - OLD.output_bytes WHERE owner_id = OLD.owner_id;
    END""",
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS basic_job_output_{op}" for op in ("insert", "update", "delete")]

# A delete only subtracts (never inserts): deleting a user deletes its jobs and its row in either
# order, and an insert there could recreate the row for a user being deleted.
POSTGRESQL = [
    """CREATE FUNCTION basic_job_output_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.owner_id IS NOT NULL AND OLD.output_bytes <> 0 THEN
        UPDATE basic_storedoutput SET bytes = bytes - OLD.output_bytes WHERE owner_id = OLD.owner_id;
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.owner_id IS NOT NULL AND NEW.output_bytes <> 0 THEN
        INSERT INTO basic_storedoutput (owner_id, bytes) VALUES (NEW.owner_id, NEW.output_bytes)
        ON CONFLICT (owner_id) DO UPDATE SET bytes = basic_storedoutput.bytes + EXCLUDED.bytes;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER basic_job_output_insert_delete AFTER INSERT OR DELETE ON basic_job
    FOR EACH ROW EXECUTE FUNCTION basic_job_output_count()""",
    """CREATE TRIGGER basic_job_output_update AFTER UPDATE OF output_bytes, owner_id ON basic_job
    FOR EACH ROW WHEN (OLD.output_bytes IS DISTINCT FROM NEW.output_bytes
                       OR OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION basic_job_output_count()""",
]
POSTGRESQL_DROP = ["DROP TRIGGER IF EXISTS basic_job_output_insert_delete ON basic_job",
                   "DROP TRIGGER IF EXISTS basic_job_output_update ON basic_job",
                   "DROP FUNCTION IF EXISTS basic_job_output_count()"]

BACKFILL = """INSERT INTO basic_storedoutput (owner_id, bytes)
SELECT owner_id, SUM(output_bytes) FROM basic_job WHERE owner_id IS NOT NULL
GROUP BY owner_id HAVING SUM(output_bytes) <> 0"""


def _statements(schema_editor, create: bool) -> list[str]:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        return SQLITE if create else SQLITE_DROP
    if vendor == "postgresql":
        return POSTGRESQL if create else POSTGRESQL_DROP
    raise NotImplementedError(f"no StoredOutput triggers for {vendor}: add them to this migration")


def create_triggers(apps, schema_editor) -> None:
    for statement in _statements(schema_editor, create=True):
        schema_editor.execute(statement)
    schema_editor.execute(BACKFILL)


def drop_triggers(apps, schema_editor) -> None:
    for statement in _statements(schema_editor, create=False):
        schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('basic', '0010_batch_idempotency_and_progress_floor'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='StoredOutput',
            fields=[
                ('owner', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to=settings.AUTH_USER_MODEL)),
                ('bytes', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
