"""The `jobs` client prints nothing a terminal would execute (issue 22, item 2): a job's message,
kind, status or error may quote a web page, so each can hold ESC sequences (window title, clear
screen, hidden text), C1 controls, CR and backspace, rich markup or a lone surrogate. `jobs watch`
runs here for real (basic.cli.main, its REST call and its socket) against a small server that sends
such strings, and what it writes must show them visibly and execute none.

Also `terminal_text` itself, the one function between the server's strings and the screen."""
import json
import re
import threading
from collections.abc import Iterator

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import Server, ServerConnection, serve

from basic.cli import views
from basic.cli.main import main
from basic.cli.views import markup_text, terminal_text

JOB_ID = "3f1e5a4c-0000-4000-8000-000000000022"
HOSTILE = ("A\x00B \x1b]0;owned\x07 \x1b[2J \x1b[8mhidden\x1b[0m \x9b31m \x9d0;t\x9c over\rX\x08 "
           "[bold]bold[/bold] [link=http://evil.example]click[/link] :warning: \u202eexe \ud800 end\\")
# What the hostile strings may not leave in the output, whatever else the terminal gets from rich.
FORBIDDEN = ["\x1b]", "\x1b[2J", "\x1b[8m", "\x07", "\x08", "\x00", "\x9b", "\x9d", "\x9c", "\u202e", "\ud800"]
VISIBLE = ["A\\x00B", "\\x1b]0;owned\\x07", "\\x1b[2J", "\\x1b[8mhidden", "\\x9b31m", "over\\x0dX\\x08",
           "[bold]bold[/bold]", "[link=http://evil.example]click[/link]", ":warning:", "\\u202eexe", "\\ud800",
           "end\\"]
RICH_OWN = re.compile(r"\x1b\[[0-9;?]*[ABCDGHKJlhm]|\r")  # colours and the live bar's cursor moves


class FakeServer:
    """Answers GET /api/jobs/<id>/ with `job` and a job socket with `frames`, then `close_code`."""

    def __init__(self) -> None:
        self.job: dict = {}
        self.answers: dict[str, tuple[int, object]] = {}  # a REST path's own answer (status, JSON body)
        self.frames: list[dict] = []
        self.close_code = 1000
        self.server: Server = serve(self.handle, "127.0.0.1", 0, process_request=self.rest)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def rest(self, connection: ServerConnection, request):  # noqa: ANN201 - websockets' hook
        path = request.path.split("?", 1)[0]
        if path in self.answers:
            status, body = self.answers[path]
            return Response(status, "Answer", Headers({"Content-Type": "application/json"}), json.dumps(body).encode())
        if path.startswith("/api/"):
            return connection.respond(200, json.dumps(self.job))
        return None

    def handle(self, socket: ServerConnection) -> None:
        for frame in self.frames:
            socket.send(json.dumps(frame))
        socket.close(self.close_code)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.server.shutdown()


def hostile_job(server: FakeServer, *, ending: dict, close_code: int = 1000) -> None:
    server.job = {"id": JOB_ID, "kind": f"page_fetch{HOSTILE}", "status": "running", "progress": 40,
                  "message": HOSTILE}
    base = {"job": JOB_ID, "progress": 60, "message": HOSTILE, "kind": f"page_fetch{HOSTILE}",
            "ts": "2026-12-04T17:00:00+00:00"}
    server.frames = [{"type": "job.progress", "seq": 1, "status": "running", **base},
                     {**base, "status": f"running{HOSTILE}", "type": "job.progress", "seq": 2}, ending]
    server.close_code = close_code


