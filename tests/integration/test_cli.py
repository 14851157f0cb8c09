"""The `jobs` terminal client in a real terminal (a pty driven by pexpect, its screen rendered by
the pyte terminal emulator) against the real stack: follow to done (exit 0) and to a failure
(exit 1), resume across a Daphne restart without repeating or skipping an event, a filtered
`jobs events`, Ctrl-C, and clear errors for a bad token, a wrong URL and an unknown kind."""
import json
import os
import re
import shutil
import signal
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pexpect
import pyte
import pytest
from PIL import Image

from basic.ops import stack
from tests.integration.test_resilience import assert_gapless, db_progress
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("jobs")  # installed by `make setup` (pip install -e .)


def jobs_command() -> list[str]:
    if SCRIPT.exists():
        return [str(SCRIPT)]
    return [sys.executable, "-m", "basic.cli.main"]  # the same code, before `make setup` ran


def as_from_a_shell() -> None:
    """Ctrl-C reaches the command as in a person's terminal, even when the tests themselves were
    started in the background by a script (which starts them with SIGINT ignored, inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """One command in a 120x30 pseudo-terminal; `screen()` is what a person would see."""

    def __init__(self, live: LiveStack, *args: str, token: str | None = None, url: str | None = None) -> None:
        env = {**os.environ, "JOBS_URL": url or live.base_url, "JOBS_TOKEN": live.token if token is None else token,
               "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"}
        env.pop("NO_COLOR", None)
        command = [*jobs_command(), *args]
        self.emulator = pyte.Screen(120, 30)
        self.stream = pyte.ByteStream(self.emulator)
        self.raw = b""
        self.child = pexpect.spawn(command[0], command[1:], env=env, cwd=str(stack.BASE_DIR), dimensions=(30, 120),
                                   preexec_fn=as_from_a_shell)
        self.screens: list[str] = []

    def pump(self, seconds: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                chunk = self.child.read_nonblocking(65536, timeout=max(0.01, deadline - time.monotonic()))
            except (pexpect.TIMEOUT, pexpect.EOF):
                chunk = b""
            if chunk:
                self.raw += chunk
                self.stream.feed(chunk)
                self.screens.append(self.screen())
            if time.monotonic() >= deadline or (not chunk and not self.child.isalive()):
                return

    def screen(self) -> str:
        return "\n".join(line.rstrip() for line in self.emulator.display).strip()

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", self.raw.decode(errors="replace"))

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.2)
            if predicate(self):
                return
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def exit_code(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self.pump(0.2)
        self.pump(0.1)
        if self.child.isalive():
            self.child.terminate(force=True)
            raise AssertionError(f"still running after {timeout}s; screen:\n{self.screen()}")
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else 128 + self.child.signalstatus

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def live(stack_root):
    with live_stack(stack_root, "cli", cpu_worker=True) as running:
        yield running


def start_job(live: LiveStack, kind: str = "test_steps", **params) -> str:
    response = httpx.post(f"{live.base_url}/api/jobs/", json={"kind": kind, "params": params}, headers=live.headers)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job_status(live: LiveStack, job_id: str) -> str:
    return httpx.get(f"{live.base_url}/api/jobs/{job_id}/", headers=live.headers).json()["status"]


def test_follow_draws_a_live_bar_to_done_and_exits_0(live):
    term = Terminal(live, "start", "test_steps", "--param", "steps=5", "--param", "delay=0.3", "--follow")
    assert term.exit_code() == 0, term.screen()
    screen = term.screen()
    assert "100%" in screen and "done" in screen and "Done: 5 steps done" in screen, screen
    assert re.search(r"Started test_steps job [0-9a-f-]{36}", screen)
    # It was live: the bar stood between 0 and 100 with the job's message on the way.
    assert any(re.search(r"\b(20|40|60|80)%.*running.*Step \d of 5", shot) for shot in term.screens), term.screens


def test_follow_a_failing_job_exits_1_with_the_reason(live):
    term = Terminal(live, "start", "test_steps", "-p", "steps=4", "-p", "delay=0.1", "-p", "crash_at=2", "--follow")
    assert term.exit_code() == 1
    screen = term.screen()
    assert "Failed: The job stopped on an unexpected error" in screen and "failed" in screen
    assert "secret internal detail" not in term.text()


def test_watch_json_survives_a_server_restart_with_every_event_once(live):
    job_id = start_job(live, steps=40, delay=0.25)
    term = Terminal(live, "watch", job_id, "--json")
    term.wait_for(lambda t: len(t.json_lines()) >= 4, timeout=30, what="the first events")
    port = urlsplit(live.base_url).port
    stack.stop(live.processes["daphne"])
    try:
        before = db_progress(live, job_id)
        deadline = time.monotonic() + 20
        while db_progress(live, job_id) < before + 15 and time.monotonic() < deadline:
            term.pump(0.2)  # the job goes on without the web server; the client keeps trying
        assert db_progress(live, job_id) < 100, "the job ended before the server came back"
        shown_while_down = len(term.json_lines())
    finally:
        live.processes["daphne"] = stack.start_daphne(port, live.env, log=live.worker_log.with_name("daphne.log"))
    assert term.exit_code(timeout=60) == 0, term.text()
    events = term.json_lines()
    assert len(events) > shown_while_down
    assert_gapless(events)
    seqs = [e["seq"] for e in events]
    assert len(seqs) == len(set(seqs)) and events[-1]["type"] == "job.done"
    assert "Connection lost" in term.text() and "Reconnected." in term.text()


def test_events_are_filtered_by_kind_and_by_status(live):
    by_kind = Terminal(live, "events", "--kind", "test_steps", "--json")
    by_status = Terminal(live, "events", "--status", "done")
    for term in (by_kind, by_status):
        term.wait_for(lambda t: "Listening for your jobs' events" in t.screen(), timeout=20, what="the feed")
    steps_job = start_job(live, steps=3, delay=0.1)
    report_job = start_job(live, kind="students_by_age")
    for job_id in (steps_job, report_job):
        deadline = time.monotonic() + 30
        while job_status(live, job_id) != "done" and time.monotonic() < deadline:
            by_kind.pump(0.1)
            by_status.pump(0.1)
    by_kind.wait_for(lambda t: any(e["type"] == "job.done" for e in t.json_lines()), timeout=10, what="job.done")
    by_status.wait_for(lambda t: report_job in t.text() and steps_job in t.text(), timeout=10, what="both done")
    time.sleep(0.5)
    for term in (by_kind, by_status):
        term.pump(0.3)
        term.child.sendintr()
        assert term.exit_code(timeout=10) == 130
    kinds_seen = by_kind.json_lines()
    assert {e["kind"] for e in kinds_seen} == {"test_steps"} and report_job not in {e["job"] for e in kinds_seen}
    steps_seen = [e for e in kinds_seen if e["job"] == steps_job]
    assert [e["seq"] for e in steps_seen] == list(range(1, len(steps_seen) + 1)) and len(steps_seen) >= 3
    done_lines = [line for line in by_status.text().splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert all(" job.done " in line and " done " in line for line in done_lines), done_lines
    assert any(report_job in line and "students_by_age" in line for line in done_lines)
    assert any(steps_job in line and "test_steps" in line for line in done_lines)


def test_ctrl_c_stops_watching_and_cancels_only_when_asked(live):
    kept = start_job(live, steps=40, delay=0.2)
    term = Terminal(live, "watch", kept)
    term.wait_for(lambda t: "running" in t.screen(), timeout=30, what="the bar")
    term.child.sendintr()
    assert term.exit_code(timeout=10) == 130
    assert "goes on" in term.screen() and job_status(live, kept) == "running"

    term = Terminal(live, "start", "test_steps", "-p", "steps=40", "-p", "delay=0.2", "--follow",
                    "--cancel-on-interrupt")
    term.wait_for(lambda t: "running" in t.screen(), timeout=30, what="the bar")
    cancelled = re.search(r"job ([0-9a-f-]{36})", term.screen()).group(1)
    term.child.sendintr()
    assert term.exit_code(timeout=10) == 130
    assert "Cancel requested" in term.screen()
    deadline = time.monotonic() + 20
    while job_status(live, cancelled) != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_status(live, cancelled) == "cancelled"
    httpx.post(f"{live.base_url}/api/jobs/{kept}/cancel/", headers=live.headers)


def test_list_cancel_and_download(live, tmp_path):
    done = start_job(live, steps=2)
    term = Terminal(live, "watch", done)
    assert term.exit_code() == 0
    term = Terminal(live, "list", "--kind", "test_steps", "--status", "done")
    assert term.exit_code() == 0 and done in term.screen()
    target = tmp_path / "out.txt"
    term = Terminal(live, "download", done, "-o", str(target))
    assert term.exit_code() == 0 and target.read_text() == "step 1\nstep 2\n"
    term = Terminal(live, "cancel", done)
    assert term.exit_code() == 1 and "already done" in term.screen()
    running = start_job(live, steps=50, delay=0.2)
    term = Terminal(live, "download", running)
    assert term.exit_code() == 1 and "The result is not ready" in term.screen()
    term = Terminal(live, "cancel", running)
    assert term.exit_code() == 0 and ("Cancel requested" in term.screen() or "cancelled" in term.screen())


def test_a_kind_with_an_upload_starts_from_a_file(live, tmp_path):
    image = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), (10, 120, 200)).save(image)
    term = Terminal(live, "start", "thumbnails", "--file", str(image), "-p", "sizes=64x64", "--follow")
    assert term.exit_code() == 0, term.screen()
    job_id = re.search(r"job ([0-9a-f-]{36})", term.screen()).group(1)
    target = tmp_path / "out.zip"
    assert Terminal(live, "download", job_id, "-o", str(target)).exit_code() == 0
    assert sorted(zipfile.ZipFile(target).namelist()) == ["photo-64x64.png", "photo.png"]


@pytest.mark.parametrize("args, env, code, message", [
    (["list"], {"token": "not-a-token"}, 2, "The server refused the token"),
    (["start", "nope"], {}, 2, "Unknown kind 'nope'. Known kinds: students_by_age"),
    (["start", "test_steps", "-p", "steps=0"], {}, 2, "Bad parameters:"),
    (["start", "test_steps", "-p", "oops"], {}, 2, "expected key=value"),
    (["watch", "00000000-0000-0000-0000-000000000000"], {}, 2, "No job 00000000"),
    (["list"], {"url": "http://127.0.0.1:{free}"}, 3, "Cannot reach the server at http://127.0.0.1:"),
    (["list"], {"url": "{base}/not-here"}, 2, "does not look like the jobs API"),
    (["list"], {"url": "localhost:8000"}, 2, "is not a server URL"),
    (["list"], {"token": ""}, 2, "No API token"),
])
def test_clear_errors(live, args, env, code, message):
    url = env.get("url", "").format(free=stack.free_port(), base=live.base_url) or None
    term = Terminal(live, *args, token=env.get("token"), url=url)
    assert term.exit_code() == code, term.screen()
    assert message in " ".join(term.screen().split()), term.screen()


def test_the_management_command_is_the_same_client(live):
    env = {**os.environ, "JOBS_URL": live.base_url, "JOBS_TOKEN": live.token}
    job_id = start_job(live, steps=1)
    child = pexpect.spawn(sys.executable, ["manage.py", "jobs", "watch", job_id, "--json"], env=env,
                          cwd=str(stack.BASE_DIR))
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 0
    assert json.loads(child.before.decode().strip().splitlines()[-1])["type"] in ("job.done", "job.snapshot")


def test_the_script_is_installed_by_make_setup():
    if not SCRIPT.exists() and not os.environ.get("CI"):
        pytest.skip("run `make setup` to install the `jobs` script")
    assert SCRIPT.exists() and shutil.which(str(SCRIPT))
