import csv
import io
import os

import pytest

from basic.models import Student
from basic.students.reports import write_rows_atomically, write_students_by_age

pytestmark = pytest.mark.django_db


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_report_sorted_by_age_then_name_with_header(tmp_path, alice):
    for name, age in [("Zed", 30), ("amy", 30), ("Bob", 7), ("Amy", 30), ("Cy, \"the\" one", 99), ("Dee", 0)]:
        Student.objects.create(owner=alice, name=name, age=age)
    progress = []
    path = tmp_path / "report.csv"
    count = write_students_by_age(path, alice.pk, 3, lambda done, total: progress.append((done, total)))
    rows = read_csv(path)
    assert rows[0] == ["id", "name", "age"]
    assert [(r[1], int(r[2])) for r in rows[1:]] == [
        ("Dee", 0), ("Bob", 7), ("Amy", 30), ("Zed", 30), ("amy", 30), ("Cy, \"the\" one", 99)
    ]
    assert count == 6
    assert progress == [(3, 6), (6, 6)]


def test_empty_table_gives_header_only(tmp_path, alice):
    path = tmp_path / "report.csv"
    count = write_students_by_age(path, alice.pk, 100)
    assert count == 0
    assert read_csv(path) == [["id", "name", "age"]]


def test_failure_mid_write_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "out.csv"

    def rows():
        yield (1, "a", 1)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        write_rows_atomically(target, ["id"], rows())
    assert os.listdir(tmp_path) == []


def test_previous_report_stays_until_new_one_is_complete(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old complete report\n")
    seen_during_write = []

    def rows():
        for i in range(3):
            seen_during_write.append(target.read_text())
            yield (i,)

    write_rows_atomically(target, ["n"], rows())
    assert seen_during_write == ["old complete report\n"] * 3
    assert read_csv(target) == [["n"], ["0"], ["1"], ["2"]]


def test_stale_temp_files_from_a_killed_worker_are_cleared(tmp_path):
    target = tmp_path / "out.csv"
    (tmp_path / ".out.csv.abc123.tmp").write_text("half")
    write_rows_atomically(target, ["n"], [(1,)])
    assert sorted(os.listdir(tmp_path)) == ["out.csv"]


def test_reads_in_bounded_chunks_in_the_right_order(django_assert_num_queries, alice):
    """Constant memory: one bounded statement per chunk plus a primary-key lookup of its last
    key, never one query for every row, and the rows in report order."""
    from basic.students.reports import students_by_age_csv_chunks

    Student.objects.bulk_create([Student(owner=alice, name=f"s{i % 7}", age=i % 5) for i in range(50)])
    with django_assert_num_queries(2 * 5 + 1):  # 5 full chunks of 10, then an empty one
        chunks = list(students_by_age_csv_chunks(alice.pk, chunk_size=10))
    assert [rows for _text, rows in chunks] == [10] * 5
    lines = list(csv.reader(io.StringIO("".join(text for text, _rows in chunks))))
    expected = Student.objects.order_by("age", "name", "id").values_list("id", "name", "age")
    assert [(int(i), name, int(age)) for i, name, age in lines] == list(expected)


def test_a_short_last_chunk_ends_without_another_query(django_assert_num_queries, alice):
    from basic.students.reports import students_by_age_csv_chunks

    Student.objects.bulk_create([Student(owner=alice, name=f"s{i}", age=i) for i in range(25)])
    with django_assert_num_queries(2 * 2 + 1):
        assert [rows for _text, rows in students_by_age_csv_chunks(alice.pk, chunk_size=10)] == [10, 10, 5]


def test_each_chunk_after_the_first_seeks_into_the_index_past_the_last_key(alice):
    """The chunk after a key must start there in the (owner, age, name, id) index, not scan the
    owner's rows from the first and filter: that made a report's time grow with the square of its
    rows (bench_report: 1,000,000 rows at x12 the sqlite3 CLI's time, the gap between chunks
    growing 7 -> 29 ms over 300,000 rows). Read from the database's own plan."""
    from django.db import connection

    from basic.students.reports import _chunk_queries, _where

    queries = _chunk_queries()
    where, params = _where(queries, alice.pk, (5, "s3", 17))
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + queries.chunk.format(where=where), [*params, 10])
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "INDEX student_owner_age_name (owner_id=? AND (age,name" in plan, plan
        else:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: the plan as at scale
            cursor.execute("EXPLAIN " + queries.chunk.format(where=where), [*params, 10])
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "Index Cond: ((owner_id = " in plan and "ROW(age, name, id) > ROW(" in plan, plan
            assert "Filter" not in plan, plan


