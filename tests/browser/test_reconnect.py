"""A dropped connection mid-job: the web server really stops and a new one starts on the same
port. The page says it is disconnected, reconnects with backoff, resumes the job's stream from
the last seq it saw, and shows the job finish, with every event exactly once."""
import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from basic.ops import stack
from tests.browser.helpers import SOCKET_CONNECT_ERROR, job_progress_in_database, wait_until

pytestmark = pytest.mark.browser


def test_job_stream_resumes_after_the_server_restarts(alice_tab, live):
    page = alice_tab.page
    alice_tab.ensure_students(4000)
    job_id = alice_tab.start_report()
    alice_tab.wait_for_progress(job_id, 5)
    seen_before_drop = int(alice_tab.job(job_id).get_attribute("data-seq"))

    stack.stop(live.processes["daphne"])
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(page.locator("#connection")).to_contain_text("Connection lost")
    # The job goes on without the web server; the page can't hear it meanwhile.
    shown = alice_tab.progress_value(job_id)
    wait_until(lambda: job_progress_in_database(live.database, job_id)[1] >= shown + 10, timeout=20,
               what="the job to move on while the web server is down")
    assert alice_tab.progress_value(job_id) == shown
    assert job_progress_in_database(live.database, job_id)[0] == "running", "job too short to resume mid-way"

    port = urlsplit(live.base_url).port
    live.processes["daphne"] = stack.start_daphne(port, live.env, log=live.worker_log.with_name("daphne.log"))
    alice_tab.expect_connected(timeout=20_000)
    alice_tab.expect_done(job_id, timeout=30_000)

    # The job socket came back asking only for what it had missed...
    stream = f"/ws/jobs/{job_id}/"
    reopened = page.locator(f'#console-log .frame[data-dir="info"][data-url^="{stream}?after="]', has_text="open")
    expect(reopened.first).to_be_visible()
    after = int(re.search(r"after=(\d+)", reopened.first.get_attribute("data-url")).group(1))
    assert after >= seen_before_drop
    # ...and the console shows every event of the job once: no gap, no repeat, one snapshot.
    snapshot, events = alice_tab.job_stream(job_id)
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(snapshot["seq"] + 1, seqs[-1] + 1)), seqs
    assert seqs[-1] > after + 1, "events were missed while down and then replayed"
    assert [event["type"] for event in events].count("job.done") == 1
    assert events[-1]["type"] == "job.done" and events[-1]["progress"] == 100
    expect(page.locator("#console-log .frame-repeat")).to_have_count(0)
    # The job list shows it once.
    expect(page.locator(f'.job[data-job-id="{job_id}"]')).to_have_count(1)

    # Chromium logs each refused socket connection while the server was down; nothing else.
    assert alice_tab.unexpected_errors(SOCKET_CONNECT_ERROR) == []
