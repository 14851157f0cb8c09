"""Report writing at scale: peak Python memory and rows/s of our chunked writer vs the naive
`list(queryset)` approach, on the same SQLite database in the same run.

Run: `python -m bench.bench_report [ROWS]` (default 1,000,000).
"""
import os
import random
import sqlite3
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
    rng = random.Random(1)
    with sqlite3.connect(workdir / "db.sqlite3") as db:
        db.executemany(
            "INSERT INTO basic_student (name, age, created) VALUES (?, ?, '2026-01-01')",
            ((f"student {rng.randrange(10**6):06d}", rng.randrange(100)) for _ in range(rows)),
        )
    from django.conf import settings

    from basic.models import Student
    from basic.reports import STUDENTS_BY_AGE_HEADER, write_rows_atomically, write_students_by_age

    def naive() -> None:
        everything = list(Student.objects.order_by("age", "name", "id").values_list("id", "name", "age"))
        write_rows_atomically(workdir / "naive.csv", STUDENTS_BY_AGE_HEADER, everything)

    ours_mib, ours_s = measure(lambda: write_students_by_age(workdir / "ours.csv", settings.REPORT_CHUNK_SIZE))
    naive_mib, naive_s = measure(naive)
    print(f"\nStudents-by-age report of {rows:,} rows (peak Python memory, tracemalloc on)")
    print(f"  naive list(queryset) then write       {naive_mib:8.1f} MiB  {rows / naive_s:10,.0f} rows/s")
    print(f"  ours: keyset chunks of 2,000           {ours_mib:8.1f} MiB  {rows / ours_s:10,.0f} rows/s")
    print(f"  memory: ours uses x{ours_mib / naive_mib:.3f} of the naive peak; speed x{naive_s / ours_s:.2f}")
    stop_redis()
    result = {"rows": rows, "naive": {"peak_mib": naive_mib, "rows_per_s": rows / naive_s},
              "ours": {"peak_mib": ours_mib, "rows_per_s": rows / ours_s}}
    write_result(result)
    return result


if __name__ == "__main__":
    main()
