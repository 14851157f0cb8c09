"""Adding students: one at a time or in bulk, up to STUDENTS_MAX per owner.

The cap is checked and the rows inserted in one transaction that first locks the owner's user row
(`lock_user`), so parallel requests of one owner take turns and can never pass it together, on
PostgreSQL as on SQLite; other owners are not held up."""
import random
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from basic.core.rate_limit import lock_user
from basic.students.models import Student

FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Edsger", "Donald", "Frances",
         "John", "Radia", "Tim", "Hedy", "Dennis", "Katherine", "Guido", "Anita", "Niklaus", "Shafi"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Dijkstra",
        "Knuth", "Allen", "McCarthy", "Perlman", "Berners-Lee", "Lamarr", "Ritchie", "Johnson",
        "van Rossum", "Borg", "Wirth", "Goldwasser"]


class StudentsFull(Exception):
    """More students were asked for than fit under the owner's STUDENTS_MAX; the message says how
    many still do (the API answers 409)."""


def students_of(owner: Any) -> QuerySet[Student]:
    """The students `owner` may list, read, change and delete: their own (none for anonymous)."""
    if not getattr(owner, "is_authenticated", False):
        return Student.objects.none()
    return Student.objects.filter(owner=owner)


def create_random_students(*, owner: AbstractBaseUser, count: int, seed: int | None = None) -> int:
    """Insert `count` random students of `owner`, without checking the cap (tests, benchmarks);
    requests go through `add_random_students`."""
    rng = random.Random(seed)
    batch = [
        Student(owner=owner, name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", age=rng.randint(5, 99))
        for _ in range(count)
    ]
    Student.objects.bulk_create(batch, batch_size=2000)
    return count


def ensure_room_for(owner: AbstractBaseUser, count: int) -> None:
    """StudentsFull unless `count` more students of `owner` fit under STUDENTS_MAX. Only atomic
    inside a transaction that holds `lock_user(owner)` (as the `add_*` functions do)."""
    cap = settings.STUDENTS_MAX
    room = max(0, cap - Student.objects.filter(owner=owner).count())
    if count > room:
        raise StudentsFull(f"You may have {cap:,} students; {room:,} more can be added.")


def add_random_students(*, owner: AbstractBaseUser, count: int, seed: int | None = None) -> int:
    """`count` random students for `owner`, all or none: StudentsFull if they don't fit.
    Returns the owner's number of students afterwards."""
    with transaction.atomic():
        lock_user(owner)
        ensure_room_for(owner, count)
        create_random_students(owner=owner, count=count, seed=seed)
        return Student.objects.filter(owner=owner).count()


def add_student(*, owner: AbstractBaseUser, **fields: Any) -> Student:
    """One student for `owner` (validated fields: name, age); StudentsFull at the cap."""
    with transaction.atomic():
        lock_user(owner)
        ensure_room_for(owner, 1)
        return Student.objects.create(owner=owner, **fields)
