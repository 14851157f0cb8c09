"""CSV reports: the students-by-age rows read in constant memory, and CSV writing with fsync."""
import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from django.db import connection

from .models import Student

STUDENTS_BY_AGE_HEADER = ("id", "name", "age")


def remove_stale_temp_files(target: Path) -> None:
    """A worker killed mid-write leaves its temp file; the retried write clears it."""
    if target.parent.exists():
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)


# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets (CSV
# injection, e.g. a student named `=HYPERLINK(...)`): OWASP's advice is a leading single quote.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(row: Iterable[object]) -> list[object]:
    """The row with every string cell that a spreadsheet would run as a formula quoted with `'`.
    Only strings: numbers (even negative ones) are written as they are."""
    return [f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_TRIGGERS) else cell for cell in row]


def write_csv(
    path: Path,
    header: Iterable[str],
    rows: Iterable[Iterable[object]],
    on_row_count: Callable[[int], None] = lambda n: None,
    every: int = 1000,
) -> int:
    """Write CSV rows to `path` (a temp file the caller renames) and fsync it; call
    `on_row_count` every `every` rows. Returns the number of rows."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_safe(header))
        for row in rows:
            writer.writerow(csv_safe(row))
            count += 1
            if count % every == 0:
                on_row_count(count)
        handle.flush()
        os.fsync(handle.fileno())
    return count


def write_rows_atomically(
    target: Path,
    header: Iterable[str],
    rows: Iterable[Iterable[object]],
    on_row_count: Callable[[int], None] = lambda n: None,
    every: int = 1000,
) -> int:
    """`write_csv` to a temp file beside `target`, renamed into place when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        count = write_csv(Path(temp_name), header, rows, on_row_count, every)
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


def write_students_by_age(
    path: Path, chunk_size: int, on_progress: Callable[[int, int], None] = lambda done, total: None
) -> int:
    """Write every student by age, then name, as CSV to `path`; `on_progress(rows_done, rows_total)`
    after each chunk. Returns the number of rows."""
    total = Student.objects.count()
    return write_csv(path, STUDENTS_BY_AGE_HEADER, students_by_age_rows(chunk_size),
                     on_row_count=lambda done: on_progress(done, total), every=chunk_size)
