"""Bulk creation of demo students."""
import random

from .models import Student

FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Edsger", "Donald", "Frances",
         "John", "Radia", "Tim", "Hedy", "Dennis", "Katherine", "Guido", "Anita", "Niklaus", "Shafi"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Dijkstra",
        "Knuth", "Allen", "McCarthy", "Perlman", "Berners-Lee", "Lamarr", "Ritchie", "Johnson",
        "van Rossum", "Borg", "Wirth", "Goldwasser"]


def create_random_students(*, count: int, seed: int | None = None) -> int:
    rng = random.Random(seed)
    batch = [
        Student(name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", age=rng.randint(5, 99)) for _ in range(count)
    ]
    Student.objects.bulk_create(batch, batch_size=2000)
    return count
