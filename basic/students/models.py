"""Students: the demo data the students-by-age report reads (app label `basic`, index in basic/models.py)."""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Student(models.Model):
    name = models.CharField(max_length=100)
    age = models.PositiveSmallIntegerField(validators=[MinValueValidator(0), MaxValueValidator(150)])
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["age", "name", "id"], name="student_age_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.age})"
