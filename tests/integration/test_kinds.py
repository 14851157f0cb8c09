"""Every kind end to end on the real stack (Daphne, a gevent worker, Redis): started over REST,
watched over a socket (gapless seq, `job.done` with its result), downloaded; and the lifecycle
once more with the tiny test kind: cancel mid-run, a crash, a SIGKILLed worker."""
import asyncio
import csv
import io
import json
import signal
import time
import zipfile

import httpx
import pytest
import websockets
from PIL import Image

from tests.integration.test_resilience import assert_gapless, follow, wait_for
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

TERMINAL = {"job.done", "job.failed", "job.cancelled"}


def client(live: LiveStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30)


def watch(live: LiveStack, job_id: str, timeout: float = 60) -> list[dict]:
    """Every event of the job from seq 1 until its terminal event."""
    async def run() -> list[dict]:
        received: list[dict] = []
        url = f"{live.ws_url}/ws/jobs/{job_id}/?after=0&token={live.token}"
        async with websockets.connect(url, open_timeout=10) as socket:
            async with asyncio.timeout(timeout):
                while not received or received[-1]["type"] not in TERMINAL:
                    received.append(json.loads(await socket.recv()))
        return received
    return asyncio.run(run())


def finished(live: LiveStack, response: httpx.Response) -> tuple[dict, list[dict]]:
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    events = watch(live, job_id)
    assert_gapless(events)
    with client(live) as http:
        return http.get(f"/api/jobs/{job_id}/").json(), events


@pytest.fixture(scope="module")
def live(stack_root):
    with live_stack(stack_root, "kinds", cpu_worker=True) as stack:
        yield stack


