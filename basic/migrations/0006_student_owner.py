"""Students get an owner (issue 22): each user sees, changes and reports on only their own.

Students from before this migration had none. They go to the first superuser (lowest id), as the
admin who ran the demo is the one who made them; with no superuser, to the first staff user;
with neither there is nobody who could have made them on purpose, and they are deleted (demo
data: `POST /api/students/generate/` makes more). The owner is then required.

The migration is not atomic: on PostgreSQL a table whose rows were just updated (the deferred
foreign-key checks still pending) cannot be altered in the same transaction, so each step
commits on its own (the data step in one transaction of its own).
"""
from django.conf import settings
from django.db import migrations, models


def give_students_an_owner(apps, schema_editor):
    Student = apps.get_model("basic", "Student")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    ownerless = Student.objects.filter(owner__isnull=True)
    owner = (User.objects.filter(is_superuser=True).order_by("pk").first()
             or User.objects.filter(is_staff=True).order_by("pk").first())
    if owner is None:
        ownerless.delete()
    else:
        ownerless.update(owner=owner)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("basic", "0005_hashed_api_tokens"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="student",
            name="owner",
            field=models.ForeignKey(null=True, on_delete=models.CASCADE, related_name="students",
                                    to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(give_students_an_owner, migrations.RunPython.noop, atomic=True),
        migrations.AlterField(
            model_name="student",
            name="owner",
            field=models.ForeignKey(on_delete=models.CASCADE, related_name="students", to=settings.AUTH_USER_MODEL),
        ),
        migrations.RemoveIndex(model_name="student", name="student_age_name"),
        migrations.AddIndex(
            model_name="student",
            index=models.Index(fields=["owner", "age", "name", "id"], name="student_owner_age_name"),
        ),
    ]
