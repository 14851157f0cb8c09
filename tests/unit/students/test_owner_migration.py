"""Migration basic/0006 gives students from before owners one: the first superuser, else the first
staff user; with neither they are deleted (documented in the migration's docstring)."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("basic", "0005_hashed_api_tokens")]


def migrate_with(make_rows) -> None:
    """Migrate back to before owners, make rows there with `make_rows(apps)`, migrate forward."""
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        make_rows(executor.loader.project_state(BEFORE).apps)
    finally:
        executor = MigrationExecutor(connection)  # a fresh graph, as `migrate` would load it
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["superuser", "staff"])
def test_ownerless_students_go_to_the_first_superuser_else_staff_user(who):
    def rows(apps):
        users = apps.get_model("auth", "User").objects
        users.create(username="plain")
        users.create(username="later-admin", is_staff=True, is_superuser=(who == "superuser"))
        users.create(username="first-admin", is_staff=True, is_superuser=(who == "superuser"))
        users.filter(username="first-admin").update(id=users.order_by("id").first().id - 1)
        students = apps.get_model("basic", "Student").objects
        students.create(name="Ada", age=36)
        students.create(name="Alan", age=41)

    migrate_with(rows)
    from basic.models import Student

    assert sorted(Student.objects.values_list("name", "owner__username")) == [
        ("Ada", "first-admin"), ("Alan", "first-admin")]


@pytest.mark.django_db(transaction=True)
def test_ownerless_students_are_deleted_when_no_admin_could_own_them():
    def rows(apps):
        apps.get_model("auth", "User").objects.create(username="plain")
        apps.get_model("basic", "Student").objects.create(name="Ada", age=36)

    migrate_with(rows)
    from basic.models import Student

    assert not Student.objects.exists()
