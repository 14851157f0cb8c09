"""The cached page fetch against local HTTP servers the test starts: refused by default (they are
loopback), allowed through PAGE_FETCH_ALLOWED_HOSTS; cache hit, refresh, TTL expiry; redirects into
our own network, a page over the size cap and a server that never answers all end in job.failed.

The runs are in-process here (the lifecycle on the real Redis), except the first test, which goes
through the real stack: REST, a gevent worker, a socket, the download."""
import http.server
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from basic.jobs.runner import run_job
from basic.models import Job
from basic.ops import stack
from tests.integration.test_kinds import finished
from tests.live import live_stack

pytestmark = pytest.mark.django_db

PAGE = b"<html><head><title>A &amp; B  test page</title></head><body>hello</body></html>"


class Pages(http.server.BaseHTTPRequestHandler):
    hits = 0
    other_port = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).hits += 1
        port = self.server.server_address[1]
        routes = {
            "/page": (200, PAGE, {}),
            "/counter": (200, f"<title>visit {type(self).hits}</title>".encode(), {}),
            "/metadata": (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
            "/other-port": (302, b"", {"Location": f"http://127.0.0.1:{type(self).other_port}/page"}),
            "/ipv6": (302, b"", {"Location": f"http://[::1]:{port}/page"}),
            "/big": (200, b"x" * 300_000, {}),
            "/missing": (404, b"<title>Not here</title>", {}),
        }
        status, body, headers = routes.get(urlsplit(self.path).path, (404, b"", {}))
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pages():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    Pages.other_port = stack.free_port()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def silent():
    """Accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:  # closed at teardown
                return
    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


@pytest.fixture
def allow(settings, pages, silent):
    settings.PAGE_FETCH_ALLOWED_HOSTS = [pages, silent]
    settings.PAGE_FETCH_TIMEOUT_SECONDS = 2
    settings.PAGE_FETCH_MAX_BYTES = 100_000
    settings.PAGE_CACHE_TTL_SECONDS = 30


def fetch(api, url: str, refresh: bool = False) -> Job:
    response = api.post("/api/pages/", {"url": url, "refresh": refresh}, format="json")
    assert response.status_code == 202, response.json()
    run_job(response.json()["id"])
    return Job.objects.get(id=response.json()["id"])


@pytest.mark.integration
def test_through_the_real_stack_a_page_is_fetched_watched_and_downloaded(stack_root, pages):
    with live_stack(stack_root, "page-fetch", PAGE_FETCH_ALLOWED_HOSTS=pages) as live:
        with httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30) as http:
            job, events = finished(live, http.post("/api/pages/", json={"url": f"http://{pages}/page"}))
            assert events[-1]["type"] == "job.done", events[-1]
            result = job["result"]
            assert (result["status_code"], result["title"], result["cached"]) == (200, "A & B test page", False)
            assert result["bytes"] == len(PAGE) and result["final_url"] == f"http://{pages}/page"
            download = http.get(f"/api/jobs/{job['id']}/download/")
            assert download.content == PAGE
            assert download.headers["content-type"] == "text/html; charset=utf-8"
            assert download.headers["content-security-policy"] == "sandbox"  # someone else's HTML
            again, events = finished(live, http.post("/api/pages/", json={"url": f"http://{pages}/page"}))
            assert again["result"]["cached"] is True and events[-1]["type"] == "job.done"


def test_loopback_is_refused_by_default(api, queued, pages):
    response = api.post("/api/pages/", {"url": f"http://{pages}/page"}, format="json")
    assert response.status_code == 400 and "url" in response.json()
    assert not queued


def test_a_name_that_resolves_to_loopback_fails_the_job_with_the_reason(api, queued, pages):
    job = fetch(api, f"http://localhost:{pages.split(':')[1]}/page")
    assert job.status == "failed" and job.error == (
        "localhost does not lead to a public address (the name is unknown, or an address it has is not public).")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "https://user:pw@example.com/",
                                 "http://169.254.169.254/latest/", "http://[::1]/", "ftp://example.com/"])
def test_urls_refused_from_their_text_alone_are_a_400(api, queued, url):
    response = api.post("/api/pages/", {"url": url}, format="json")
    assert response.status_code == 400 and response.json()["url"]
    assert not queued


def test_a_cache_hit_refresh_and_ttl_expiry(api, queued, allow, pages, settings):
    settings.PAGE_CACHE_TTL_SECONDS = 1
    url = f"http://{pages}/counter?t={time.time()}"
    first = fetch(api, url)
    assert first.result["cached"] is False
    hit = fetch(api, url)
    assert hit.result["cached"] is True and hit.result["title"] == first.result["title"]
    refreshed = fetch(api, url, refresh=True)
    assert refreshed.result["cached"] is False and refreshed.result["title"] != first.result["title"]
    time.sleep(1.5)
    expired = fetch(api, url)
    assert expired.result["cached"] is False and expired.result["title"] != refreshed.result["title"]


def test_a_cache_redis_cannot_answer_is_passed_by_and_the_page_still_fetched(api, queued, allow, pages, monkeypatch):
    """The cache is a shortcut: a Redis failing over while a fetch reads or writes it must not fail
    the job (the chaos soak saw "unexpected error" from the cache write)."""
    import redis

    from basic.kinds import page_fetch

    class FailingOver:
        """The cache's Redis client, mid-failover: every call fails as redis-py's do then."""

        def hmget(self, *args):
            raise redis.ConnectionError("Connection closed by server.")

        def pipeline(self, transaction=True):
            pipe = redis.Redis(host="127.0.0.1", port=1).pipeline(transaction=transaction)  # never connected
            pipe.execute = self.hmget
            return pipe

    monkeypatch.setattr(page_fetch, "sync_redis", FailingOver)
    fetched = fetch(api, f"http://{pages}/counter?t={time.time()}")
    assert fetched.status == "done" and fetched.result["cached"] is False


@pytest.mark.parametrize("path", ["/metadata", "/other-port", "/ipv6"])
def test_redirects_into_our_own_network_end_in_job_failed(api, queued, allow, pages, path):
    job = fetch(api, f"http://{pages}{path}")
    assert job.status == "failed", job.result
    assert "not allowed" in job.error or "not a public address" in job.error


def test_a_page_over_the_size_cap_fails(api, queued, allow, pages):
    job = fetch(api, f"http://{pages}/big")
    assert job.status == "failed" and "larger than 100000 bytes" in job.error


def test_a_server_that_never_answers_fails_within_the_timeout(api, queued, allow, silent):
    """Each attempt ends within the timeout; a timeout may pass, so the kind's retries (2) try
    again before the job fails with the reason."""
    started = time.monotonic()
    job = fetch(api, f"http://{silent}/")
    assert time.monotonic() - started < 2 + 2
    assert (job.status, job.attempt) == ("queued", 2) and "took too long" in job.message
    assert queued[-1]["countdown"] > 0  # sent again after its backoff
    for attempt in (2, 3):
        Job.objects.filter(id=job.id).update(not_before=None)  # its countdown has passed
        started = time.monotonic()
        run_job(job.id)
        assert time.monotonic() - started < 2 + 2
        assert Job.objects.get(id=job.id).attempt == min(attempt + 1, 3)
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("failed", 3) and "took too long" in job.error


def test_a_non_2xx_page_is_still_a_result(api, queued, allow, pages):
    job = fetch(api, f"http://{pages}/missing")
    assert job.status == "done" and job.result["status_code"] == 404 and job.result["title"] == "Not here"


def test_each_user_has_their_own_cache_entry(api, client_for, bob, queued, allow, pages):
    """A shared entry told bob that alice had fetched the URL (`cached`) and when (`fetched_at`)."""
    url = f"http://{pages}/counter?who={time.time()}"
    assert fetch(api, url).result["cached"] is False
    hits = Pages.hits
    bobs = fetch(client_for(bob), url)
    assert bobs.status == "done" and bobs.result["cached"] is False
    assert Pages.hits == hits + 1  # bob's job fetched the page itself
    assert fetch(api, url).result["cached"] is True  # alice's own entry still serves her
    assert fetch(client_for(bob), url).result["cached"] is True  # and bob's him


def test_deployments_sharing_a_redis_never_serve_each_others_pages(api, queued, pages, settings):
    """The key carries REDIS_KEY_PREFIX: another deployment's entry was fetched under its own
    PAGE_FETCH_ALLOWED_HOSTS, so serving it here would skip ours."""
    settings.PAGE_FETCH_TIMEOUT_SECONDS = 2
    url = f"http://localhost:{pages.split(':')[1]}/counter?deployment={time.time()}"
    settings.REDIS_KEY_PREFIX = "other-deployment"
    settings.PAGE_FETCH_ALLOWED_HOSTS = [f"localhost:{pages.split(':')[1]}"]  # it may fetch the page
    assert fetch(api, url).status == "done"
    settings.REDIS_KEY_PREFIX = "this-deployment"
    settings.PAGE_FETCH_ALLOWED_HOSTS = []  # this one may not
    job = fetch(api, url)
    assert job.status == "failed" and "not public" in job.error and job.result is None
