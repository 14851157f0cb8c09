"""Bulk creation of demo students, up to a cap on the table's size."""
import random

from django.conf import settings

from basic.students.models import Student

FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Edsger", "Donald", "Frances",
         "John", "Radia", "Tim", "Hedy", "Dennis", "Katherine", "Guido", "Anita", "Niklaus", "Shafi"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Dijkstra",
        "Knuth", "Allen", "McCarthy", "Perlman", "Berners-Lee", "Lamarr", "Ritchie", "Johnson",
        "van Rossum", "Borg", "Wirth", "Goldwasser"]


class StudentsFull(Exception):
    """More students were asked for than fit under STUDENTS_MAX; the message says how many still do."""


def create_random_students(*, count: int, seed: int | None = None) -> int:
    rng = random.Random(seed)
    batch = [
        Student(name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", age=rng.randint(5, 99)) for _ in range(count)
    ]
    Student.objects.bulk_create(batch, batch_size=2000)
    return count


def ensure_room_for(count: int) -> None:
    """StudentsFull unless `count` more students fit under STUDENTS_MAX (the API answers 409).

    Two requests racing past the check can overshoot the cap by at most one request's worth
    (100,000 rows); the per-user generate throttle bounds how often that can happen.
    """
    cap = settings.STUDENTS_MAX
    room = max(0, cap - Student.objects.count())
    if count > room:
        raise StudentsFull(f"The students table is capped at {cap:,} rows; {room:,} more can be added.")
