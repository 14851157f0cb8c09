"""Students: the demo data the students-by-age report reads (app label `basic`, index in basic/models.py).

Each student belongs to one user: the API shows a user only their own, `generate` adds to the
caller's, STUDENTS_MAX caps each owner's and the report reads only its job owner's (issue 22)."""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Student(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="students")
    name = models.CharField(max_length=100)
    age = models.PositiveSmallIntegerField(validators=[MinValueValidator(0), MaxValueValidator(150)])
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # The report seeks one owner's rows by (age, name, id); the owner's list is by id through
        # the foreign key's own index.
        indexes = [models.Index(fields=["owner", "age", "name", "id"], name="student_owner_age_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.age})"
