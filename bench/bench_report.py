"""Report writing at scale: peak Python memory of our chunked writer vs the naive `list(queryset)`
approach, and its time against the floor, the sqlite3 CLI writing the same CSV, in the same run.

Run: `python -m bench.bench_report [ROWS]` (default 1,000,000).
"""
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def measure(run) -> tuple[float, float]:
    """(peak MiB of Python allocations, seconds) for one call."""
    tracemalloc.start()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, elapsed


def best_of(times: int, run) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> dict:
    from bench.common import without_json_flag, write_result

    args = without_json_flag(sys.argv)
    rows = int(args[1]) if len(args) > 1 else 1_000_000
    workdir = Path(tempfile.mkdtemp(prefix="bench-report-"))
    os.environ.update({"DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "MEDIA_ROOT": str(workdir / "media")})
    from bench.common import setup_django, stop_redis

    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create(username="bench")  # the report reads one owner's students
    rng = random.Random(1)
    with sqlite3.connect(workdir / "db.sqlite3") as db:
        db.executemany(
            "INSERT INTO basic_student (owner_id, name, age, created) VALUES (?, ?, ?, '2026-01-01')",
            ((owner.pk, f"student {rng.randrange(10**6):06d}", rng.randrange(100)) for _ in range(rows)),
        )
    from django.conf import settings

    from basic.models import Student
    from basic.students.reports import STUDENTS_BY_AGE_HEADER, write_rows_atomically, write_students_by_age

    def naive() -> None:
        everything = list(Student.objects.filter(owner=owner).order_by("age", "name", "id")
                          .values_list("id", "name", "age"))
        write_rows_atomically(workdir / "naive.csv", STUDENTS_BY_AGE_HEADER, everything)

    ours_mib, _ = measure(lambda: write_students_by_age(workdir / "ours.csv", owner.pk, settings.REPORT_CHUNK_SIZE))
    naive_mib, naive_s = measure(naive)
    # Speed without tracemalloc (it slows every allocation), best of 3, against the floor: the
    # sqlite3 CLI writing the same query as CSV, in the same run.
    ours_s = best_of(3, lambda: write_students_by_age(workdir / "ours.csv", owner.pk, settings.REPORT_CHUNK_SIZE))
    query = f"SELECT id, name, age FROM basic_student WHERE owner_id = {int(owner.pk)} ORDER BY age, name, id"
    cli = shutil.which("sqlite3")
    cli_s = best_of(3, lambda: subprocess.run([cli, "-csv", str(workdir / "db.sqlite3"), query], check=True,
                                             stdout=(workdir / "cli.csv").open("wb"))) if cli else None
    print(f"\nStudents-by-age report of {rows:,} rows (peak Python memory with tracemalloc; time best of 3 without)")
    print(f"  naive list(queryset) then write       {naive_mib:8.1f} MiB  {rows / naive_s:10,.0f} rows/s (traced)")
    chunks = f"{settings.REPORT_CHUNK_SIZE:,}"
    print(f"  ours: SQL-formatted chunks of {chunks:7}{ours_mib:8.1f} MiB  {rows / ours_s:10,.0f} rows/s")
    print(f"  memory: ours uses x{ours_mib / naive_mib:.3f} of the naive peak")
    if cli_s:
        print(f"  sqlite3 -csv (the floor)              {'':8}      {rows / cli_s:10,.0f} rows/s")
        print(f"  time: ours x{ours_s / cli_s:.2f} of the sqlite3 CLI ({ours_s:.2f} s against {cli_s:.2f} s)")
    else:
        print("  (no sqlite3 CLI on PATH: apt-get install sqlite3 for the floor)")
    stop_redis()
    result = {"rows": rows, "naive": {"peak_mib": naive_mib, "rows_per_s": rows / naive_s},
              "ours": {"peak_mib": ours_mib, "rows_per_s": rows / ours_s, "seconds": ours_s},
              "sqlite3_cli": {"seconds": cli_s, "rows_per_s": rows / cli_s} if cli_s else None,
              "ours_vs_cli": ours_s / cli_s if cli_s else None}
    write_result(result)
    return result


if __name__ == "__main__":
    main()
