"""Report cells a spreadsheet would run as formulas are quoted with a leading `'` (OWASP CSV
injection); numbers, including negative ones, are left as numbers."""
import csv

from basic.students.reports import csv_safe, write_rows_atomically


def test_formula_triggers_are_quoted():
    row = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://evil\")"]
    assert csv_safe(row) == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "'=HYPERLINK(\"http://evil\")"]


def test_harmless_and_non_string_cells_are_untouched():
    row = ["Ada", "", " =x", "a=b", "'=quoted", -5, 3, -2.5, None, True]
    assert csv_safe(row) == row


def test_the_written_report_is_neutralised(tmp_path):
    target = tmp_path / "report.csv"
    write_rows_atomically(target, ["id", "name", "age"], [(1, "=cmd|' /C calc'!A0", -3), (2, "Bo", 9)])
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["id", "name", "age"], ["1", "'=cmd|' /C calc'!A0", "-3"], ["2", "Bo", "9"]]
