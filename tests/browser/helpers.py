"""Driving the console page in Debian's Chromium: launch it, sign in through the real form, and
read what the page shows (job rows, the socket console) the way a user would see it."""
import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, Response, expect

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# carol: tests whose jobs would change what alice's console lists (a batch groups its members
# into one row, which tests of alice's flat job list don't expect).
PASSWORDS = {"alice": "alice-browser-pw", "bob": "bob-browser-pw", "carol": "carol-browser-pw"}
# Small chunks with a pause each, so a report of a few thousand students runs for seconds. Every
# test signs in through the form, many times a minute: the sign-in throttle is tested elsewhere.
STACK_ENV = {"REPORT_CHUNK_SIZE": "25", "REPORT_CHUNK_DELAY": "0.03", "JOB_PROGRESS_MIN_INTERVAL": "0.1",
             "LOGIN_RATE": "1000/min"}
DESKTOP = {"width": 1400, "height": 1000}

# Chromium's own line when a socket can't connect (the server is down): expected only while
# a test has stopped the server.
SOCKET_CONNECT_ERROR = re.compile(r"^WebSocket connection to 'ws://[^']+' failed: ")


def chromium_missing_reason() -> str | None:
    if CHROMIUM.exists():
        return None
    return f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)


def create_users(manage: Callable[..., str], env: dict[str, str]) -> None:
    for username, password in PASSWORDS.items():
        manage(env, "create_api_user", username, "--password", password)