def test_the_report_through_the_generic_endpoint(live):
    with client(live) as http:
        assert http.post("/api/students/generate/", json={"count": 250}).status_code == 201
        job, events = finished(live, http.post("/api/jobs/", json={"kind": "students_by_age", "params": {}}))
        assert events[-1]["type"] == "job.done" and events[-1]["result"] == {"rows": 250} == job["result"]
        download = http.get(f"/api/jobs/{job['id']}/download/")
    assert download.headers["content-type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["id", "name", "age"] and len(rows) == 251


def portrait_jpeg_with_exif_rotation() -> bytes:
    """Stored 400x200 (landscape) with EXIF Orientation 6: shown as 200x400 (portrait)."""
    image = Image.new("RGB", (400, 200), (200, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_thumbnails_one_step_per_size_and_a_zip_of_original_and_thumbnails(live):
    with client(live) as http:
        response = http.post("/api/thumbnails/", data={"sizes": "128x128,64x64"},
                             files={"image": ("holiday photo.jpg", portrait_jpeg_with_exif_rotation(), "image/jpeg")})
        job, events = finished(live, response)
        assert events[-1]["type"] == "job.done", events[-1]
        steps = [e["message"] for e in events if e["type"] == "job.progress"]
        assert len(steps) == 2 and "128x128" in steps[0] and "64x64" in steps[1]
        thumbnails = job["result"]["thumbnails"]
        assert [(t["box"], t["width"], t["height"]) for t in thumbnails] == [("128x128", 64, 128), ("64x64", 32, 64)]
        download = http.get(f"/api/jobs/{job['id']}/download/")
        assert download.headers["content-type"] == "application/zip"
        preview = http.get(f"/api/jobs/{job['id']}/files/{thumbnails[0]['name']}/")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = archive.namelist()
        assert names == [job["result"]["original"]] + [t["name"] for t in thumbnails]
        for thumbnail in thumbnails:
            with Image.open(archive.open(thumbnail["name"])) as image:
                assert image.size == (thumbnail["width"], thumbnail["height"])


def test_the_generic_endpoint_takes_a_multipart_upload_too(live):
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 300), (0, 0, 255, 128)).save(buffer, "PNG")
    with client(live) as http:
        response = http.post("/api/jobs/", data={"kind": "thumbnails", "sizes": "32x32"},
                             files={"image": ("x.gif", buffer.getvalue(), "image/gif")})  # the name lies
        job, events = finished(live, response)
    assert job["status"] == "done" and job["params"]["format"] == "PNG"
    assert job["result"]["thumbnails"][0]["name"].endswith(".png")


def test_the_lifecycle_cancel_mid_run_leaves_no_output(live):
    with client(live) as http:
        response = http.post("/api/jobs/", json={"kind": "test_steps", "params": {"steps": 40, "delay": 0.1}})
        job_id = response.json()["id"]
        wait_for(lambda: http.get(f"/api/jobs/{job_id}/").json()["progress"] >= 10, 30, "progress >= 10%")
        assert http.post(f"/api/jobs/{job_id}/cancel/").status_code == 202
        events, _ = asyncio.run(follow(live, job_id, timeout=30))
        assert events[-1]["type"] == "job.cancelled"
        assert http.get(f"/api/jobs/{job_id}/download/").status_code == 409
    job_dir = live.media_root / "jobs" / job_id
    assert not job_dir.exists() or list(job_dir.iterdir()) == []


def test_the_lifecycle_a_crashing_body_ends_in_job_failed(live):
    with client(live) as http:
        job, events = finished(live, http.post("/api/jobs/", json={"kind": "test_steps",
                                                                  "params": {"steps": 3, "crash_at": 2}}))
    assert events[-1]["type"] == "job.failed" and job["status"] == "failed"
    assert "secret internal detail" not in json.dumps(events) + job["error"]
    assert "secret internal detail" in live.log_tail(400)


def test_the_lifecycle_a_sigkilled_worker_mid_run_finishes_exactly_once(stack_root):
    with live_stack(stack_root, "kinds-sigkill", JOB_LEASE_SECONDS="2") as live:
        with client(live) as http:
            response = http.post("/api/jobs/", json={"kind": "test_steps", "params": {"steps": 30, "delay": 0.1}})
            job_id = response.json()["id"]
            wait_for(lambda: http.get(f"/api/jobs/{job_id}/").json()["progress"] >= 20, 30, "progress >= 20%")
        live.processes["worker"].send_signal(signal.SIGKILL)
        live.processes["worker"].wait()
        output = live.media_root / "jobs" / job_id / "steps.txt"
        assert not output.exists()
        live.start_worker("second")
        events, _ = asyncio.run(follow(live, job_id, timeout=60))
        assert events[-1]["type"] == "job.done", events[-1]
        assert_gapless(events)
        assert [e["type"] for e in events].count("job.done") == 1
        assert output.read_text() == "".join(f"step {n}\n" for n in range(1, 31))  # one whole run
        assert sorted(p.name for p in output.parent.iterdir()) == ["steps.txt"]
        with client(live) as http:  # the worker's crash is not the job's failure: no retry was used
            assert http.get(f"/api/jobs/{job_id}/").json()["attempt"] == 1
        assert "job.retrying" not in [e["type"] for e in events]


def test_progress_reaches_the_users_feed_for_every_kind(live):
    """`/ws/events/` carries each kind's events with its result, like the console shows them."""
    async def scenario() -> list[dict]:
        url = f"{live.ws_url}/ws/events/?token={live.token}"
        async with websockets.connect(url) as feed:
            async with httpx.AsyncClient(base_url=live.base_url, headers=live.headers) as http:
                started = await http.post("/api/jobs/", json={"kind": "test_steps", "params": {"steps": 2}})
            job_id = started.json()["id"]
            seen = []
            async with asyncio.timeout(30):
                while not seen or seen[-1]["type"] not in TERMINAL:
                    frame = json.loads(await feed.recv())
                    if frame.get("job") == job_id:
                        seen.append(frame)
            return seen
    seen = asyncio.run(scenario())
    assert seen[-1]["type"] == "job.done" and seen[-1]["result"] == {"steps": 2}
    time.sleep(0)
