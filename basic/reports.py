"""Report files: written to a temp file beside the target and renamed into place when complete,
so a reader (or a killed worker) never sees a half-written report at the report path."""
import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

from .models import Student

STUDENTS_BY_AGE_HEADER = ("id", "name", "age")


class ReportCancelled(Exception):
    """Raised from a progress callback to stop a report between chunks."""


def report_path(job_id: object) -> Path:
    return Path(settings.REPORTS_DIR) / f"students-by-age-{job_id}.csv"


def remove_stale_temp_files(target: Path) -> None:
    """A worker killed mid-write leaves its temp file; the retried task clears it."""
    if target.parent.exists():
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)


def write_rows_atomically(
    target: Path,
    header: Iterable[str],
    rows: Iterable[Iterable[object]],
    on_row_count: Callable[[int], None] = lambda n: None,
    every: int = 1000,
) -> int:
    """Write CSV rows to `target` atomically; call `on_row_count` every `every` rows."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
                if count % every == 0:
                    on_row_count(count)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return count


def students_by_age_rows(chunk_size: int) -> Iterator[tuple[int, str, int]]:
    """Every student, by age then name (id breaks ties), read in keyset-paginated chunks.

    Each chunk is a complete query, so memory stays constant and no read statement stays open
    while the caller writes: on SQLite an open read would keep the job's progress UPDATEs from
    committing, holding the write lock across greenlet switches and stalling every other job.
    """
    students = Student.objects.order_by("age", "name", "id").values_list("id", "name", "age")
    table = connection.ops.quote_name(Student._meta.db_table)
    age, name, pk = (f"{table}.{connection.ops.quote_name(column)}" for column in ("age", "name", "id"))
    # A native row-value comparison seeks straight into the (age, name, id) index; Django's own
    # tuple lookup falls back on SQLite to an OR chain that rescans the index for every chunk.
    after_last = f"({age}, {name}, {pk}) > (%s, %s, %s)"
    last: tuple[int, str, int] | None = None
    while True:
        page = students
        if last is not None:
            last_id, last_name, last_age = last
            page = students.extra(where=[after_last], params=[last_age, last_name, last_id])
        chunk = list(page[:chunk_size])
        yield from chunk
        if len(chunk) < chunk_size:
            return
        last = chunk[-1]


def write_students_by_age_report(
    job_id: object, on_progress: Callable[[int, int], None] = lambda done, total: None
) -> tuple[Path, int]:
    """Write the students-by-age CSV for a job; `on_progress(rows_done, rows_total)` per chunk."""
    total = Student.objects.count()
    chunk = settings.REPORT_CHUNK_SIZE
    target = report_path(job_id)
    count = write_rows_atomically(
        target,
        STUDENTS_BY_AGE_HEADER,
        students_by_age_rows(chunk),
        on_row_count=lambda done: on_progress(done, total),
        every=chunk,
    )
    return target, count
