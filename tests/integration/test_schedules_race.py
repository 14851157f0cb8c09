"""Per-user caps hold under parallel requests on a real Daphne (issue 22): a burst of creates
leaves exactly SCHEDULES_MAX_PER_USER schedules and never more than STUDENTS_MAX students,
on SQLite and, in `make test`'s second pass, on PostgreSQL (PG_TESTS); every refusal is a 409."""
import threading
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.live import live_stack

pytestmark = pytest.mark.integration

PARALLEL = 12


@pytest.fixture(scope="module")
def live(stack_root):
    with live_stack(stack_root, "caps-race", worker=False, SCHEDULES_MAX_PER_USER="5", STUDENTS_MAX="10",
                    STUDENT_GENERATE_RATE="1000/min") as running:
        yield running


def daphne_log(live) -> str:
    path = live.worker_log.with_name("daphne.log")
    return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else ""


def all_at_once(live, request: Callable[[httpx.Client], httpx.Response]) -> Counter:
    """PARALLEL threads, each with its own connection, released together; their status codes."""
    clients = [httpx.Client(base_url=live.base_url, headers=live.headers, timeout=60) for _ in range(PARALLEL)]
    start = threading.Barrier(PARALLEL)
    codes: list[int | str] = []

    def one(client: httpx.Client) -> None:
        start.wait()
        try:
            codes.append(request(client).status_code)
        except httpx.HTTPError as exc:  # shown in the assertion, with the server's log
            codes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for client in clients:
        client.close()
    return Counter(codes)


def test_parallel_schedule_creates_stop_exactly_at_the_cap(live):
    body = {"kind": "test_steps", "params": {"steps": 1}, "every": 3600, "enabled": False}
    codes = all_at_once(live, lambda http: http.post("/api/schedules/", json=body))
    assert codes == {201: 5, 409: PARALLEL - 5}, (codes, daphne_log(live))
    with httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30) as http:
        assert http.get("/api/schedules/").json()["count"] == 5
    assert live.query("SELECT count(*) FROM basic_schedule")[0][0] == 5


def test_parallel_student_adds_never_pass_the_owners_cap(live):
    codes = all_at_once(live, lambda http: http.post("/api/students/generate/", json={"count": 3}))
    assert codes == {201: 3, 409: PARALLEL - 3}, (codes, daphne_log(live))  # 3 x 3 = 9 of 10; 4 would be 12
    codes = all_at_once(live, lambda http: http.post("/api/students/", json={"name": "Ada", "age": 3}))
    assert codes == {201: 1, 409: PARALLEL - 1}, (codes, daphne_log(live))
    assert live.query("SELECT count(*) FROM basic_student")[0][0] == 10
