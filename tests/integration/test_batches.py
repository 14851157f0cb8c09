"""Batches on the real stack (Daphne, the gevent worker, the prefork CPU worker, Redis): several
images in one thumbnails form and a mixed `POST /api/batches/` each end once on `/ws/batches/{id}/`
with gapless seqs and a percent that never goes back; a socket that reconnects with `?after=` gets
neither a gap nor a duplicate; a cancel mid-way ends the whole batch; the zip holds every output.
One stack for the module, to keep it fast."""
import asyncio
import io
import json
import time
import zipfile

import httpx
import pytest
import websockets
from PIL import Image

from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

BATCH_END = {"batch.done", "batch.failed", "batch.cancelled"}


@pytest.fixture(scope="module")
def live(stack_root):
    with live_stack(stack_root, "batches", cpu_worker=True) as stack:
        yield stack


def client(live: LiveStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30)


def image(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


async def receive_until_end(socket, received: list[dict], timeout: float = 60, stop_after: int | None = None) -> None:
    async with asyncio.timeout(timeout):
        while not received or received[-1]["type"] not in BATCH_END:
            received.append(json.loads(await socket.recv()))
            if stop_after is not None and len(received) >= stop_after:
                return


async def anything_within_a_second(socket) -> list[dict]:
    """What the socket sends in the next second (after an end: must be nothing)."""
    try:
        async with asyncio.timeout(1):
            return [json.loads(await socket.recv())]
    except TimeoutError:
        return []


def watch_with_a_reconnect(live: LiveStack, batch_id: str, first_part: int = 2) -> tuple[list[dict], list[dict]]:
    """The batch's events from the start: `first_part` of them on one socket, the rest on a second
    one opened with `?after=` the last seq seen; then whatever follows the end within 1 s."""
    async def run() -> tuple[list[dict], list[dict]]:
        received: list[dict] = []
        url = f"{live.ws_url}/ws/batches/{batch_id}/?token={live.token}"
        async with websockets.connect(url + "&after=0", open_timeout=10) as socket:
            await receive_until_end(socket, received, stop_after=first_part)
        async with websockets.connect(url + f"&after={received[-1]['seq']}", open_timeout=10) as socket:
            await receive_until_end(socket, received)
            return received, await anything_within_a_second(socket)
    return asyncio.run(run())


def assert_one_clean_feed(events: list[dict], after_end: list[dict], end: str) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), progress
    assert [e["type"] for e in events].count(end) == 1 and events[-1]["type"] == end
    assert not after_end and not any(e["type"] in BATCH_END - {end} for e in events)


def test_several_images_and_a_mixed_batch_end_once_with_a_clean_feed_and_one_zip(live):
    with client(live) as http:
        assert http.post("/api/students/generate/", json={"count": 50}).status_code == 201
        images = [("image", (f"photo-{n}.png", image((300 + 40 * n, 200), (40 * n, 90, 10)), "image/png"))
                  for n in range(4)]
        form = http.post("/api/thumbnails/", data={"sizes": "64x64,32x32"}, files=images)
        assert form.status_code == 202, form.text
        mixed = http.post("/api/batches/", json={"jobs": [
            {"kind": "test_steps", "params": {"steps": 6, "delay": 0.1}},
            {"kind": "test_steps", "params": {"steps": 3, "delay": 0.1}, "priority": 6},
            {"kind": "students_by_age"},
        ]})
        assert mixed.status_code == 202, mixed.text
    thumbnails = form.json()
    assert thumbnails["total"] == 4 and {m["kind"] for m in thumbnails["members"]} == {"thumbnails"}

    for batch, members in ((thumbnails, 4), (mixed.json(), 3)):
        events, after_end = watch_with_a_reconnect(live, batch["id"])
        assert_one_clean_feed(events, after_end, "batch.done")
        assert (events[-1]["done"], events[-1]["total"], events[-1]["progress"]) == (members, members, 100)
        with client(live) as http:
            row = http.get(f"/api/batches/{batch['id']}/").json()
            download = http.get(f"/api/batches/{batch['id']}/download/")
        assert row["status"] == "done" and row["finished"] and {m["status"] for m in row["members"]} == {"done"}
        assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
        names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
        assert len(names) == members and [name[:4] for name in names] == [f"{n:03d}-" for n in range(1, members + 1)]
    assert names[0].endswith("steps.txt") and names[1].endswith("steps.txt") and names[2].endswith(".csv")


def test_a_cancel_mid_way_ends_the_whole_batch_once(live):
    with client(live) as http:
        started = http.post("/api/batches/", json={"jobs": [
            {"kind": "test_steps", "params": {"steps": 60, "delay": 0.1}} for _ in range(3)]})
        assert started.status_code == 202, started.text
        batch_id = started.json()["id"]

    async def run() -> tuple[list[dict], list[dict]]:
        received: list[dict] = []
        url = f"{live.ws_url}/ws/batches/{batch_id}/?after=0&token={live.token}"
        async with websockets.connect(url, open_timeout=10) as socket:
            async with asyncio.timeout(30):  # until the members are running and have moved
                while not received or received[-1]["progress"] < 3:
                    received.append(json.loads(await socket.recv()))
            async with httpx.AsyncClient(base_url=live.base_url, headers=live.headers) as http:
                cancelled = await http.post(f"/api/batches/{batch_id}/cancel/")
            assert cancelled.status_code == 202, cancelled.text
            await receive_until_end(socket, received, timeout=30)
            return received, await anything_within_a_second(socket)

    began = time.monotonic()
    events, after_end = asyncio.run(run())
    assert_one_clean_feed(events, after_end, "batch.cancelled")
    assert events[-1]["cancelled"] == 3 and events[-1]["progress"] == 100
    assert time.monotonic() - began < 20  # not the 6 s x 3 the members would have run
    with client(live) as http:
        row = http.get(f"/api/batches/{batch_id}/").json()
        download = http.get(f"/api/batches/{batch_id}/download/")
        again = http.post(f"/api/batches/{batch_id}/cancel/")
    assert row["status"] == "cancelled" and {m["status"] for m in row["members"]} == {"cancelled"}
    assert download.status_code == 409 and download.json()["detail"]
    assert again.status_code == 409


def test_the_jobs_client_starts_a_batch_and_shows_one_bar_over_its_members(live, tmp_path):
    from tests.integration.test_cli import Terminal

    terminal = Terminal(live, "batch", "test_steps", "-p", "steps=8", "-p", "delay=0.1", "--count", "3", "--follow")
    assert terminal.exit_code(60) == 0, terminal.text()
    screen = terminal.screen()
    assert "batch of 3" in screen and screen.count("test_steps") == 3, screen  # the bar, then a bar per member
    assert "Done: 3 of 3 done." in terminal.text()
    batch_id = terminal.text().split("jobs download ")[-1].split()[0]
    saved = tmp_path / "all.zip"
    download = Terminal(live, "download", batch_id, "-o", str(saved))
    assert download.exit_code(30) == 0, download.text()
    assert len(zipfile.ZipFile(saved).namelist()) == 3
