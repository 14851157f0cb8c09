"""Job event push throughput: our gevent-safe pusher vs the naive `async_to_sync(group_send)`
helper vs a raw Redis PUBLISH, all in this one process and run, so only ratios matter.

Then the same under gevent: N greenlets pushing at once, as on the worker's gevent pool, where
the naive helper breaks (docs/design.md trap 1). Run: `make bench` or `python -m bench.bench_push`.
"""
import json
import subprocess
import sys
import uuid

from bench.common import best_rate, report, setup_django, stop_redis, write_result

EVENTS = 2000


def sequential() -> dict[str, float]:
    from basic.core import redis_clients
    from basic.jobs import event_store
    from basic.jobs import publish as helpers

    def pusher_run(pusher):
        def run() -> int:
            job_id = uuid.uuid4()
            for i in range(EVENTS):
                event = event_store.append_event(job_id, {"type": "job.progress", "progress": i})
                pusher.publish([f"job.{job_id}"], event)
            return EVENTS
        return run

    def raw_publish() -> int:
        client = redis_clients.sync_redis()
        payload = json.dumps({"type": "job.progress", "progress": 1}).encode()
        for _ in range(EVENTS):
            client.publish("bench.raw", payload)
        return EVENTS

    def one_trip() -> int:
        pusher = helpers.RedisEventPusher()
        assert pusher.one_trip
        job_id = uuid.uuid4()
        for i in range(EVENTS):
            event_store.append_and_publish(job_id, {"type": "job.progress", "progress": i}, "job.event",
                                           pusher.channels([f"job.{job_id}"]))
        return EVENTS

    return {
        "naive async_to_sync(group_send) + stream": best_rate(pusher_run(helpers.AsyncToSyncEventPusher())),
        "ours, two trips: stream, then serialize()+PUBLISH": best_rate(pusher_run(helpers.RedisEventPusher())),
        "ours, one trip: stream + PUBLISH in one script": best_rate(one_trip),
        "raw redis PUBLISH (floor)": best_rate(raw_publish),
    }


GEVENT_CHILD = r"""
from gevent import monkey; monkey.patch_all()
import os, sys, time, uuid, json
from bench.common import setup_django
setup_django()
import gevent
from basic.jobs import publish as helpers
from basic.models import Job
from django.db import connection
kind, greenlets, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pusher = {"naive": helpers.AsyncToSyncEventPusher, "ours": helpers.RedisEventPusher}[kind]()
helpers._pusher = pusher
errors = []
def work():
    job_id = uuid.uuid4()
    for i in range(per):
        try:
            helpers.push_job_event("job.progress", job_id=job_id, owner_id=None, status="running", progress=i)
            Job.objects.filter(id=job_id).exists()  # the ORM call a task makes between pushes
        except Exception as exc:
            errors.append(type(exc).__name__)
started = time.perf_counter()
gevent.joinall([gevent.spawn(work) for _ in range(greenlets)], timeout=60)
elapsed = time.perf_counter() - started
print(json.dumps({"rate": (greenlets * per - len(errors)) / elapsed, "errors": len(errors),
                  "kinds": sorted(set(errors))}))
"""


def under_gevent(greenlets: int = 100, per: int = 20) -> dict:
    """The pushes run in a child process (gevent must patch before anything imports). The child
    inherits DATABASE_URL: setup_django() pointed it at a freshly migrated temp database, as the
    child's ORM call needs the tables (a fresh clone has no var/db.sqlite3)."""
    import os

    rows, notes, failed = {}, [], {}
    for kind in ("naive", "ours"):
        out = subprocess.run([sys.executable, "-c", GEVENT_CHILD, kind, str(greenlets), str(per)],
                             capture_output=True, text=True, env={**os.environ, "LOG_LEVEL": "CRITICAL"},
                             timeout=300)
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"gevent push child ({kind}) failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        failed[kind] = {"failed": result["errors"], "of": greenlets * per, "errors": result["kinds"]}
        rows[f"{kind}: {greenlets} greenlets x {per} pushes"] = max(result["rate"], 1e-9)
        notes.append(f"  {kind}: {result['errors']} of {greenlets * per} pushes failed {result['kinds']}")
    report("Under gevent (successful pushes/s)", f"naive: {greenlets} greenlets x {per} pushes", rows, "ev/s")
    print("\n".join(notes))
    return {"rows": rows, "baseline": f"naive: {greenlets} greenlets x {per} pushes", "failed": failed}


def main() -> dict:
    setup_django()
    try:
        rows = sequential()
        report(f"Sequential push, {EVENTS} events per run (median of 3)",
               "naive async_to_sync(group_send) + stream", rows, "ev/s")
        result = {"sequential": {"rows": rows, "baseline": "naive async_to_sync(group_send) + stream",
                                 "events": EVENTS},
                  "gevent": under_gevent()}
    finally:
        stop_redis()
    write_result(result)
    return result


if __name__ == "__main__":
    main()
