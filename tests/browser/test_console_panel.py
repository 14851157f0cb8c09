"""The socket console: frames in and out with timestamps, a filter, and a box that sends any
JSON frame on any socket path."""
import json
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def send(page, path: str, frame: str) -> None:
    console = page.get_by_role("region", name="Socket console")
    console.get_by_label("Socket path").fill(path)
    console.get_by_label("JSON frame").fill(frame)
    console.get_by_role("button", name="Send").click()


def visible_frames(page):
    return page.locator("#console-log .frame:visible")


def test_send_frames_on_open_and_new_sockets_and_filter_them(alice_tab):
    page = alice_tab.page
    log = page.locator("#console-log")
    # The page's own sockets are in the console from the start, with timestamps.
    opened = log.locator('.frame[data-dir="info"][data-sockets="/ws/events/"]', has_text="open")
    expect(opened).to_have_count(1)
    expect(opened.locator(".frame-time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))

    # An open socket is reused: ping the event feed, see the ping go out and the pong come in.
    send(page, "/ws/events/", '{"type": "ping"}')
    expect(log.locator('.frame[data-dir="out"][data-sockets="/ws/events/"]')).to_have_count(1)
    pong = log.locator('.frame[data-dir="in"][data-sockets="/ws/events/"]', has_text='"pong"')
    expect(pong).to_have_count(1)
    expect(pong.locator(".frame-type")).to_have_text("pong")

    # A path with no socket yet opens one: the seed's chat room echoes bare {"message": ...}.
    send(page, "/chat/", '{"message": "hi from the console"}')
    echo = log.locator('.frame[data-dir="in"][data-sockets="/chat/"]')
    expect(echo).to_have_count(1)
    assert json.loads(echo.locator("code").text_content()) == {"message": "hi from the console"}
    expect(page.locator('#socket-list .socket[data-path="/chat/"]')).to_have_attribute("data-state", "open")

    # A bad frame gets the server's error frame, shown as an error.
    send(page, "/ws/events/", '{"type": "dance"}')
    expect(log.locator(".frame-error", has_text="unknown_type")).to_have_count(1)

    # Not JSON: said inline, nothing sent.
    outgoing = log.locator('.frame[data-dir="out"]')
    sent_so_far = outgoing.count()
    send(page, "/ws/events/", "{type: ping}")
    expect(page.locator("#console-send-error")).to_contain_text("isn't valid JSON")
    assert outgoing.count() == sent_so_far

    # Filters: by text, by direction, by socket.
    page.get_by_label("Filter").fill("pong")
    expect(visible_frames(page)).to_have_count(1)
    expect(page.locator("#console-count")).to_contain_text("1 shown")
    page.get_by_label("Filter").fill("")
    page.get_by_label("Direction").select_option("out")
    expect(visible_frames(page)).to_have_count(3)
    page.get_by_label("Direction").select_option("")
    page.get_by_label("Socket", exact=True).select_option("/chat/")
    shown = visible_frames(page).evaluate_all("rows => rows.map(row => row.dataset.sockets)")
    assert len(shown) >= 4 and set(shown) == {"/chat/"}  # connecting, open, out, in
    page.get_by_role("button", name="Clear").click()
    expect(log.locator(".frame")).to_have_count(0)

    # The console's own socket can be closed from the socket list.
    page.get_by_role("button", name="Close /chat/").click()
    expect(page.locator('#socket-list .socket[data-path="/chat/"]')).to_have_count(0)
    assert alice_tab.errors == []


def test_a_job_stream_is_one_row_per_event_with_both_socket_paths(alice_tab):
    """Each job event arrives on /ws/jobs/{id}/ and on /ws/events/: one console row lists both."""
    alice_tab.ensure_students(500)
    job_id = alice_tab.start_report()
    alice_tab.expect_done(job_id)
    stream = f"/ws/jobs/{job_id}/"
    done = alice_tab.page.locator('#console-log .frame[data-dir="in"]', has_text='"job.done"').filter(
        has_text=job_id)
    expect(done).to_have_count(1)
    expect(done).to_have_attribute("data-sockets", re.compile(rf"^{stream} /ws/events/$|^/ws/events/ {stream}$"))
    snapshot, events = alice_tab.job_stream(job_id)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(events))), seqs
    assert events[-1]["type"] == "job.done"
    assert alice_tab.errors == []