def run_cli(server: FakeServer, capsys, monkeypatch, *args: str, terminal: bool) -> tuple[int, str]:
    monkeypatch.setenv("COLUMNS", "400")
    if terminal:  # rich then writes colours and a live bar, as in a terminal
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("TERM", "xterm-256color")
    else:
        monkeypatch.delenv("FORCE_COLOR", raising=False)
    code = main(["--url", server.url, "--token", "t", "--reconnect-timeout", "2", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_inert_and_visible(output: str, terminal: bool, visible: list[str] = VISIBLE) -> None:
    for sequence in FORBIDDEN:
        assert sequence not in output, (sequence, output)
    rest = RICH_OWN.sub("", output) if terminal else output
    assert [c for c in rest if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F] == [], repr(rest)
    for text in visible:
        assert text in rest, (text, rest)


@pytest.mark.parametrize("terminal", [False, True])
def test_watch_shows_a_failed_jobs_hostile_strings_visibly_and_executes_none(server, capsys, monkeypatch, terminal):
    hostile_job(server, ending={"type": "job.failed", "seq": 3, "job": JOB_ID, "status": "failed", "progress": 60,
                                "message": "Failed", "error": f"{HOSTILE}\nsecond line", "kind": "page_fetch"})
    code, output = run_cli(server, capsys, monkeypatch, "watch", JOB_ID, terminal=terminal)
    assert code == 1, output
    assert_inert_and_visible(output, terminal)
    assert "Failed" in output and "second line" in output


@pytest.mark.parametrize("status", ["done", "cancelled"])
def test_watch_shows_a_done_or_cancelled_jobs_message_visibly(server, capsys, monkeypatch, status):
    hostile_job(server, ending={"type": f"job.{status}", "seq": 3, "job": JOB_ID, "status": status, "progress": 100,
                                "message": HOSTILE, "result_url": "/x/", "result": {}})
    code, output = run_cli(server, capsys, monkeypatch, "watch", JOB_ID, terminal=True)
    assert code == (0 if status == "done" else 1), output
    assert_inert_and_visible(output, terminal=True)


def test_watch_json_writes_every_control_character_as_an_escape(server, capsys, monkeypatch):
    hostile_job(server, ending={"type": "job.failed", "seq": 3, "job": JOB_ID, "status": "failed", "progress": 60,
                                "message": "Failed", "error": HOSTILE})
    code, output = run_cli(server, capsys, monkeypatch, "--json", "watch", JOB_ID, terminal=False)
    assert code == 1
    assert [c for c in output if (ord(c) < 0x20 and c != "\n") or ord(c) >= 0x7F] == []
    frames = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert frames[-1]["error"] == HOSTILE  # for scripts: exactly what the server sent


def test_a_servers_refusal_is_shown_visibly(server, capsys, monkeypatch):
    """The error frame's detail before a final close reaches the "Error:" line."""
    server.job = {"id": JOB_ID, "kind": "page_fetch", "status": "running", "progress": 0, "message": ""}
    server.frames = [{"type": "error", "detail": HOSTILE}]
    server.close_code = 4404
    code, output = run_cli(server, capsys, monkeypatch, "watch", JOB_ID, terminal=True)
    assert code == 2, output
    # main.py prints the "Error:" line as markup: an emoji code shows as its emoji there, and a
    # trailing backslash doubled; neither drives the terminal.
    assert_inert_and_visible(output, terminal=True, visible=[v for v in VISIBLE if v not in (":warning:", "end\\")])


def test_terminal_text_writes_every_control_out_and_keeps_the_rest():
    assert terminal_text("\x1b[2J") == "\\x1b[2J"
    assert terminal_text("a\tb") == "a    b"
    assert terminal_text("a\nb") == "a\\x0ab" and terminal_text("a\nb", multiline=True) == "a\nb"
    assert terminal_text("\x9b\u202e\ufeff\ud800") == "\\x9b\\u202e\\ufeff\\ud800"
    assert terminal_text("é ✓ 日本 \U0001F600") == "é ✓ 日本 \U0001F600"
    assert terminal_text(None) == "" and terminal_text(42) == "42"
    every_character = terminal_text("".join(map(chr, range(0x110000))))
    assert not re.search("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]", every_character)


def test_markup_text_prints_markup_literally():
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    hostile = "[bold]b[/bold] [link=http://e]l[/link] end\\"
    Console(file=out, width=200).print(f"[red]x[/]: [i]{markup_text(hostile)}[/i]")
    assert out.getvalue().strip() == "x: [bold]b[/bold] [link=http://e]l[/link] end\\"
    assert views.styled_status("[blink]x") == "[white]\\[blink]x[/]"