@dataclass
class ConsolePage:
    """One signed-in tab of the console, with every console error and page error it raised."""

    page: Page
    errors: list[str] = field(default_factory=list)

    @classmethod
    def watching(cls, page: Page) -> "ConsolePage":
        console = cls(page)
        page.on("console", lambda message: console.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: console.errors.append(f"page error: {error}"))
        return console

    @classmethod
    def sign_in(cls, context: BrowserContext, username: str = "alice") -> "ConsolePage":
        """A new tab in a new context: `/` sends it to the login form, which brings it back."""
        console = cls.watching(context.new_page())
        page = console.page
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORDS[username])
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/$"))
        console.expect_connected()
        return console

    @classmethod
    def another_tab(cls, context: BrowserContext) -> "ConsolePage":
        """One more tab of a context that has signed in already."""
        console = cls.watching(context.new_page())
        console.page.goto("/")
        console.expect_connected()
        return console

    # --- connection ---------------------------------------------------------------------

    @property
    def connection(self) -> Locator:
        return self.page.locator("#connection")

    def expect_connected(self, timeout: float = 10_000) -> None:
        expect(self.connection).to_have_attribute("data-state", "open", timeout=timeout)
        expect(self.connection).to_contain_text("Live")

    # --- students -----------------------------------------------------------------------

    def student_total(self) -> int:
        total = self.page.locator("#student-total")
        expect(total).to_have_attribute("data-count", re.compile(r"^\d+$"))
        return int(total.get_attribute("data-count"))

    def generate_students(self, count: int) -> int:
        """Click "Generate" for `count` students; returns the new total the page shows."""
        before = self.student_total()
        self.page.get_by_label("Random students to generate").fill(str(count))
        self.page.get_by_role("button", name="Generate").click()
        expect(self.page.locator("#generate-result")).to_have_text(
            re.compile(rf"^Created {count:,} students; {before + count:,} in total\.$"))
        expect(self.page.locator("#student-total")).to_have_attribute("data-count", str(before + count))
        return before + count

    def ensure_students(self, at_least: int) -> int:
        total = self.student_total()
        return self.generate_students(at_least - total) if total < at_least else total

    # --- jobs ---------------------------------------------------------------------------

    def wait_for_job_list(self) -> None:
        """Until the job list has loaded from the API (it always sets this line, shown or not): rows
        counted before then miss the jobs it is about to show."""
        self.page.wait_for_function("() => document.querySelector('#jobs-more').textContent !== ''")

    def start_form(self, label: str) -> Locator:
        """A kind's start form, by its heading (the kind's label)."""
        return self.page.get_by_role("form", name=label, exact=True)

    def start_job(self, label: str) -> str:
        """Click a kind's Start button; returns the new job's id once its row is on the page."""
        with self.page.expect_response(is_job_start) as answer:
            self.start_form(label).get_by_role("button", name=f"Start {label.lower()}").click()
        assert answer.value.status == 202, answer.value.text()
        job_id = answer.value.json()["id"]
        expect(self.job(job_id)).to_be_visible()
        return job_id

    def start_report(self) -> str:
        """Click "Start students by age report"; returns the new job's id once its row shows."""
        return self.start_job("Students by age report")

    def job(self, job_id: str) -> Locator:
        return self.page.locator(f'.job[data-job-id="{job_id}"]')

    def progress(self, job_id: str) -> Locator:
        return self.job(job_id).get_by_role("progressbar")

    def progress_value(self, job_id: str) -> int:
        return int(self.progress(job_id).get_attribute("aria-valuenow"))

    def wait_for_progress(self, job_id: str, at_least: int, timeout: float = 20_000) -> None:
        self.page.wait_for_function(
            """([id, least]) => {
                const bar = document.querySelector(`.job[data-job-id="${id}"] [role=progressbar]`);
                return bar && Number(bar.getAttribute("aria-valuenow")) >= least;
            }""",
            arg=[job_id, at_least], timeout=timeout)

    def expect_done(self, job_id: str, timeout: float = 30_000, download: str = "Download CSV") -> None:
        row = self.job(job_id)
        expect(row).to_have_attribute("data-status", "done", timeout=timeout)
        expect(row.locator(".job-status")).to_have_text("Done")
        expect(self.progress(job_id)).to_have_attribute("aria-valuenow", "100")
        expect(row.locator(".job-percent")).to_have_text("100%")
        expect(row.get_by_role("link", name=re.compile(download))).to_be_visible()
        expect(row.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()

    # --- socket console -----------------------------------------------------------------

    def frames(self, socket: str | None = None, direction: str | None = None) -> list[dict]:
        """The console's rows, oldest first: {dir, url, sockets, text, data}."""
        rows = self.page.evaluate("""() => [...document.querySelectorAll("#console-log .frame")].map((row) => ({
            dir: row.dataset.dir,
            url: row.dataset.url,
            sockets: row.dataset.sockets.split(" "),
            text: row.querySelector("code").textContent,
        }))""")
        chosen = []
        for row in rows:
            if socket and socket not in row["sockets"]:
                continue
            if direction and row["dir"] != direction:
                continue
            row["data"] = json.loads(row["text"]) if row["dir"] != "info" else None
            chosen.append(row)
        return chosen

    def job_stream(self, job_id: str) -> tuple[dict, list[dict]]:
        """What the console shows came in on the job's socket: its one snapshot, and its events
        by seq. (A console row sits where its event first arrived, on the job socket or on the
        feed, so rows are not in seq order.) Fails on a second snapshot."""
        frames = [f["data"] for f in self.frames(socket=f"/ws/jobs/{job_id}/", direction="in")]
        snapshots = [f for f in frames if f["type"] == "job.snapshot"]
        assert len(snapshots) == 1, snapshots
        events = sorted((f for f in frames if f["type"] != "job.snapshot"), key=lambda f: f["seq"])
        assert all(e["job"] == job_id for e in events)
        return snapshots[0], events

    def unexpected_errors(self, *allowed: re.Pattern) -> list[str]:
        return [error for error in self.errors if not any(pattern.search(error) for pattern in allowed)]


@dataclass
class PageSite:
    """A tiny web site on 127.0.0.1 (in a thread of the test process) for the page-fetch kind:
    `add()` a page, fetch its `url()`, and see in `hits` every path the worker asked for."""

    port: int
    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def add(self, path: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> str:
        self.pages[path] = (content_type, body)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @classmethod
    @contextlib.contextmanager
    def serving(cls, port: int) -> Iterator["PageSite"]:
        site = cls(port)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's name)
                path = urlsplit(self.path).path
                site.hits.append(path)
                content_type, body = site.pages.get(path, ("text/plain", b"not found"))
                self.send_response(200 if path in site.pages else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        thread = threading.Thread(target=server.serve_forever, name="page-site", daemon=True)
        thread.start()
        try:
            yield site
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def is_job_start(response: Response) -> bool:
    """The answer to a job start: POST /api/jobs/."""
    return response.request.method == "POST" and response.url.endswith("/api/jobs/")


def job_progress_in_database(database: Path, job_id: str) -> tuple[str, int]:
    """(status, progress) straight from the stack's SQLite file: works while the web server is down."""
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT status, progress FROM basic_job WHERE id = ?", (job_id.replace("-", ""),)).fetchone()
    return row if row else ("missing", 0)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