def test_names_holding_line_breaks_that_look_like_records_split_chunks_right(tmp_path, alice):
    """The chunk's last key is found from the id after its last line break; a name with a line
    break followed by another student's id (even a whole line of theirs) must not move it."""
    decoy = Student.objects.create(owner=alice, name="decoy", age=1)
    tricky = [f"x\r\n{decoy.id},", f'a\r\n{decoy.id},"decoy",1', f'b\r\n{decoy.id},"decoy",1\r\n', "\r\n",
              f"\r\n{decoy.id}", "c\r\n9999999,z"]
    for name in tricky:
        Student.objects.create(owner=alice, name=name, age=50)
    for size in (1, 2, 3, 100):
        path = tmp_path / f"report-{size}.csv"
        assert write_students_by_age(path, alice.pk, size) == len(tricky) + 1
        rows = read_csv(path)[1:]
        expected = [(i, "'" + name if name[:1] == "\r" else name, age)
                    for i, name, age in Student.objects.order_by("age", "name", "id").values_list("id", "name", "age")]
        assert [(int(i), name, int(age)) for i, name, age in rows] == expected


def test_names_are_quoted_and_formulas_neutralised_by_the_database(tmp_path, alice):
    names = ['=cmd|" /C calc"!A0', "+1", "-2", "@SUM(A1)", "\tx", "\rx", 'say "hi", then\nleave', "'=kept", "Bo"]
    for name in names:
        Student.objects.create(owner=alice, name=name, age=7)
    path = tmp_path / "report.csv"
    write_students_by_age(path, alice.pk, 4)
    rows = read_csv(path)[1:]
    by_id = {int(row[0]): row[1] for row in rows}
    expected = {s.id: ("'" + s.name if s.name[:1] in "=+-@\t\r" else s.name) for s in Student.objects.all()}
    assert by_id == expected
    assert f'{Student.objects.get(name="Bo").id},"Bo",7\r\n'.encode() in path.read_bytes()  # always quoted


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 1000])
def test_the_report_reads_only_its_owners_students(tmp_path, alice, bob, chunk_size, django_assert_max_num_queries):
    """Another owner's students, even ones whose (age, name) sort between the owner's, at every
    chunk boundary, never reach the report, nor its count, nor the chunk seeks."""
    for i in range(10):
        Student.objects.create(owner=alice, name=f"a{i}", age=i % 3)
        Student.objects.create(owner=bob, name=f"a{i}", age=i % 3)  # same keys: ties broken by id
        Student.objects.create(owner=bob, name=f"b{i}\r\n{i}", age=i % 3)
    progress = []
    path = tmp_path / "report.csv"
    with django_assert_max_num_queries(2 * (10 // chunk_size + 1) + 2):
        count = write_students_by_age(path, alice.pk, chunk_size, lambda done, total: progress.append(total))
    rows = read_csv(path)[1:]
    expected = list(Student.objects.filter(owner=alice).order_by("age", "name", "id").values_list("id", "name", "age"))
    assert [(int(i), name, int(age)) for i, name, age in rows] == expected
    assert count == 10 and set(progress) == {10}
    assert write_students_by_age(tmp_path / "nobody.csv", -1, chunk_size) == 0
