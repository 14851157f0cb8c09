"""CSV reports: one owner's students-by-age rows read in constant memory, and CSV writing with fsync."""
import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from django.db import connection

from basic.students.models import Student

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


def _student_columns() -> tuple[str, str, str, str, str]:
    quote = connection.ops.quote_name
    table = quote(Student._meta.db_table)
    owner = Student._meta.get_field("owner").column
    return (table, *(f"{table}.{quote(column)}" for column in (owner, "age", "name", "id")))


def _csv_line_sql(age: str, name: str, pk: str) -> str:
    """One report line as an SQL expression: `id,"name",age` and CRLF, the name always quoted with
    `"` doubled (as the sqlite3 CLI does) and given a leading `'` if a spreadsheet would run it as a
    formula (OWASP CSV injection)."""
    codepoints = ", ".join(str(ord(trigger)) for trigger in FORMULA_TRIGGERS)
    if connection.vendor == "postgresql":
        return (f"{pk} || ',\"' || CASE WHEN ascii({name}) IN ({codepoints}) THEN '''' ELSE '' END || "
                f"CASE WHEN strpos({name}, '\"') > 0 THEN replace({name}, '\"', '\"\"') ELSE {name} END || "
                f"'\",' || {age} || chr(13) || chr(10)")
    # SQLite's printf() does the quoting in one call (%w doubles `"`): measured, it formats the
    # lines in two thirds of the time of the same line built with ||, instr() and replace().
    # (`%%` is a literal `%` to Django's cursor, which always gets parameters here.)
    return (f"printf('%%d,\"%%s%%w\",%%d' || char(13, 10), {pk}, "
            f"CASE WHEN unicode({name}) IN ({codepoints}) THEN '''' ELSE '' END, {name}, {age})")


class _ChunkQueries(NamedTuple):
    """The report's statements, built once per report; all read one owner's rows only. `chunk`
    and `seek` take a `{where}`: `first` (the owner's first rows) or `after` (past a key), whose
    parameters `_where` gives."""

    count: str  # the owner's rows (a report's total, for its progress)
    chunk: str  # (text, rows) of the next chunk_size lines
    lookup: str  # (age, name, id, line) of one student, by owner and id
    seek: str  # (age, name, id) of the n-th row after a key
    first: str  # the WHERE that starts at the owner's first row
    after: str  # the WHERE that starts after a key


def _chunk_queries() -> _ChunkQueries:
    table, owner, age, name, pk = _student_columns()
    line = _csv_line_sql(age, name, pk)
    order = f"{age}, {name}, {pk}"
    index_order = f"{owner}, {order}"  # the (owner, age, name, id) index; its first column is fixed
    if connection.vendor == "postgresql":
        chunk = (f"SELECT string_agg(line, '' ORDER BY k1, k2, k3), count(*) FROM (SELECT {line} AS line, "
                 f"{age} AS k1, {name} AS k2, {pk} AS k3 FROM {table} {{where}} ORDER BY {index_order} LIMIT %s) "
                 f"AS chunk")
    else:  # SQLite concatenates in the order of the ordered subquery
        chunk = f"SELECT group_concat(line, ''), count(*) FROM (SELECT {line} AS line FROM {table} {{where}} " \
                f"ORDER BY {index_order} LIMIT %s)"
    return _ChunkQueries(
        count=f"SELECT count(*) FROM {table} WHERE {owner} = %s",
        chunk=chunk,
        lookup=f"SELECT {order}, {line} FROM {table} WHERE {owner} = %s AND {pk} = %s",
        seek=f"SELECT {order} FROM {table} {{where}} ORDER BY {index_order} LIMIT 1 OFFSET %s",
        first=f"WHERE {owner} = %s",
        # A native row-value comparison over the index's columns after the owner seeks straight
        # into it; Django's tuple lookup falls back on SQLite to an OR chain that rescans the index
        # for every chunk. The row value must not repeat the owner: SQLite then uses only
        # `owner = ?` to seek and filters the rest, scanning the owner's rows from the first on
        # every chunk (a 1,000,000-row report took x12 the sqlite3 CLI's time instead of x1.5;
        # tests/unit/students/test_reports.py reads the plan).
        after=f"WHERE {owner} = %s AND ({order}) > (%s, %s, %s)",
    )


def _where(queries: _ChunkQueries, owner_id: int, last: tuple | None) -> tuple[str, list[Any]]:
    """The WHERE that starts at the owner's first row, or just past `last` (age, name, id)."""
    if last is None:
        return queries.first, [owner_id]
    return queries.after, [owner_id, *last]


def students_by_age_csv_chunks(owner_id: int, chunk_size: int) -> Iterator[tuple[str, int]]:
    """Every student of `owner_id` by age, then name (id breaks ties), as CSV text in chunks of
    `chunk_size` rows: (text, rows). Nobody else's students are read. The database formats the
    lines, so no Python object is made per row.

    Each chunk is one bounded statement, so memory stays constant and no read stays open while
    the caller writes (on SQLite an open read would keep the job's progress UPDATEs from
    committing, stalling every other job): it seeks the (owner, age, name, id) index past the
    previous chunk's last key and formats the next `chunk_size` rows as one string. That last key
    comes from the id that starts the chunk's last line, looked up by primary key (`_last_key`),
    so the index is read once per row.
    """
    queries = _chunk_queries()
    last: tuple | None = None
    with connection.cursor() as cursor:
        while True:
            where, params = _where(queries, owner_id, last)
            cursor.execute(queries.chunk.format(where=where), [*params, chunk_size])
            text, rows = cursor.fetchone()
            if not rows:
                return
            yield text, rows
            if rows < chunk_size:
                return
            last = _last_key(cursor, queries, owner_id, text, rows, last)


def _last_key(cursor: Any, queries: _ChunkQueries, owner_id: int, text: str, rows: int,
              previous: tuple | None) -> tuple:
    """The (age, name, id) of the chunk's last line. Fast path: the id after the last line break,
    checked by formatting that student's line again; a name holding a line break can fool the
    search (never the check: inside the quotes every `"` is doubled, so no line can start there),
    and then the chunk's last key is sought in the index."""
    newline = text.rfind("\r\n", 0, len(text) - 2)
    start = newline + 2 if newline >= 0 else 0  # a chunk of one line starts at 0
    digits = text[start:text.find(",", start)]
    if digits.isdigit():
        cursor.execute(queries.lookup, [owner_id, int(digits)])
        found = cursor.fetchone()
        if found and found[3] == text[start:]:
            return tuple(found[:3])
    where, params = _where(queries, owner_id, previous)
    cursor.execute(queries.seek.format(where=where), [*params, rows - 1])
    return tuple(cursor.fetchone())


def write_students_by_age(
    path: Path, owner_id: int, chunk_size: int, on_progress: Callable[[int, int], None] = lambda done, total: None
) -> int:
    """Write every student of `owner_id` by age, then name, as CSV to `path` and fsync it;
    `on_progress(rows_done, rows_total)` after each chunk. Returns the number of rows."""
    # In plain SQL as the chunks are: the ORM's count() was 10% of the worker's CPU per trivial
    # report (building and compiling it, py-spy), more than the statement itself.
    with connection.cursor() as cursor:
        cursor.execute(_chunk_queries().count, [owner_id])
        total = cursor.fetchone()[0]
    done = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(",".join(STUDENTS_BY_AGE_HEADER) + "\r\n")
        for text, rows in students_by_age_csv_chunks(owner_id, chunk_size):
            handle.write(text)
            done += rows
            on_progress(done, max(total, done))
        handle.flush()
        os.fsync(handle.fileno())
    return done
