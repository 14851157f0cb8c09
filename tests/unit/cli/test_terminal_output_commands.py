"""The `jobs` commands whose printing is in basic/cli/main.py (list, events, errors) print server
strings as inert as `jobs watch` does (tests/unit/cli/test_terminal_output.py, whose small server
and checks these reuse)."""
import pytest

from tests.unit.cli.test_terminal_output import (
    HOSTILE,
    JOB_ID,
    assert_inert_and_visible,
    run_cli,
    server,  # noqa: F401 (fixture)
)

ROW = {"id": JOB_ID, "kind": f"page_fetch{HOSTILE}", "status": "failed", "progress": 60,
       "created": f"2026-12-04{HOSTILE}", "message": "Failed", "error": HOSTILE}


@pytest.mark.parametrize("terminal", [False, True])
def test_list_shows_hostile_rows_visibly(server, capsys, monkeypatch, terminal):  # noqa: F811
    server.answers["/api/jobs/"] = (200, {"results": [ROW], "next": None})
    monkeypatch.setattr("sys.stdout.isatty", lambda: terminal, raising=False)
    code, output = run_cli(server, capsys, monkeypatch, "list", terminal=terminal)
    assert code == 0, output
    if not terminal:  # for pipes: tab-separated, and no field holds a tab of its own
        assert [line.count("\t") for line in output.splitlines()] == [5]
        output = output.replace("\t", " ")
    assert_inert_and_visible(output, terminal)


def test_a_rest_error_quoting_the_server_is_shown_visibly(server, capsys, monkeypatch):  # noqa: F811
    server.answers[f"/api/jobs/{JOB_ID}/"] = (400, {"detail": HOSTILE})
    code, output = run_cli(server, capsys, monkeypatch, "watch", JOB_ID, terminal=True)
    assert code == 2, output
    assert_inert_and_visible(output, terminal=True)


def test_events_show_hostile_frames_visibly(server, capsys, monkeypatch):  # noqa: F811
    server.answers["/api/jobs/"] = (200, {"results": [], "next": None})
    server.frames = [{"type": "job.failed", "seq": 3, "job": JOB_ID, "status": "failed", "progress": 60,
                      "kind": "page_fetch", "message": "Failed", "error": HOSTILE,
                      "ts": "2026-12-04T17:00:00+00:00"}]
    server.close_code = 4401  # final: ends the command after the frame
    code, output = run_cli(server, capsys, monkeypatch, "events", terminal=True)
    assert code == 2, output
    assert_inert_and_visible(output, terminal=True)
